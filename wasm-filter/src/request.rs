//! Pure request handling for OpenAI-style bodies: parse the top level once, rewrite `model` (and
//! `stream_options` for streams) by splicing, never re-serialising the nested content.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{Capability, PathStyle, Provider, Quirks};
use crate::error::FilterError;

/// The inbound APIs the filter serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    /// `GET /v1/models[/{id}]`, OpenAI's shape.
    Models,
    /// The same for Anthropic clients (they send `anthropic-version`): Anthropic's shape.
    AnthropicModels,
    /// Anthropic's Messages API.
    Messages,
    ImageGenerations,
}

impl Endpoint {
    /// The endpoint for a request path (query string ignored).
    pub fn from_path(path: &str) -> Option<Endpoint> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let path = path.strip_suffix('/').unwrap_or(path);
        match path {
            "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            "/v1/models" => Some(Endpoint::Models),
            "/v1/messages" => Some(Endpoint::Messages),
            "/v1/images/generations" => Some(Endpoint::ImageGenerations),
            _ if path.starts_with("/v1/models/") => Some(Endpoint::Models),
            _ => None,
        }
    }

    /// The client API, as request records name it.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models | Endpoint::AnthropicModels => "models",
            Endpoint::Messages => "messages",
            Endpoint::ImageGenerations => "images.generations",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Endpoint::Models | Endpoint::AnthropicModels => "GET",
            _ => "POST",
        }
    }

    /// Whether errors on this endpoint take Anthropic's shape.
    pub fn anthropic(self) -> bool {
        matches!(self, Endpoint::Messages | Endpoint::AnthropicModels)
    }

    /// Path below an OpenAI-style provider's base URL (Messages requests reach such providers
    /// as chat completions).
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions | Endpoint::Messages => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::ImageGenerations => "/images/generations",
            Endpoint::Models | Endpoint::AnthropicModels => "/models",
        }
    }

    /// Appends the path (and query) of this endpoint at an OpenAI-style provider.
    pub fn upstream_path(self, provider: &Provider, model: &str, out: &mut String) {
        out.push_str(&provider.path_prefix);
        if provider.path_style == PathStyle::AzureDeployment {
            out.push_str("/openai/deployments/");
            push_path_segment(out, model);
        }
        out.push_str(self.upstream_suffix());
        if !provider.query.is_empty() {
            out.push('?');
            out.push_str(&provider.query);
        }
    }
}

/// Content part types that are images: OpenAI's `image_url` (Chat Completions) and
/// `input_image` (Responses), Anthropic's `image` block.
const IMAGE_TYPES: [&str; 3] = ["image_url", "image", "input_image"];

/// Whether any object inside `messages` has an image `type`, at any depth (Anthropic's tool
/// results carry images too). The raw bytes decide when they can: no `image` and no escape (a
/// client may write `"\u0069mage"`) means no image part; otherwise the value is walked as JSON,
/// so spacing and escapes cannot hide a part, and text that merely mentions images does not
/// count.
fn carries_image(messages: &RawValue) -> bool {
    let raw = messages.get().as_bytes();
    if memchr::memmem::find(raw, b"image").is_none() && memchr::memmem::find(raw, b"\\u").is_none()
    {
        return false;
    }
    serde_json::from_str::<ImageSearch>(messages.get()).is_ok_and(|s| s.0)
}

/// A JSON value walked for an image part; true when one was found.
struct ImageSearch(bool);

