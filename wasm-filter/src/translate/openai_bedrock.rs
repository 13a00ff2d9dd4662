//! OpenAI Chat Completions (client) <-> Amazon Bedrock Converse / ConverseStream (provider).
//!
//! Converse: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>;
//! ConverseStream answers in the AWS event-stream framing ([`crate::eventstream`]), one JSON
//! payload per event named by its `:event-type` header: `messageStart`, `contentBlockStart`,
//! `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata` (the usage, last);
//! exceptions are messages with `:message-type: exception`. Requests are signed by the host
//! (SigV4, [`crate::sigv4`]) once the body is known.

use serde_json::{json, Value};

use super::common::*;
use super::schema::bedrock::*;
use super::schema::openai::*;
use super::Translator;
use crate::error::FilterError;
use crate::eventstream::{Decoder, Message};
use crate::request::push_path_segment;
use crate::stream::ChunkOutcome;
use crate::usage::Usage;

/// One request from an OpenAI client to a Bedrock provider.
#[derive(Debug, Default)]
pub struct OpenAiToBedrock {
    header: ChunkHeader,
    upstream_model: String,
    stream: bool,
    client_wants_usage: bool,
    status: u32,
    event_stream: bool,
    body: WholeBody,
    decoder: Decoder,
    usage: Option<Usage>,
    /// Bedrock content block index -> OpenAI tool call index.
    tool_index: Vec<(usize, usize)>,
    started: bool,
    finished: bool,
    saw_error: bool,
    done: bool,
}

impl OpenAiToBedrock {
    /// `id` becomes the answer's id (Bedrock's answers carry none in the body).
    pub fn new(created: u64, id: &str) -> Self {
        OpenAiToBedrock {
            header: ChunkHeader {
                created,
                id: format!("chatcmpl-{id}"),
                model: String::new(),
            },
            ..Default::default()
        }
    }
}

fn image_block(url: String) -> Result<BedrockBlock, FilterError> {
    match image(url)? {
        Image::Base64 { media_type, data } => {
            let format = match media_type.as_str() {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => return Err(invalid(format!("image type {other} is not supported"))),
            };
            Ok(BedrockBlock::Image(BedrockImage {
                format: format.to_owned(),
                source: BedrockImageSource { bytes: data },
            }))
        }
        Image::Url(_) => Err(invalid(
            "this model takes images as data URLs only (Bedrock does not fetch URLs)",
        )),
    }
}

fn user_blocks(content: OpenAiContent) -> Result<Vec<BedrockBlock>, FilterError> {
    match content {
        OpenAiContent::Text(text) => Ok(vec![BedrockBlock::Text(text)]),
        OpenAiContent::Parts(parts) => parts
            .into_iter()
            .map(|p| match p {
                OpenAiContentPart::Text { text } => Ok(BedrockBlock::Text(text)),
                OpenAiContentPart::ImageUrl { image_url } => image_block(image_url.url),
                OpenAiContentPart::Unsupported => {
                    Err(invalid("unsupported content part for this model"))
                }
            })
            .collect(),
    }
}

/// Appends blocks, merging consecutive turns of the same role (Bedrock wants them alternating).
fn push(messages: &mut Vec<BedrockMessage>, role: &'static str, blocks: Vec<BedrockBlock>) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => messages.push(BedrockMessage {
            role,
            content: blocks,
        }),
    }
}

