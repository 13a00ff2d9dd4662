//! Anthropic Messages (client) <-> OpenAI Chat Completions (provider): Anthropic SDKs and coding
//! agents reaching OpenAI-style providers (and, chained with another translator, any provider).
//!
//! Client side: <https://docs.anthropic.com/en/api/messages>, streams:
//! <https://docs.anthropic.com/en/docs/build-with-claude/streaming>, errors:
//! <https://docs.anthropic.com/en/api/errors>. Usage follows Anthropic's semantics on this API:
//! `input_tokens` leaves out the cache reads, which go in `cache_read_input_tokens`. Extended
//! thinking is not asked of the provider: OpenAI-style models refuse `reasoning_effort` unless
//! they reason, and a gateway cannot tell which do.

use serde_json::{json, Map, Value};

use super::common::{held_back, parse_request, sse_data, whole, WholeBody};
use super::schema::anthropic::*;
use super::schema::openai::*;
use super::Translator;
use crate::error::FilterError;
use crate::sse::EventSplitter;
use crate::stream::ChunkOutcome;
use crate::usage::Usage;

/// One request from an Anthropic client to an OpenAI-style provider.
#[derive(Debug, Default)]
pub struct AnthropicToOpenAi {
    /// OpenAI's own API wants `max_completion_tokens` (its reasoning models refuse
    /// `max_tokens`); compatible providers know `max_tokens`.
    max_completion_tokens: bool,
    stream: bool,
    status: u32,
    event_stream: bool,
    body: WholeBody,
    splitter: EventSplitter,
    usage: Option<Usage>,
    id: String,
    model: String,
    started: bool,
    /// The open content block: its index and whether it is text.
    open: Option<(usize, bool)>,
    blocks: usize,
    /// OpenAI tool call index -> Anthropic block index.
    tool_blocks: Vec<(usize, usize)>,
    stop_reason: Option<&'static str>,
    done: bool,
    saw_error: bool,
    /// Cache writes the provider reported beyond OpenAI's format (set in a chain).
    cache_write: u64,
}

impl AnthropicToOpenAi {
    pub fn new(max_completion_tokens: bool) -> Self {
        AnthropicToOpenAi {
            max_completion_tokens,
            ..Default::default()
        }
    }
}

fn invalid(message: impl Into<String>) -> FilterError {
    FilterError::invalid_request("invalid_request", message)
}

/// Text of blocks where only text is allowed (system prompt, tool results).
fn text_of(content: AnthropicInContent, what: &str) -> Result<String, FilterError> {
    match content {
        AnthropicInContent::Text(t) => Ok(t),
        AnthropicInContent::Blocks(blocks) => {
            let mut out = String::new();
            for block in blocks {
                match block {
                    AnthropicInBlock::Text { text } => {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(&text);
                    }
                    _ => {
                        return Err(invalid(format!(
                            "{what} may only contain text blocks for this model"
                        )))
                    }
                }
            }
            Ok(out)
        }
    }
}

fn image_url(source: AnthropicInImageSource) -> Result<String, FilterError> {
    match source {
        AnthropicInImageSource::Base64 { media_type, data } => {
            Ok(format!("data:{media_type};base64,{data}"))
        }
        AnthropicInImageSource::Url { url } => Ok(url),
        AnthropicInImageSource::Unsupported => Err(invalid(
            "image sources other than base64 and url are not supported",
        )),
    }
}

/// Appends one Anthropic message as OpenAI messages: tool results become `tool` messages (first,
/// as OpenAI wants them right after the assistant's calls), the rest one user or assistant
/// message.
fn push_message(out: &mut Vec<Value>, message: AnthropicInMessage) -> Result<(), FilterError> {
    let blocks = match message.content {
        AnthropicInContent::Text(text) => vec![AnthropicInBlock::Text { text }],
        AnthropicInContent::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut has_image = false;
    for block in blocks {
        match block {
            AnthropicInBlock::Text { text: t } => {
                text.push_str(&t);
                parts.push(json!({"type": "text", "text": t}));
            }
            AnthropicInBlock::Image { source } => {
                has_image = true;
                parts.push(json!({"type": "image_url", "image_url": {"url": image_url(source)?}}));
            }
            AnthropicInBlock::ToolUse { id, name, input } => tool_calls.push(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            AnthropicInBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let mut content = match content {
                    Some(c) => text_of(c, "tool results")?,
                    None => String::new(),
                };
                if is_error == Some(true) && !content.starts_with("Error") {
                    content.insert_str(0, "Error: ");
                }
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}));
            }
            AnthropicInBlock::Thinking {} | AnthropicInBlock::RedactedThinking {} => {}
            AnthropicInBlock::Unsupported => {
                return Err(invalid(
                    "content blocks other than text, image, tool_use and tool_result are not \
                     supported for this model",
                ))
            }
        }
    }
    match message.role {
        AnthropicInRole::User => {
            // One text block is a plain string; several blocks keep their boundaries as parts.
            if parts.len() > 1 || has_image {
                out.push(json!({"role": "user", "content": parts}));
            } else if !parts.is_empty() {
                out.push(json!({"role": "user", "content": text}));
            }
        }
        AnthropicInRole::Assistant => {
            if has_image {
                return Err(invalid("assistant messages may not contain images"));
            }
            if text.is_empty() && tool_calls.is_empty() {
                return Ok(());
            }
            let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
            if !tool_calls.is_empty() {
                m["tool_calls"] = Value::Array(tool_calls);
            }
            out.push(m);
        }
    }
    Ok(())
}