impl<'de> Deserialize<'de> for ImageSearch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImageSearch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ImageSearch, A::Error> {
                let mut found = false;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if key.0 == "type" {
                        let kind: serde_json::Value = map.next_value()?;
                        found |= kind.as_str().is_some_and(|k| IMAGE_TYPES.contains(&k));
                    } else {
                        found |= map.next_value::<ImageSearch>()?.0;
                    }
                }
                Ok(ImageSearch(found))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ImageSearch, A::Error> {
                let mut found = false;
                while let Some(item) = seq.next_element::<ImageSearch>()? {
                    found |= item.0;
                }
                Ok(ImageSearch(found))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ImageSearch, E> {
                Ok(ImageSearch(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ImageSearch, E> {
                Ok(ImageSearch(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ImageSearch, E> {
                Ok(ImageSearch(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ImageSearch, E> {
                Ok(ImageSearch(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ImageSearch, E> {
                Ok(ImageSearch(false))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ImageSearch, E> {
                Ok(ImageSearch(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// Appends `s` percent-encoded as one path segment.
pub fn push_path_segment(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            use std::fmt::Write as _;
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Most top-level fields a request may have: every API the gateway serves has fewer than a
/// hundred, and a client must not make the filter keep (and check) an unbounded number.
pub const MAX_FIELDS: usize = 256;
/// Up to this many fields, a new name is compared with each earlier one; beyond, a set is used.
const LINEAR_SCAN_FIELDS: usize = 16;
/// The parse error that becomes `too_many_fields` (see [`TopLevel::parse`]).
const TOO_MANY_FIELDS: &str = "too many top-level fields";
/// Most objects and arrays a request may hold, at any depth. Translating a request costs about
/// a microsecond per object; far more than any conversation needs (a thousand turns with tool
/// calls hold some thousands), and small enough that no body keeps a worker busy for long.
pub const MAX_CONTAINERS: usize = 65_536;

/// Whether `json` holds more objects and arrays than a request may ([`MAX_CONTAINERS`]): what
/// a provider sends is held to the same bound before it is parsed (a whole answer, one stream
/// event), so that no answer keeps a worker busy either.
pub fn too_complex(json: &[u8]) -> bool {
    containers_over(json, MAX_CONTAINERS)
}

/// Whether `json` holds more than `limit` objects and arrays. One pass that jumps from one
/// structural character to the next (strings are skipped whole), so it costs little beside the
/// parse itself.
fn containers_over(json: &[u8], limit: usize) -> bool {
    let mut count = 0usize;
    let mut i = 0;
    while let Some(off) = memchr::memchr3(b'"', b'{', b'[', &json[i..]) {
        let at = i + off;
        if json[at] == b'"' {
            // To the string's closing quote.
            let mut j = at + 1;
            loop {
                match memchr::memchr2(b'"', b'\\', &json[j.min(json.len())..]) {
                    Some(o) if json[j + o] == b'\\' => j += o + 2,
                    Some(o) => {
                        j += o + 1;
                        break;
                    }
                    None => return false,
                }
            }
            i = j;
        } else {
            count += 1;
            if count > limit {
                return true;
            }
            i = at + 1;
        }
        if i >= json.len() {
            break;
        }
    }
    false
}

/// A top-level JSON object kept as (key, raw value) pairs in their original order.
pub struct TopLevel<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(16);
                // Names seen so far, once there are too many to compare each new one with all
                // (a client chooses how many: the check must stay linear).
                let mut seen: Option<std::collections::HashSet<Cow<'de, str>>> = None;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if fields.len() == MAX_FIELDS {
                        return Err(de::Error::custom(TOO_MANY_FIELDS));
                    }
                    let value: &'de RawValue = map.next_value()?;
                    let duplicate = match &mut seen {
                        Some(seen) => !seen.insert(key.0.clone()),
                        None => fields.iter().any(|(k, _)| *k == key.0),
                    };
                    if duplicate {
                        // Two parsers may disagree on which duplicate wins: refuse the ambiguity.
                        return Err(de::Error::custom(format_args!(
                            "duplicate field `{}`",
                            key.0
                        )));
                    }
                    fields.push((key.0, value));
                    if seen.is_none() && fields.len() == LINEAR_SCAN_FIELDS {
                        seen = Some(fields.iter().map(|(k, _)| k.clone()).collect());
                    }
                }
                Ok(TopLevel { fields })
            }
        }
        d.deserialize_map(V)
    }
}

/// A map key borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'a> TopLevel<'a> {
    pub fn parse(body: &'a [u8]) -> Result<TopLevel<'a>, FilterError> {
        if body.is_empty() {
            return Err(FilterError::invalid_request(
                "invalid_json",
                "The request body is empty; a JSON object is required.",
            ));
        }
        let text = std::str::from_utf8(body).map_err(|_| {
            FilterError::invalid_request("invalid_json", "The request body is not valid UTF-8.")
        })?;
        if too_complex(body) {
            return Err(FilterError::invalid_request(
                "too_complex",
                format!("The request holds more than {MAX_CONTAINERS} JSON objects and arrays."),
            ));
        }
        serde_json::from_str(text).map_err(|e| {
            if e.is_data() && e.to_string().starts_with(TOO_MANY_FIELDS) {
                return FilterError::invalid_request(
                    "too_many_fields",
                    format!("The request has more than {MAX_FIELDS} top-level fields."),
                );
            }
            FilterError::invalid_request(
                "invalid_json",
                format!("The request body is not valid JSON: {e}."),
            )
        })
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The required string field `model`.
    pub fn model(&self) -> Result<Cow<'a, str>, FilterError> {
        let raw = self.get("model").ok_or_else(|| {
            FilterError::invalid_request("missing_model", "The request has no `model` field.")
        })?;
        let model: Cow<'a, str> = serde_json::from_str::<CowStr<'a>>(raw.get())
            .map_err(|_| {
                FilterError::invalid_request("invalid_model", "`model` must be a string.")
            })?
            .0;
        crate::route::check_model_name(&model)
            .map_err(|why| FilterError::invalid_request("invalid_model", why))?;
        Ok(model)
    }

    /// The optional boolean field `name`; anything but a boolean or null is refused.
    pub fn flag(&self, name: &'static str) -> Result<Option<bool>, FilterError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<Option<bool>>(raw.get()).map_err(|_| {
                FilterError::invalid_request(
                    "invalid_field",
                    format!("`{name}` must be a boolean."),
                )
            }),
        }
    }

    /// The capabilities the request needs of a target ([`Capability`] bits): function calling
    /// when it offers tools, vision when a message carries an image (see [`carries_image`]).
    pub fn needs(&self) -> u8 {
        let offered = |key: &str| {
            self.get(key)
                .is_some_and(|v| !matches!(v.get().trim(), "null" | "[]"))
        };
        let mut needs = 0;
        if offered("tools") || offered("functions") {
            needs |= Capability::FunctionCalling.bit();
        }
        if self.get("messages").is_some_and(carries_image) {
            needs |= Capability::Vision.bit();
        }
        needs
    }

    /// Whether the client asked for usage in a stream (`stream_options.include_usage`).
    pub fn stream_usage_requested(&self) -> Result<bool, FilterError> {
        #[derive(Deserialize)]
        struct StreamOptions {
            #[serde(default)]
            include_usage: Option<bool>,
        }
        match self.get("stream_options") {
            None => Ok(false),
            Some(raw) => serde_json::from_str::<Option<StreamOptions>>(raw.get())
                .map(|o| o.and_then(|o| o.include_usage).unwrap_or(false))
                .map_err(|_| {
                    FilterError::invalid_request(
                        "invalid_field",
                        "`stream_options` must be an object with a boolean `include_usage`.",
                    )
                }),
        }
    }

    /// The body to send upstream, or `None` when the client's body can be sent as it is (same
    /// model, stream usage already asked for or not needed, nothing the provider's quirks
    /// change): no copy, no re-serialisation.
    pub fn rewrite_if_needed(
        &self,
        client_model: &str,
        upstream_model: &str,
        force_stream_usage: bool,
        quirks: &Quirks,
    ) -> Result<Option<Vec<u8>>, FilterError> {
        let usage_missing = force_stream_usage && !self.stream_usage_requested()?;
        let quirky = !quirks.is_none()
            && self.fields.iter().any(|(k, _)| {
                quirks.drop.iter().any(|d| d == k)
                    || quirks.rename.iter().any(|(from, _)| from == k)
            });
        if client_model == upstream_model && !usage_missing && !quirky {
            return Ok(None);
        }
        Ok(Some(self.rewrite(
            upstream_model,
            force_stream_usage,
            quirks,
        )))
    }

    /// Writes the object back with `model` replaced, with `stream_options.include_usage` set
    /// to true when `force_stream_usage` (other stream options kept), and with the provider's
    /// quirks applied: fields it does not take dropped, fields it names differently renamed
    /// (unless the body already has the provider's name, which then wins).
    pub fn rewrite(
        &self,
        upstream_model: &str,
        force_stream_usage: bool,
        quirks: &Quirks,
    ) -> Vec<u8> {
        let size: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = String::with_capacity(size + upstream_model.len() + 48);
        out.push('{');
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push(',');
            }
            first = false;
        };
        let mut wrote_options = false;
        for (key, value) in &self.fields {
            if quirks.drop.iter().any(|d| d == key) {
                continue;
            }
            let name = match quirks.rename.iter().find(|(from, _)| from == key) {
                Some((_, to)) if self.get(to).is_some() => continue,
                Some((_, to)) => to.as_str(),
                None => key,
            };
            sep(&mut out);
            crate::error::push_json_string(&mut out, name);
            out.push(':');
            if key == "model" {
                crate::error::push_json_string(&mut out, upstream_model);
            } else if key == "stream_options" && force_stream_usage {
                write_stream_options(&mut out, value);
                wrote_options = true;
            } else {
                out.push_str(value.get());
            }
        }
        if force_stream_usage && !wrote_options {
            sep(&mut out);
            out.push_str("\"stream_options\":{\"include_usage\":true}");
        }
        out.push('}');
        out.into_bytes()
    }
}

/// `stream_options` with `include_usage: true`, keeping any other options the client set.
fn write_stream_options(out: &mut String, value: &RawValue) {
    let mut options: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(value.get()).unwrap_or_default();
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    out.push_str(&serde_json::Value::Object(options).to_string());
}

/// A string borrowed from the input when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Key::deserialize(d).map(|k| CowStr(k.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn rewrite(body: &str, model: &str, force: bool) -> Value {
        let top = TopLevel::parse(body.as_bytes()).expect("parses");
        serde_json::from_slice(&top.rewrite(model, force, &Quirks::default()))
            .expect("valid json out")
    }

    #[test]
    fn endpoints_from_paths() {
        assert_eq!(
            Endpoint::from_path("/v1/chat/completions"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::from_path("/v1/chat/completions?x=1"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(Endpoint::from_path("/v1/models/"), Some(Endpoint::Models));
        assert_eq!(
            Endpoint::from_path("/v1/models/anthropic/claude-x?x=1"),
            Some(Endpoint::Models)
        );
        assert_eq!(Endpoint::from_path("/v1/modelsx"), None);
        assert_eq!(
            Endpoint::from_path("/v1/embeddings"),
            Some(Endpoint::Embeddings)
        );
        assert_eq!(Endpoint::from_path("/v2/chat"), None);
    }

    #[test]
    fn model_is_replaced_and_everything_else_kept_verbatim() {
        let body = r#"{"model":"smart","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"temperature":0.25}"#;
        let top = TopLevel::parse(body.as_bytes()).expect("parses");
        let out =
            String::from_utf8(top.rewrite("gpt-4o", false, &Quirks::default())).expect("utf8");
        assert_eq!(
            out,
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"temperature":0.25}"#
        );
    }

    #[test]
    fn stream_usage_is_forced_and_other_options_kept() {
        let v = rewrite(r#"{"model":"m","stream":true}"#, "u", true);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        let v = rewrite(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false}}"#,
            "u",
            true,
        );
        assert_eq!(
            v["stream_options"],
            json!({"include_usage": true, "include_obfuscation": false})
        );
        let v = rewrite(r#"{"model":"m","stream_options":null}"#, "u", true);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn unchanged_bodies_are_not_rewritten() {
        let top = TopLevel::parse(br#"{"model":"gpt-4o","messages":[]}"#).expect("parses");
        assert_eq!(
            top.rewrite_if_needed("gpt-4o", "gpt-4o", false, &Quirks::default())
                .expect("ok"),
            None
        );
        assert!(top
            .rewrite_if_needed("smart", "gpt-4o", false, &Quirks::default())
            .expect("ok")
            .is_some());
        assert!(top
            .rewrite_if_needed("gpt-4o", "gpt-4o", true, &Quirks::default())
            .expect("ok")
            .is_some());
        let asked = TopLevel::parse(
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .expect("parses");
        assert_eq!(
            asked
                .rewrite_if_needed("gpt-4o", "gpt-4o", true, &Quirks::default())
                .expect("ok"),
            None
        );
    }

    #[test]
    fn upstream_paths_follow_the_provider_style() {
        let mut p: Provider = serde_json::from_value(json!({
            "name": "az", "kind": "azure_openai", "cluster": "c", "authority": "a",
            "path_prefix": "", "auth_header": "api-key",
            "path_style": "azure_deployment", "query": "api-version=2024-10-21"
        }))
        .expect("provider");
        let path = |p: &Provider, e: Endpoint, m: &str| {
            let mut out = String::new();
            e.upstream_path(p, m, &mut out);
            out
        };
        assert_eq!(
            path(&p, Endpoint::ChatCompletions, "my gpt/4o"),
            "/openai/deployments/my%20gpt%2F4o/chat/completions?api-version=2024-10-21"
        );
        p.path_style = PathStyle::Openai;
        p.query.clear();
        p.path_prefix = "/openai/v1".into();
        assert_eq!(path(&p, Endpoint::Embeddings, "m"), "/openai/v1/embeddings");
    }

    #[test]
    fn quirks_drop_and_rename_fields() {
        let quirks = Quirks {
            drop: vec!["store".into(), "stream_options".into()],
            rename: vec![("seed".into(), "random_seed".into())],
            stream_usage: false,
        };
        let top = TopLevel::parse(
            br#"{"model":"m","seed":7,"store":true,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .expect("parses");
        let out = top
            .rewrite_if_needed("m", "m", false, &quirks)
            .expect("ok")
            .expect("rewritten: the quirks apply");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"model":"m","random_seed":7,"stream":true}"#
        );
        // The provider's own name, when the client already used it, wins over the renamed one.
        let both = TopLevel::parse(br#"{"model":"m","seed":1,"random_seed":2}"#).expect("parses");
        let v: Value =
            serde_json::from_slice(&both.rewrite("m", false, &quirks)).expect("valid json out");
        assert_eq!(v, json!({"model": "m", "random_seed": 2}));
        // A body the quirks do not touch is still sent as it came.
        let plain = TopLevel::parse(br#"{"model":"m","messages":[]}"#).expect("parses");
        assert_eq!(
            plain
                .rewrite_if_needed("m", "m", false, &quirks)
                .expect("ok"),
            None
        );
    }

    #[test]
    fn fields_are_validated() {
        let err = |body: &str| match TopLevel::parse(body.as_bytes()) {
            Err(e) => e,
            Ok(top) => top
                .model()
                .and_then(|_| top.flag("stream"))
                .and_then(|_| top.stream_usage_requested())
                .map(|_| ())
                .expect_err("should fail"),
        };
        assert_eq!(err("").code, "invalid_json");
        assert_eq!(err("{").code, "invalid_json");
        assert_eq!(err("[1]").code, "invalid_json");
        assert_eq!(err(r#"{"model":"a","model":"b"}"#).code, "invalid_json");
        assert_eq!(err(r#"{"messages":[]}"#).code, "missing_model");
        assert_eq!(err(r#"{"model":5}"#).code, "invalid_model");
        assert_eq!(err(r#"{"model":"a\r\nb"}"#).code, "invalid_model");
        assert_eq!(
            err(r#"{"model":"ok","stream":"yes"}"#).code,
            "invalid_field"
        );
        assert_eq!(
            err(r#"{"model":"ok","stream_options":3}"#).code,
            "invalid_field"
        );
        let invalid_utf8 = b"{\"model\":\"\xff\"}";
        assert_eq!(
            TopLevel::parse(invalid_utf8).err().map(|e| e.code),
            Some("invalid_json")
        );
    }

    #[test]
    fn escaped_keys_and_models_are_understood() {
        let top = TopLevel::parse(br#"{"mod\u0065l":"g\u0070t"}"#).expect("parses");
        assert_eq!(top.model().expect("model"), "gpt");
    }

    #[test]
    fn needs_are_read_from_tools_and_image_parts() {
        let needs = |body: &str| TopLevel::parse(body.as_bytes()).unwrap().needs();
        assert_eq!(
            needs(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
            0
        );
        assert_eq!(
            needs(r#"{"model":"m","tools":[{"type":"function"}],"messages":[]}"#),
            Capability::FunctionCalling.bit()
        );
        assert_eq!(needs(r#"{"model":"m","tools":[],"messages":[]}"#), 0);
        assert_eq!(
            needs(
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:"}}]}]}"#
            ),
            Capability::Vision.bit()
        );
        assert_eq!(
            needs(
                r#"{"model":"m","tools":[{}],"messages":[{"role":"user","content":[{"type": "image","source":{}}]}]}"#
            ),
            Capability::ALL
        );
        // Text that merely mentions images needs nothing.
        assert_eq!(
            needs(
                r#"{"model":"m","messages":[{"role":"user","content":"an \"image_url\" field"}]}"#
            ),
            0
        );
        // Escapes and spacing do not hide a part (issue 16: capability detection fooled).
        for hidden in [
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"\u0069mage_url","image_url":{"url":"x"}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type" :  "image","source":{}}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"t\u0079pe":"image_url"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","content":[{"type":"image"}]}]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]}"#,
        ] {
            assert_eq!(needs(hidden), Capability::Vision.bit(), "{hidden}");
        }
    }

    #[test]
    fn objects_and_arrays_are_counted_outside_strings() {
        assert!(!containers_over(br#"{"a":[1,{"b":"[{[{"}]}"#, 3));
        assert!(containers_over(br#"{"a":[1,{"b":"x"},{}]}"#, 3));
        assert!(!containers_over(br#"{"a":"\"[[[[","b":"\\"}"#, 1));
        assert!(!containers_over(br#"{"a":"unterminated [[[["#, 1));
        let many = format!(
            r#"{{"model":"m","messages":[{}]}}"#,
            vec!["{}"; MAX_CONTAINERS].join(",")
        );
        assert_eq!(
            TopLevel::parse(many.as_bytes()).err().map(|e| e.code),
            Some("too_complex")
        );
        let fine = format!(
            r#"{{"model":"m","messages":[{}]}}"#,
            vec!["{}"; MAX_CONTAINERS - 2].join(",")
        );
        assert!(TopLevel::parse(fine.as_bytes()).is_ok());
    }

    #[test]
    fn top_level_fields_are_bounded_and_checked_in_linear_time() {
        let mut body = String::from("{");
        for i in 0..MAX_FIELDS {
            body.push_str(&format!("\"k{i}\":{i},"));
        }
        body.push_str("\"model\":\"m\"}");
        let e = TopLevel::parse(body.as_bytes()).err().expect("refused");
        assert_eq!(e.code, "too_many_fields");
        let mut body = String::from("{");
        for i in 0..MAX_FIELDS - 1 {
            body.push_str(&format!("\"k{i}\":{i},"));
        }
        let fine = format!("{body}\"model\":\"m\"}}");
        assert_eq!(
            TopLevel::parse(fine.as_bytes())
                .expect("parses")
                .get("k7")
                .map(|v| v.get()),
            Some("7")
        );
        // A duplicate far beyond the linear scan, and one written with an escape.
        let late = format!("{body}\"k200\":1}}");
        assert!(TopLevel::parse(late.as_bytes())
            .err()
            .expect("refused")
            .message
            .contains("duplicate"));
        assert!(TopLevel::parse(br#"{"model":"a","mod\u0065l":"b"}"#).is_err());
    }
}