/// The Converse request for an OpenAI chat request.
pub fn request(req: OpenAiChatRequest) -> Result<BedrockRequest, FilterError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(invalid("`n` other than 1 is not supported by this model"));
    }
    let mut system = Vec::new();
    let mut messages = Vec::new();
    let mut called: Vec<String> = Vec::new();
    for message in req.messages {
        match message {
            OpenAiMessage::System { content } | OpenAiMessage::Developer { content } => {
                system.push(BedrockText {
                    text: text_of(content, "system")?,
                });
            }
            OpenAiMessage::User { content } => push(&mut messages, "user", user_blocks(content)?),
            OpenAiMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if let Some(content) = content {
                    let text = text_of(content, "assistant")?;
                    if !text.is_empty() {
                        blocks.push(BedrockBlock::Text(text));
                    }
                }
                for call in tool_calls.unwrap_or_default() {
                    let input = tool_arguments(&call)?;
                    if !called.contains(&call.function.name) {
                        called.push(call.function.name.clone());
                    }
                    blocks.push(BedrockBlock::ToolUse(BedrockToolUse {
                        tool_use_id: call.id,
                        name: call.function.name,
                        input,
                    }));
                }
                push(&mut messages, "assistant", blocks);
            }
            OpenAiMessage::Tool {
                tool_call_id,
                content,
            } => {
                let text = text_of(content, "tool")?;
                let content = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => BedrockToolResultContent::Json(v),
                    _ => BedrockToolResultContent::Text(text),
                };
                push(
                    &mut messages,
                    "user",
                    vec![BedrockBlock::ToolResult(BedrockToolResult {
                        tool_use_id: tool_call_id,
                        content: vec![content],
                    })],
                );
            }
        }
    }
    if messages.is_empty() {
        return Err(invalid(
            "`messages` must contain a user or assistant message",
        ));
    }

    let mut tools: Vec<BedrockTool> = req
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(|t| BedrockTool {
            tool_spec: BedrockToolSpec {
                name: t.function.name,
                description: t.function.description,
                input_schema: BedrockSchema {
                    json: t
                        .function
                        .parameters
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                },
            },
        })
        .collect();
    // Like Anthropic, Bedrock wants a definition for every tool the conversation mentions.
    for name in called {
        if !tools.iter().any(|t| t.tool_spec.name == name) {
            tools.push(BedrockTool {
                tool_spec: BedrockToolSpec {
                    name,
                    description: None,
                    input_schema: BedrockSchema {
                        json: json!({"type": "object"}),
                    },
                },
            });
        }
    }
    let tool_choice = match req.tool_choice {
        None => None,
        Some(OpenAiToolChoice::Mode(mode)) => match mode.as_str() {
            // Converse has no "none": the tools stay defined and the model is left to choose.
            "none" | "auto" => None,
            "required" => Some(json!({"any": {}})),
            other => return Err(invalid(format!("unknown tool_choice {other:?}"))),
        },
        Some(OpenAiToolChoice::Named { function }) => {
            Some(json!({"tool": {"name": function.name}}))
        }
    };
    let inference = BedrockInferenceConfig {
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p,
        stop_sequences: req.stop.map(OpenAiStop::into_vec).unwrap_or_default(),
    };
    Ok(BedrockRequest {
        messages,
        system,
        inference_config: (inference != BedrockInferenceConfig::default()).then_some(inference),
        tool_config: (!tools.is_empty()).then_some(BedrockToolConfig { tools, tool_choice }),
    })
}

/// Bedrock stop reasons as OpenAI finish reasons.
pub fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("tool_use") => "tool_calls",
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("guardrail_intervened") | Some("content_filtered") => "content_filter",
        _ => "stop",
    }
}

/// Usage with OpenAI semantics (Bedrock's input leaves out cache reads and writes).
fn usage_from(u: BedrockUsage) -> Usage {
    let prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_write_input_tokens;
    Usage {
        prompt,
        completion: u.output_tokens,
        total: prompt + u.output_tokens,
        cached: u.cache_read_input_tokens,
        cache_write: u.cache_write_input_tokens,
        reasoning: 0,
    }
}

/// The OpenAI `chat.completion` for a Converse answer.
pub fn response(resp: BedrockResponse, header: &ChunkHeader) -> (Value, Usage) {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in resp.output.message.content {
        if let Some(t) = block.text {
            text.push_str(&t);
        } else if let Some(call) = block.tool_use {
            tool_calls.push(json!({
                "id": call.tool_use_id, "type": "function",
                "function": {"name": call.name, "arguments": call.input.to_string()},
            }));
        } else if let Some(r) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            reasoning.push_str(&r.text);
        }
    }
    let mut message = message(text, tool_calls);
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let usage = usage_from(resp.usage);
    let finish = finish_reason(resp.stop_reason.as_deref());
    (completion(header, message, finish, usage), usage)
}

/// A Bedrock error (HTTP status and `{"message"}`, or a stream exception's name and message)
/// as OpenAI's error.
pub fn error(status: u32, exception: Option<&str>, message: &str) -> Value {
    let lower = message.to_ascii_lowercase();
    let (kind, code) = match (status, exception) {
        (_, Some("throttlingException")) | (429, _) => {
            ("rate_limit_error", Some("rate_limit_exceeded"))
        }
        (_, Some("serviceUnavailableException")) | (503, _) => ("server_error", Some("overloaded")),
        (_, Some("validationException")) | (400, _) => (
            "invalid_request_error",
            (lower.contains("too long") || lower.contains("context window"))
                .then_some("context_length_exceeded"),
        ),
        (401 | 403, _)
            if lower.contains("signature")
                || lower.contains("security token")
                || lower.contains("api key") =>
        {
            ("authentication_error", Some("invalid_api_key"))
        }
        (403, _) => ("permission_error", None),
        (404, _) => ("not_found_error", Some("model_not_found")),
        (408, _) | (_, Some("modelTimeoutException")) => ("server_error", Some("timeout")),
        _ => ("server_error", None),
    };
    error_json(message, kind, code)
}

