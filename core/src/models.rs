//! `GET /v1/models` and `GET /v1/models/{id}`, answered from the configuration: the models the
//! caller's key may use, in OpenAI's shape, or in Anthropic's for Anthropic clients (those that
//! send `anthropic-version`), with Anthropic's paging (`limit`, `after_id`, `before_id`).
//!
//! OpenAI's model object is `{"id","object":"model","created","owned_by"}`; Switchyard adds
//! what it knows (`display_name`, `context_window`, `capabilities`), which SDKs keep as extra
//! fields. Anthropic's is `{"type":"model","id","display_name","created_at"}`.

use std::borrow::Cow;

use crate::config::ModelCard;
use crate::error::{push_json_string, FilterError};
use crate::gateway_key::KeyEntry;
use crate::route::Index;

/// What a models request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsQuery<'a> {
    /// `/v1/models/{id}`: one model (percent-decoded; ids may contain `/`).
    pub id: Option<Cow<'a, str>>,
    pub limit: usize,
    pub after_id: Option<Cow<'a, str>>,
    pub before_id: Option<Cow<'a, str>>,
}

/// Anthropic's default and largest page.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

impl<'a> ModelsQuery<'a> {
    /// Reads the `:path` of a models request (`/v1/models[/{id}][?query]`).
    pub fn parse(path: &'a str) -> Result<ModelsQuery<'a>, FilterError> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let rest = path
            .strip_prefix("/v1/models")
            .unwrap_or("")
            .trim_matches('/');
        let id = (!rest.is_empty()).then(|| decode(rest)).transpose()?;
        let mut q = ModelsQuery {
            id,
            limit: DEFAULT_LIMIT,
            after_id: None,
            before_id: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value)?;
            match name {
                "limit" => {
                    q.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            FilterError::invalid_request(
                                "invalid_limit",
                                "`limit` must be a whole number from 1 to 1000.",
                            )
                        })?;
                }
                "after_id" => q.after_id = Some(value),
                "before_id" => q.before_id = Some(value),
                _ => {}
            }
        }
        if q.after_id.is_some() && q.before_id.is_some() {
            return Err(FilterError::invalid_request(
                "invalid_request",
                "Give `after_id` or `before_id`, not both.",
            ));
        }
        Ok(q)
    }
}

/// Percent-decoding of a path segment or query value (`+` stays: paths use `%20`).
fn decode(s: &str) -> Result<Cow<'_, str>, FilterError> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let bad = || FilterError::invalid_request("invalid_path", "The path is not valid UTF-8.");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| bad())
}

/// The model `name` with what `/v1/models` shows of it, if the key may use it.
fn usable_one<'i>(index: &'i Index, key: &KeyEntry, name: &str) -> Option<&'i ModelCard> {
    let entry = index.targets(name)?;
    (key.allows(name) && entry.serves(&key.user)).then_some(&entry.card)
}

/// The models the key may use, in configuration order (sorted by name), with their cards.
fn usable<'i>(
    index: &'i Index,
    key: &'i KeyEntry,
) -> impl Iterator<Item = (&'i String, &'i ModelCard)> + 'i {
    index
        .model_names()
        .iter()
        .filter_map(move |m| Some((m, usable_one(index, key, m)?)))
}

fn push_openai(out: &mut String, name: &str, card: &ModelCard) {
    out.push_str("{\"id\":");
    push_json_string(out, name);
    out.push_str(",\"object\":\"model\",\"created\":");
    out.push_str(&card.created.to_string());
    out.push_str(",\"owned_by\":");
    push_json_string(
        out,
        if card.owned_by.is_empty() {
            "switchyard"
        } else {
            &card.owned_by
        },
    );
    if let Some(d) = &card.display_name {
        out.push_str(",\"display_name\":");
        push_json_string(out, d);
    }
    if let Some(w) = card.context_window {
        out.push_str(",\"context_window\":");
        out.push_str(&w.to_string());
    }
    if !card.tags.is_empty() {
        out.push_str(",\"capabilities\":[");
        for (i, t) in card.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(out, t.as_str());
        }
        out.push(']');
    }
    out.push('}');
}

