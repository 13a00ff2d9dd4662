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

use super::driver::{ClientApi, Converter, ErrorHints, Event, Framed, Pass, Progress};
use super::openai_request::{invalid, parse_request};
use super::schema::anthropic::*;
use super::schema::openai::*;
use crate::error::FilterError;
use crate::usage::Usage;

/// One request from an Anthropic client to an OpenAI-style provider.
pub type AnthropicToOpenAi = Framed<AnthropicOpenAi>;

/// The conversion of one request from an Anthropic client to an OpenAI-style provider.
#[derive(Debug, Default)]
pub struct AnthropicOpenAi {
    /// OpenAI's own API wants `max_completion_tokens` (its reasoning models refuse
    /// `max_tokens`); compatible providers know `max_tokens`.
    max_completion_tokens: bool,
    stream: bool,
    id: String,
    model: String,
    started: bool,
    /// The open content block: its index and whether it is text.
    open: Option<(usize, bool)>,
    blocks: usize,
    /// OpenAI tool call index -> Anthropic block index.
    tool_blocks: Vec<(usize, usize)>,
    stop_reason: Option<&'static str>,
    /// Cache writes the provider reported beyond OpenAI's format (set in a chain).
    cache_write: u64,
}

impl AnthropicToOpenAi {
    pub fn new(max_completion_tokens: bool) -> Self {
        Framed::around(AnthropicOpenAi {
            max_completion_tokens,
            ..Default::default()
        })
    }
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

fn message_id(openai_id: &str) -> String {
    if openai_id.starts_with("msg_") {
        openai_id.to_owned()
    } else {
        format!("msg_{}", openai_id.trim_start_matches("chatcmpl-"))
    }
}

/// Appends the Anthropic message for an OpenAI chat completion (`cache_write`: what the
/// provider wrote to its cache, when known from beyond OpenAI's format); returns its usage.
pub fn response(resp: OpenAiCompletion, cache_write: u64, out: &mut Vec<u8>) -> Usage {
    let mut usage: Usage = resp.usage.map(Usage::from).unwrap_or_default();
    usage.cache_write = cache_write;
    let mut finish = None;
    let mut text = None;
    let mut calls = Vec::new();
    if let Some(choice) = resp.choices.into_iter().next() {
        finish = choice.finish_reason;
        let m = choice.message;
        text = m.content.filter(|t| !t.is_empty()).or(m.refusal);
        calls = m.tool_calls.unwrap_or_default();
    }
    let mut content = Vec::with_capacity(1 + calls.len());
    if let Some(text) = &text {
        content.push(AnthropicBlockOut::Text { text });
    }
    for call in &calls {
        let input: Value =
            serde_json::from_str(&call.function.arguments).unwrap_or_else(|_| json!({}));
        content.push(AnthropicBlockOut::ToolUse {
            id: &call.id,
            name: &call.function.name,
            input,
        });
    }
    let id = message_id(&resp.id);
    AnthropicMessageOut {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &resp.model,
        content,
        stop_reason: Some(stop_reason(finish.as_deref())),
        stop_sequence: (),
        usage: usage.into(),
    }
    .write(out);
    usage
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

/// Appends an OpenAI error body as Anthropic's.
pub fn error(status: u32, body: &[u8], out: &mut Vec<u8>) {
    let message = serde_json::from_slice::<OpenAiErrorBody>(body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| format!("The provider answered {status} with an unreadable error."));
    AnthropicErrorOut::new(error_type(status), &message).write(out);
}

impl AnthropicOpenAi {
    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = message_id(id);
        model.clone_into(&mut self.model);
        AnthropicStreamEventOut::MessageStart {
            message: AnthropicMessageOut {
                id: &self.id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: (),
                usage: AnthropicUsageOut {
                    input_tokens: 0,
                    output_tokens: 0,
                    cache_creation_input_tokens: None,
                    cache_read_input_tokens: None,
                },
            },
        }
        .write(out);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            AnthropicStreamEventOut::ContentBlockStop { index }.write(out);
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
                AnthropicStreamEventOut::ContentBlockStart {
                    index: i,
                    content_block: AnthropicBlockOut::Text { text: "" },
                }
                .write(out);
                i
            }
        };
        AnthropicStreamEventOut::ContentBlockDelta {
            index,
            delta: AnthropicDeltaOut::TextDelta { text },
        }
        .write(out);
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
                AnthropicStreamEventOut::ContentBlockStart {
                    index: b,
                    content_block: AnthropicBlockOut::ToolUse {
                        id: call.id.as_deref().unwrap_or_default(),
                        name: name.as_deref().unwrap_or_default(),
                        input: json!({}),
                    },
                }
                .write(out);
                b
            }
        };
        if let Some(args) = arguments.filter(|a| !a.is_empty()) {
            AnthropicStreamEventOut::ContentBlockDelta {
                index,
                delta: AnthropicDeltaOut::InputJsonDelta {
                    partial_json: &args,
                },
            }
            .write(out);
        }
    }

    fn finish(&mut self, usage: Option<Usage>, out: &mut Vec<u8>, p: &mut Progress) {
        self.close_block(out);
        AnthropicStreamEventOut::MessageDelta {
            delta: AnthropicStopOut {
                stop_reason: self.stop_reason.unwrap_or("end_turn"),
                stop_sequence: (),
            },
            usage: usage.unwrap_or_default().into(),
        }
        .write(out);
        AnthropicStreamEventOut::MessageStop.write(out);
        p.done = true;
    }

    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>, p: &mut Progress) {
        if data == b"[DONE]" {
            if !p.error_sent && !p.done {
                if !self.started {
                    self.start("", "", out);
                }
                self.finish(p.usage, out, p);
            }
            return;
        }
        let Some(chunk) = super::driver::parse_bounded::<OpenAiChunk>(data) else {
            return;
        };
        if let Some(e) = chunk.error {
            let kind = match e.kind.as_deref() {
                Some("rate_limit_error") => "rate_limit_error",
                Some("invalid_request_error") => "invalid_request_error",
                _ => "api_error",
            };
            AnthropicErrorOut::new(kind, &e.message).write_event(out);
            p.error_sent = true;
            return;
        }
        self.start(&chunk.id, &chunk.model, out);
        if let Some(u) = chunk.usage {
            let mut u: Usage = u.into();
            u.cache_write = self.cache_write;
            p.usage = Some(u);
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

impl Converter for AnthropicOpenAi {
    const CLIENT: ClientApi = ClientApi::Anthropic;

    fn request(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let req: AnthropicInRequest = parse_request(body)?;
        self.stream = req.stream;
        let openai = request(req, upstream_model, self.max_completion_tokens)?;
        serde_json::to_vec(&openai).map_err(|e| invalid(e.to_string()))
    }

    type Answer<'a> = OpenAiCompletion;

    fn response(&mut self, answer: OpenAiCompletion, out: &mut Vec<u8>) -> Option<Usage> {
        Some(response(answer, self.cache_write, out))
    }

    fn error(&mut self, status: u32, body: &[u8], out: &mut Vec<u8>) -> ErrorHints {
        error(status, body, out);
        ErrorHints::default()
    }

    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>, p: &mut Progress) -> Pass {
        if let Some(data) = event.data() {
            self.on_event(data, out, p);
        }
        Pass::Replaced
    }

    fn provider_usage(&mut self, usage: Usage) {
        self.cache_write = usage.cache_write;
    }

    fn upstream_path(&self, out: &mut String) {
        // The host builds OpenAI-style paths itself (they depend on the provider).
        out.push_str("/chat/completions");
    }
}

#[cfg(test)]
mod tests;