/// The OpenAI chat request for an Anthropic Messages request.
pub fn request(
    req: AnthropicInRequest,
    model: &str,
    max_completion_tokens: bool,
) -> Result<Value, FilterError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system {
        messages.push(json!({"role": "system", "content": text_of(system, "system")?}));
    }
    for m in req.messages {
        push_message(&mut messages, m)?;
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    let max_key = if max_completion_tokens {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    out.insert(max_key.into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if !req.stop_sequences.is_empty() {
        out.insert("stop".into(), json!(req.stop_sequences));
    }
    if req.stream {
        out.insert("stream".into(), json!(true));
        // The usage of Anthropic's final message_delta comes from here.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .into_iter()
            .map(|t| match t.kind.as_deref() {
                None | Some("custom") => Ok(json!({"type": "function", "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema.unwrap_or_else(|| json!({"type": "object"})),
                }})),
                Some(kind) => Err(invalid(format!(
                    "server tool `{kind}` is only available on Anthropic models"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert("tools".into(), Value::Array(tools));
    }
    let no_parallel = match &req.tool_choice {
        Some(AnthropicInToolChoice::Auto {
            disable_parallel_tool_use,
        })
        | Some(AnthropicInToolChoice::Any {
            disable_parallel_tool_use,
        })
        | Some(AnthropicInToolChoice::Tool {
            disable_parallel_tool_use,
            ..
        }) => *disable_parallel_tool_use == Some(true),
        _ => false,
    };
    if let Some(choice) = req.tool_choice {
        let choice = match choice {
            AnthropicInToolChoice::Auto { .. } => json!("auto"),
            AnthropicInToolChoice::Any { .. } => json!("required"),
            AnthropicInToolChoice::None => json!("none"),
            AnthropicInToolChoice::Tool { name, .. } => {
                json!({"type": "function", "function": {"name": name}})
            }
        };
        out.insert("tool_choice".into(), choice);
    }
    if no_parallel && out.contains_key("tools") {
        out.insert("parallel_tool_calls".into(), json!(false));
    }
    if let Some(user) = req.metadata.and_then(|m| m.user_id) {
        out.insert("user".into(), json!(user));
    }
    Ok(Value::Object(out))
}

/// OpenAI finish reasons as Anthropic stop reasons.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Usage with Anthropic semantics.
fn usage_json(u: Usage) -> Value {
    json!({
        "input_tokens": u.prompt.saturating_sub(u.cached + u.cache_write),
        "output_tokens": u.completion,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cached,
    })
}

fn message_id(openai_id: &str) -> String {
    if openai_id.starts_with("msg_") {
        openai_id.to_owned()
    } else {
        format!("msg_{}", openai_id.trim_start_matches("chatcmpl-"))
    }
}

/// The Anthropic message for an OpenAI chat completion (`cache_write`: what the provider wrote
/// to its cache, when known from beyond OpenAI's format).
pub fn response(resp: OpenAiCompletion, cache_write: u64) -> (Value, Usage) {
    let mut usage: Usage = resp.usage.map(Usage::from).unwrap_or_default();
    usage.cache_write = cache_write;
    let mut content = Vec::new();
    let mut finish = None;
    if let Some(choice) = resp.choices.into_iter().next() {
        finish = choice.finish_reason;
        let m = choice.message;
        if let Some(text) = m.content.filter(|t| !t.is_empty()).or(m.refusal) {
            content.push(json!({"type": "text", "text": text}));
        }
        for call in m.tool_calls.unwrap_or_default() {
            let input: Value =
                serde_json::from_str(&call.function.arguments).unwrap_or_else(|_| json!({}));
            content.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
        }
    }
    let body = json!({
        "id": message_id(&resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason(finish.as_deref()),
        "stop_sequence": null,
        "usage": usage_json(usage),
    });
    (body, usage)
}

/// Anthropic's error type for an HTTP status.
pub fn error_type(status: u32) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 | 403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An Anthropic error body.
pub fn error_json(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// An OpenAI error body as Anthropic's.
pub fn error(status: u32, body: &[u8]) -> Value {
    let message = serde_json::from_slice::<OpenAiErrorBody>(body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| format!("The provider answered {status} with an unreadable error."));
    error_json(error_type(status), &message)
}

/// Appends one Anthropic SSE event.
fn emit(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// Sent when the provider's stream ends before it is complete.
pub const INCOMPLETE: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"The provider's stream ended before it was complete.\"}}\n\n";

impl AnthropicToOpenAi {
    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = message_id(id);
        model.clone_into(&mut self.model);
        emit(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some((i, true)) => i,
            _ => {
                self.close_block(out);
                let i = self.blocks;
                self.blocks += 1;
                self.open = Some((i, true));
                emit(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": i,
                            "content_block": {"type": "text", "text": ""}}),
                );
                i
            }
        };
        emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": text}}),
        );
    }

    fn tool_call(&mut self, call: OpenAiToolCallDelta, out: &mut Vec<u8>) {
        let known = self.tool_blocks.iter().find(|(c, _)| *c == call.index);
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let index = match known {
            Some(&(_, b)) => b,
            None => {
                self.close_block(out);
                let b = self.blocks;
                self.blocks += 1;
                self.tool_blocks.push((call.index, b));
                self.open = Some((b, false));
                emit(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": b, "content_block": {
                        "type": "tool_use", "id": call.id.unwrap_or_default(),
                        "name": name.unwrap_or_default(), "input": {},
                    }}),
                );
                b
            }
        };
        if let Some(args) = arguments.filter(|a| !a.is_empty()) {
            emit(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": args}}),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        let usage = self.usage.unwrap_or_default();
        emit(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                    "usage": usage_json(usage)}),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
        self.done = true;
    }

    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data == b"[DONE]" {
            if !self.saw_error && !self.done {
                if !self.started {
                    self.start("", "", out);
                }
                self.finish(out);
            }
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<OpenAiChunk>(data) else {
            return;
        };
        if let Some(e) = chunk.error {
            let kind = match e.kind.as_deref() {
                Some("rate_limit_error") => "rate_limit_error",
                Some("invalid_request_error") => "invalid_request_error",
                _ => "api_error",
            };
            emit(out, "error", &error_json(kind, &e.message));
            self.saw_error = true;
            return;
        }
        self.start(&chunk.id, &chunk.model, out);
        if let Some(u) = chunk.usage {
            let mut u: Usage = u.into();
            u.cache_write = self.cache_write;
            self.usage = Some(u);
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content.or(choice.delta.refusal) {
                self.text(&text, out);
            }
            for call in choice.delta.tool_calls.unwrap_or_default() {
                self.tool_call(call, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.stop_reason = Some(stop_reason(Some(&reason)));
            }
        }
    }
}

impl Translator for AnthropicToOpenAi {
    fn request_body(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let req: AnthropicInRequest = parse_request(body)?;
        self.stream = req.stream;
        let openai = request(req, upstream_model, self.max_completion_tokens)?;
        serde_json::to_vec(&openai).map_err(|e| invalid(e.to_string()))
    }

    fn response_headers(&mut self, status: u32, event_stream: bool) -> Option<u32> {
        self.status = status;
        self.event_stream = event_stream;
        None
    }

    fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome {
        if !self.event_stream || self.status >= 400 {
            let Some(body) = self.body.complete(chunk, end_of_stream) else {
                return held_back();
            };
            self.done = true;
            let out = if self.status >= 400 {
                error(self.status, &body)
            } else {
                match serde_json::from_slice::<OpenAiCompletion>(&body) {
                    Ok(resp) => {
                        let (v, usage) = response(resp, self.cache_write);
                        self.usage = Some(usage);
                        v
                    }
                    Err(_) => error(502, b""),
                }
            };
            return whole(&out);
        }
        let mut out = Vec::with_capacity(chunk.len() * 2);
        for data in sse_data(&mut self.splitter, chunk) {
            self.on_event(&data, &mut out);
        }
        if end_of_stream && !self.done && !self.saw_error {
            out.extend_from_slice(INCOMPLETE);
        }
        ChunkOutcome::Replace(out)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn provider_usage(&mut self, usage: Usage) {
        self.cache_write = usage.cache_write;
    }

    fn completed(&self) -> bool {
        self.done
    }

    fn upstream_path(&self, out: &mut String) {
        // The host builds OpenAI-style paths itself (they depend on the provider).
        out.push_str("/chat/completions");
    }
}

#[cfg(test)]
mod tests;
