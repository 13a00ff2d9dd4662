//! Anthropic: the key in `x-api-key`, the API version in `anthropic-version`
//! (<https://docs.anthropic.com/en/api/versioning>), paths below `https://api.anthropic.com`.
//!
//! Model list, `GET /v1/models?limit=&after_id=`: `{"data":[{"type":"model","id",
//! "display_name","created_at"}],"has_more","first_id","last_id"}`
//! (<https://docs.anthropic.com/en/api/models-list>). Every Claude model it lists chats with
//! tools and images; reasoning comes from the model family.

use serde::Deserialize;

use super::listing::{form_encode, not_a_list};
use super::tags::reasoning_name;
use super::{Discovered, Page, ProviderSpec, Tag, PAGE_SIZE};
use crate::domain::ProviderSettings;

pub struct Anthropic;

impl ProviderSpec for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn default_base_url(&self, _settings: &ProviderSettings) -> Option<String> {
        Some("https://api.anthropic.com".into())
    }

    fn auth_header(&self) -> (&'static str, &'static str) {
        ("x-api-key", "")
    }

    fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", "2023-06-01")]
    }

    fn probe_url(&self, base_url: &str, _settings: &ProviderSettings) -> Option<String> {
        Some(format!("{base_url}/v1/models"))
    }

    fn models_path(&self, _settings: &ProviderSettings, cursor: Option<&str>) -> Option<String> {
        Some(match cursor {
            Some(c) => format!("/v1/models?limit={PAGE_SIZE}&after_id={}", form_encode(c)),
            None => format!("/v1/models?limit={PAGE_SIZE}"),
        })
    }

    fn parse_models(&self, _settings: &ProviderSettings, body: &[u8]) -> Result<Page, String> {
        let list: AnthropicList =
            serde_json::from_slice(body).map_err(|e| not_a_list("Anthropic", e))?;
        let next = if list.has_more {
            list.last_id
                .or_else(|| list.data.last().map(|m| m.id.clone()))
        } else {
            None
        };
        Ok(Page {
            models: list
                .data
                .into_iter()
                .map(|m| {
                    // Every Claude model listed chats with tools and images.
                    let mut tags = vec![Tag::Chat, Tag::FunctionCalling, Tag::Vision];
                    if reasoning_name(&m.id) {
                        tags.push(Tag::Reasoning);
                    }
                    tags.sort();
                    Discovered {
                        created: m.created_at.as_deref().and_then(unix_from_rfc3339),
                        id: m.id,
                        display_name: m.display_name,
                        tags,
                        context_window: None,
                        base_model: None,
                        tags_from_metadata: true,
                    }
                })
                .collect(),
            next,
        })
    }
}

#[derive(Deserialize)]
struct AnthropicList {
    data: Vec<AnthropicModel>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicModel {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

/// Unix seconds of an RFC 3339 time such as `2025-09-29T00:00:00Z` (fractions and offsets
/// taken into account); `None` when it is not one.
fn unix_from_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let v = h * 3600 + m * 60;
            if rest.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::listing::{fixture, ids};

    #[test]
    fn anthropic_pages_follow_last_id() {
        let settings = ProviderSettings::default();
        let first = Anthropic
            .parse_models(&settings, &fixture("anthropic_page1.json"))
            .unwrap();
        assert_eq!(
            ids(&first),
            ["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"]
        );
        assert_eq!(first.next.as_deref(), Some("claude-opus-4-1-20250805"));
        assert_eq!(
            first.models[0].display_name.as_deref(),
            Some("Claude Sonnet 4.5")
        );
        let last = Anthropic
            .parse_models(&settings, &fixture("anthropic_page2.json"))
            .unwrap();
        assert_eq!(ids(&last), ["claude-3-5-haiku-20241022"]);
        assert_eq!(last.next, None);
        assert!(!last.models[0].tags.contains(&Tag::Reasoning));
        assert_eq!(
            Anthropic
                .models_path(&settings, first.next.as_deref())
                .unwrap(),
            "/v1/models?limit=100&after_id=claude-opus-4-1-20250805"
        );
        let err = Anthropic.parse_models(&settings, b"<html>").unwrap_err();
        assert!(err.contains("Anthropic"), "{err}");
    }

    #[test]
    fn rfc3339_times_become_unix_seconds() {
        assert_eq!(unix_from_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_from_rfc3339("2025-09-29T00:00:00Z"),
            Some(1_759_104_000)
        );
        assert_eq!(
            unix_from_rfc3339("2025-09-29T02:00:00.123+02:00"),
            Some(1_759_104_000)
        );
        assert_eq!(
            unix_from_rfc3339("2024-02-29T12:30:15Z"),
            Some(1_709_209_815)
        );
        assert_eq!(unix_from_rfc3339("2025-13-01T00:00:00Z"), None);
        assert_eq!(unix_from_rfc3339("yesterday"), None);
        assert_eq!(unix_from_rfc3339("2025-09-29T00:00:00"), None);
    }
}