fn push_anthropic(out: &mut String, name: &str, card: &ModelCard) {
    out.push_str("{\"type\":\"model\",\"id\":");
    push_json_string(out, name);
    out.push_str(",\"display_name\":");
    push_json_string(out, card.display_name.as_deref().unwrap_or(name));
    out.push_str(",\"created_at\":\"");
    out.push_str(&rfc3339(card.created));
    out.push_str("\"}");
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds.
fn rfc3339(unix: u64) -> String {
    let d = switchyard_aws::sigv4::amz_date(unix); // YYYYMMDDTHHMMSSZ
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[9..11],
        &d[11..13],
        &d[13..15]
    )
}

/// The answer to a models request: 200 and its body, or the error (404 for a model the key
/// may not use, as if it did not exist).
pub fn answer(
    index: &Index,
    key: &KeyEntry,
    query: &ModelsQuery<'_>,
    anthropic: bool,
) -> Result<Vec<u8>, FilterError> {
    let push = if anthropic {
        push_anthropic
    } else {
        push_openai
    };
    let mut out = String::new();
    if let Some(id) = &query.id {
        let card = usable_one(index, key, id).ok_or_else(|| FilterError::unknown_model(id))?;
        push(&mut out, id, card);
        return Ok(out.into_bytes());
    }
    let models: Vec<(&String, &ModelCard)> = usable(index, key).collect();
    // A JSON array of the models in `page`.
    let push_data = |out: &mut String, page: &[(&String, &ModelCard)]| {
        out.reserve(2 + page.len() * 96);
        out.push('[');
        for (i, (name, card)) in page.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push(out, name, card);
        }
        out.push(']');
    };
    if !anthropic {
        out.push_str("{\"object\":\"list\",\"data\":");
        push_data(&mut out, &models);
        out.push('}');
        return Ok(out.into_bytes());
    }
    // Anthropic's pages: `limit` models after `after_id`, or the `limit` before `before_id`.
    let position = |id: &str| models.iter().position(|(n, _)| *n == id);
    let (start, end) = match (&query.after_id, &query.before_id) {
        (Some(after), _) => {
            let start = position(after).map_or(models.len(), |i| i + 1);
            (start, (start + query.limit).min(models.len()))
        }
        (None, Some(before)) => {
            let end = position(before).unwrap_or(0);
            (end.saturating_sub(query.limit), end)
        }
        (None, None) => (0, query.limit.min(models.len())),
    };
    let page = &models[start..end];
    let has_more = if query.before_id.is_some() {
        start > 0
    } else {
        end < models.len()
    };
    out.push_str("{\"data\":");
    push_data(&mut out, page);
    out.push_str(",\"has_more\":");
    out.push_str(if has_more { "true" } else { "false" });
    for (field, id) in [("first_id", page.first()), ("last_id", page.last())] {
        out.push_str(",\"");
        out.push_str(field);
        out.push_str("\":");
        match id {
            Some((id, _)) => push_json_string(&mut out, id),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FilterConfig, GatewayKey, ModelRoute, Provider, Tag, Target};

    fn index(names: &[&str], users: &[&str]) -> Index {
        let provider: Provider = serde_json::from_value(serde_json::json!({
            "name": "p", "kind": "openai", "cluster": "c", "authority": "a",
            "auth_header": "authorization"
        }))
        .unwrap();
        let models = names
            .iter()
            .map(|n| ModelRoute {
                name: (*n).into(),
                targets: vec![Target {
                    provider: "p".into(),
                    model: (*n).into(),
                    weight: 1,
                    priority: 0,
                    stats: Default::default(),
                    capabilities: None,
                }],
                strategy: Default::default(),
                failover: vec![],
                failover_capable: vec![],
                users: if *n == "private" {
                    users.iter().map(|u| (*u).to_string()).collect()
                } else {
                    vec![]
                },
                card: if *n == "m1" {
                    ModelCard {
                        owned_by: "p".into(),
                        created: 1_759_104_000,
                        display_name: Some("Model \"One\"".into()),
                        context_window: Some(128_000),
                        tags: vec![Tag::Chat, Tag::Vision],
                    }
                } else {
                    ModelCard::default()
                },
            })
            .collect();
        Index::new(FilterConfig {
            version: "1".into(),
            max_body_bytes: 1024,
            keys: vec![GatewayKey {
                id: "k".into(),
                digest: "00".repeat(32),
                user: "alice".into(),
                models: vec!["*".into()],
                expires_at: None,
                limited: false,
            }],
            providers: vec![provider],
            models,
            ..Default::default()
        })
        .unwrap()
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    fn ids(v: &serde_json::Value) -> Vec<&str> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn openai_lists_carry_the_card_and_leave_out_what_the_key_may_not_use() {
        let idx = index(&["m1", "m2", "private"], &["bob"]);
        let key = idx.key(0);
        let q = ModelsQuery::parse("/v1/models").unwrap();
        let v = json(&answer(&idx, key, &q, false).unwrap());
        assert_eq!(v["object"], "list");
        assert_eq!(ids(&v), ["m1", "m2"]);
        let m1 = &v["data"][0];
        assert_eq!(m1["object"], "model");
        assert_eq!(m1["owned_by"], "p");
        assert_eq!(m1["created"], 1_759_104_000);
        assert_eq!(m1["display_name"], "Model \"One\"");
        assert_eq!(m1["context_window"], 128_000);
        assert_eq!(m1["capabilities"], serde_json::json!(["chat", "vision"]));
        assert_eq!(v["data"][1]["owned_by"], "switchyard");
        assert!(v["data"][1].get("capabilities").is_none());

        let idx = index(&["m1", "private"], &["alice"]);
        let v = json(&answer(&idx, idx.key(0), &q, false).unwrap());
        assert_eq!(ids(&v), ["m1", "private"]);
    }

    #[test]
    fn one_model_by_id_even_with_a_slash_and_404_for_others() {
        let idx = index(&["m1", "p/m-2", "private"], &["bob"]);
        let key = idx.key(0);
        let q = ModelsQuery::parse("/v1/models/p%2Fm-2").unwrap();
        let v = json(&answer(&idx, key, &q, false).unwrap());
        assert_eq!(v["id"], "p/m-2");
        let q = ModelsQuery::parse("/v1/models/p/m-2").unwrap();
        assert_eq!(json(&answer(&idx, key, &q, true).unwrap())["type"], "model");
        for path in ["/v1/models/private", "/v1/models/nope"] {
            let q = ModelsQuery::parse(path).unwrap();
            let err = answer(&idx, key, &q, false).unwrap_err();
            assert_eq!((err.status, err.code), (404, "model_not_found"));
        }
    }

    #[test]
    fn anthropic_pages_follow_after_and_before_ids() {
        let names = ["a", "b", "c", "d", "m1"];
        let idx = index(&names, &[]);
        let key = idx.key(0);
        let page = |path: &str| {
            json(&answer(&idx, key, &ModelsQuery::parse(path).unwrap(), true).unwrap())
        };
        let first = page("/v1/models?limit=2");
        assert_eq!(ids(&first), ["a", "b"]);
        assert_eq!(first["has_more"], true);
        assert_eq!(first["first_id"], "a");
        assert_eq!(first["last_id"], "b");
        assert_eq!(first["data"][0]["type"], "model");
        assert_eq!(first["data"][0]["display_name"], "a");
        assert_eq!(first["data"][0]["created_at"], "1970-01-01T00:00:00Z");
        let second = page("/v1/models?limit=2&after_id=b");
        assert_eq!(ids(&second), ["c", "d"]);
        let last = page("/v1/models?limit=2&after_id=d");
        assert_eq!(ids(&last), ["m1"]);
        assert_eq!(last["has_more"], false);
        assert_eq!(last["data"][0]["created_at"], "2025-09-29T00:00:00Z");
        assert_eq!(last["data"][0]["display_name"], "Model \"One\"");
        let back = page("/v1/models?limit=2&before_id=d");
        assert_eq!(ids(&back), ["b", "c"]);
        assert_eq!(back["has_more"], true);
        let all = page("/v1/models");
        assert_eq!(ids(&all).len(), 5);
        assert_eq!(all["has_more"], false);
        let empty = page("/v1/models?after_id=m1");
        assert_eq!(empty["first_id"], serde_json::Value::Null);
    }

    #[test]
    fn bad_queries_are_refused() {
        for path in [
            "/v1/models?limit=0",
            "/v1/models?limit=1001",
            "/v1/models?limit=x",
            "/v1/models?after_id=a&before_id=b",
            "/v1/models/%ff",
            "/v1/models/%zz",
        ] {
            let err = ModelsQuery::parse(path).unwrap_err();
            assert_eq!(err.status, 400, "{path}");
        }
        let q = ModelsQuery::parse("/v1/models/").unwrap();
        assert_eq!(q.id, None);
        let q = ModelsQuery::parse("/v1/models/a%").unwrap();
        assert_eq!(q.id.as_deref(), Some("a%"));
    }
}