impl OpenAiToBedrock {
    fn on_message(&mut self, m: Message, out: &mut Vec<u8>) {
        // A payload too costly to parse is skipped like an unknown one.
        let payload: BedrockStreamPayload = if crate::request::too_complex(&m.payload) {
            BedrockStreamPayload::default()
        } else {
            serde_json::from_slice(&m.payload).unwrap_or_default()
        };
        if m.header(":message-type") == Some("exception") {
            let message = payload.message.unwrap_or_default();
            emit(out, &error(500, m.header(":exception-type"), &message));
            self.saw_error = true;
            return;
        }
        let h = &self.header;
        match m.header(":event-type") {
            Some("messageStart") if !self.started => {
                self.started = true;
                emit(
                    out,
                    &h.chunk(json!({"role": "assistant", "content": ""}), None),
                );
            }
            Some("contentBlockStart") => {
                if let Some(tool) = payload.start.and_then(|s| s.tool_use) {
                    let i = self.tool_index.len();
                    self.tool_index.push((payload.content_block_index, i));
                    emit(
                        out,
                        &h.chunk(
                            json!({"tool_calls": [{"index": i, "id": tool.tool_use_id, "type": "function",
                                                   "function": {"name": tool.name, "arguments": ""}}]}),
                            None,
                        ),
                    );
                }
            }
            Some("contentBlockDelta") => {
                let Some(delta) = payload.delta else { return };
                if let Some(text) = delta.text {
                    emit(out, &h.chunk(json!({"content": text}), None));
                } else if let Some(tool) = delta.tool_use {
                    let block = payload.content_block_index;
                    if let Some(&(_, i)) = self.tool_index.iter().find(|(b, _)| *b == block) {
                        emit(
                            out,
                            &h.chunk(
                                json!({"tool_calls": [{"index": i, "function": {"arguments": tool.input}}]}),
                                None,
                            ),
                        );
                    }
                } else if let Some(text) = delta.reasoning_content.and_then(|r| r.text) {
                    emit(out, &h.chunk(json!({"reasoning_content": text}), None));
                }
            }
            Some("messageStop") => {
                let finish = finish_reason(payload.stop_reason.as_deref());
                emit(out, &h.chunk(json!({}), Some(finish)));
                self.finished = true;
            }
            Some("metadata") => {
                if let Some(u) = payload.usage {
                    self.usage = Some(usage_from(u));
                }
            }
            _ => {}
        }
    }
}

impl Translator for OpenAiToBedrock {
    fn request_body(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let req: OpenAiChatRequest = parse_request(body)?;
        self.stream = req.stream.unwrap_or(false);
        self.client_wants_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        upstream_model.clone_into(&mut self.upstream_model);
        upstream_model.clone_into(&mut self.header.model);
        let bedrock = request(req)?;
        serde_json::to_vec(&bedrock).map_err(|e| invalid(e.to_string()))
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
                let message = serde_json::from_slice::<BedrockErrorBody>(&body)
                    .map(|b| b.message)
                    .unwrap_or_else(|_| {
                        format!(
                            "The provider answered {} with an unreadable error.",
                            self.status
                        )
                    });
                error(self.status, None, &message)
            } else {
                match serde_json::from_slice::<BedrockResponse>(&body) {
                    Ok(resp) => {
                        let (v, usage) = response(resp, &self.header);
                        self.usage = Some(usage);
                        v
                    }
                    Err(_) => error(502, None, "The provider's answer could not be read."),
                }
            };
            return whole(&out);
        }
        let mut messages = Vec::new();
        let framing = self.decoder.feed(chunk, |m| messages.push(m));
        let mut out = Vec::with_capacity(chunk.len() * 2);
        for m in messages {
            self.on_message(m, &mut out);
        }
        if framing.is_err() && !self.saw_error {
            emit(
                &mut out,
                &error(502, None, "The provider's stream could not be decoded."),
            );
            self.saw_error = true;
        }
        if end_of_stream {
            let usage = self.usage.filter(|_| self.client_wants_usage);
            self.done = end_stream(&mut out, &self.header, self.finished, self.saw_error, usage);
        }
        ChunkOutcome::Replace(out)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn completed(&self) -> bool {
        self.done
    }

    fn upstream_path(&self, out: &mut String) {
        out.push_str("/model/");
        push_path_segment(out, &self.upstream_model);
        out.push_str(if self.stream {
            "/converse-stream"
        } else {
            "/converse"
        });
    }
}

#[cfg(test)]
mod tests;
