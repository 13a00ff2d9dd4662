//! What every translator with an OpenAI client needs: request checks, images, and the OpenAI
//! shapes of usage, errors and stream chunks.

use serde_json::{json, Value};

use super::schema::openai::{OpenAiContent, OpenAiContentPart, OpenAiToolCall};
use crate::error::FilterError;
use crate::sse::{event_data, EventSplitter};
use crate::stream::{ChunkOutcome, INCOMPLETE_EVENT};
use crate::usage::Usage;

/// A whole answer (JSON, or an error) held back chunk by chunk and translated once complete.
#[derive(Debug, Default)]
pub struct WholeBody(Vec<u8>);

impl WholeBody {
    /// Keeps `chunk`; the whole body once the stream ends, `None` before (the caller forwards
    /// nothing meanwhile).
    pub fn complete(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        self.0.extend_from_slice(chunk);
        if !end_of_stream {
            return None;
        }
        let whole = std::mem::take(&mut self.0);
        // An answer too costly to parse is no answer: the translator reports a provider fault.
        Some(if crate::request::too_complex(&whole) {
            Vec::new()
        } else {
            whole
        })
    }
}

/// What the client receives instead of a held-back chunk.
pub fn held_back() -> ChunkOutcome {
    ChunkOutcome::Replace(Vec::new())
}

/// A translated whole answer.
pub fn whole(v: &Value) -> ChunkOutcome {
    ChunkOutcome::Replace(v.to_string().into_bytes())
}

/// The `data` of every whole SSE event in `chunk` (a partial event waits in `splitter`); an
/// event too costly to parse is skipped like an unknown one.
pub fn sse_data(splitter: &mut EventSplitter, chunk: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    splitter.feed(chunk, |e| {
        if let Some(d) = event_data(e).filter(|d| !crate::request::too_complex(d)) {
            out.push(d.into_owned());
        }
    });
    out
}

/// How an OpenAI stream translated from a provider without an end marker (Gemini, Bedrock)
/// ends: complete after a finish reason (then the usage chunk, if asked for, and `[DONE]`),
/// otherwise with the incomplete-stream error, unless an error event was already sent.
/// Returns whether the stream is complete.
pub fn end_stream(
    out: &mut Vec<u8>,
    header: &ChunkHeader,
    finished: bool,
    saw_error: bool,
    usage_chunk: Option<Usage>,
) -> bool {
    if saw_error {
        return false;
    }
    if !finished {
        out.extend_from_slice(INCOMPLETE_EVENT);
        return false;
    }
    if let Some(u) = usage_chunk {
        emit(out, &header.usage_chunk(u));
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    true
}

pub fn invalid(message: impl Into<String>) -> FilterError {
    FilterError::invalid_request("invalid_request", message)
}

/// The client's body as `T`, or a 400 naming what is wrong.
pub fn parse_request<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, FilterError> {
    serde_json::from_slice(body)
        .map_err(|e| FilterError::invalid_request("invalid_json", format!("Invalid request: {e}.")))
}

/// Text of a content value; image parts are refused where only text is allowed.
pub fn text_of(content: OpenAiContent, role: &str) -> Result<String, FilterError> {
    match content {
        OpenAiContent::Text(t) => Ok(t),
        OpenAiContent::Parts(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    OpenAiContentPart::Text { text } => {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(&text);
                    }
                    _ => return Err(invalid(format!("{role} messages may only contain text"))),
                }
            }
            Ok(out)
        }
    }
}

/// A tool call's arguments as JSON (OpenAI sends them as JSON text; empty means none).
pub fn tool_arguments(call: &OpenAiToolCall) -> Result<Value, FilterError> {
    if call.function.arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(&call.function.arguments).map_err(|_| {
        invalid(format!(
            "arguments of tool call {} are not valid JSON",
            call.id
        ))
    })
}

/// An image as the client gave it.
#[derive(Debug, PartialEq)]
pub enum Image {
    Base64 { media_type: String, data: String },
    Url(String),
}

/// `data:<media type>;base64,<data>` or an http(s) URL.
pub fn image(url: String) -> Result<Image, FilterError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("image data URL has no data"))?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or_else(|| invalid("image data URLs must be base64"))?;
        return Ok(Image::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Image::Url(url));
    }
    Err(invalid("image_url must be a data URL or an http(s) URL"))
}

/// OpenAI's `usage` object.
pub fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u.total,
        "prompt_tokens_details": {"cached_tokens": u.cached},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning},
    })
}

/// OpenAI's error body.
pub fn error_json(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// Appends one SSE `data:` event.
pub fn emit(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

/// Fields of every `chat.completion.chunk` of one stream.
#[derive(Debug, Default)]
pub struct ChunkHeader {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ChunkHeader {
    pub fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    /// The usage-only chunk sent last when the client asked for `include_usage`.
    pub fn usage_chunk(&self, u: Usage) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": usage_json(u),
        })
    }
}

/// The assistant message of a `chat.completion`.
pub fn message(text: String, tool_calls: Vec<Value>) -> Value {
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    message
}

/// A whole `chat.completion`.
pub fn completion(
    header: &ChunkHeader,
    message: Value,
    finish_reason: &str,
    usage: Usage,
) -> Value {
    json!({
        "id": header.id,
        "object": "chat.completion",
        "created": header.created,
        "model": header.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage_json(usage),
    })
}

/// Thinking budgets for OpenAI's `reasoning_effort`, for providers that take a token budget.
pub fn thinking_budget(effort: &str) -> Result<Option<u64>, FilterError> {
    match effort {
        "none" => Ok(None),
        "minimal" | "low" => Ok(Some(1024)),
        "medium" => Ok(Some(8192)),
        "high" => Ok(Some(24576)),
        other => Err(invalid(format!("unknown reasoning_effort {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_data_urls_or_web_urls() {
        assert_eq!(
            image("data:image/png;base64,AAAA".into()),
            Ok(Image::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            })
        );
        assert_eq!(
            image("https://x/y.png".into()),
            Ok(Image::Url("https://x/y.png".into()))
        );
        assert!(image("data:image/png,raw".into()).is_err());
        assert!(image("file:///etc/passwd".into()).is_err());
    }

    /// A hostile provider (a user's own) must not keep a worker busy with an answer built to
    /// be costly to parse: the whole answer, or a stream event, is dropped instead.
    #[test]
    fn answers_too_costly_to_parse_are_dropped() {
        let costly = format!(
            r#"{{"content":[{}]}}"#,
            vec!["{}"; crate::request::MAX_CONTAINERS].join(",")
        );
        let mut body = WholeBody::default();
        assert_eq!(body.complete(costly.as_bytes(), false), None);
        assert_eq!(body.complete(b"", true), Some(Vec::new()));
        let mut splitter = EventSplitter::default();
        let events = format!("data: {costly}\n\ndata: {{\"ok\":1}}\n\n");
        assert_eq!(
            sse_data(&mut splitter, events.as_bytes()),
            vec![b"{\"ok\":1}".to_vec()]
        );
    }

    #[test]
    fn emitted_events_are_sse_data_lines() {
        let mut out = Vec::new();
        emit(&mut out, &json!({"a": 1}));
        assert_eq!(out, b"data: {\"a\":1}\n\n");
    }
}
