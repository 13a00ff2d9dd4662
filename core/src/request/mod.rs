//! Pure request handling for OpenAI-style bodies: parse the top level once, rewrite `model` (and
//! `stream_options` for streams) by splicing, never re-serialising the nested content.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{Capability, PathStyle, Provider, Quirks};
use crate::error::FilterError;
use crate::needle::Needle;

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
    static IMAGE: Needle = Needle::new(b"image");
    static ESCAPE: Needle = Needle::new(b"\\u");
    if IMAGE.find(raw).is_none() && ESCAPE.find(raw).is_none() {
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
mod tests;
