//! OpenAI Chat Completions (client) <-> Amazon Bedrock Converse / ConverseStream (provider).
//!
//! Converse: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>;
//! ConverseStream answers in the AWS event-stream framing ([`switchyard_aws::eventstream`]), one JSON
//! payload per event named by its `:event-type` header: `messageStart`, `contentBlockStart`,
//! `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata` (the usage, last);
//! exceptions are messages with `:message-type: exception`. Requests are signed by the host
//! (SigV4, [`switchyard_aws::sigv4`]) once the body is known.

use serde_json::{json, Value};

use super::driver::{
    parse_bounded, ClientApi, Converter, ErrorHints, Event, Framed, Framing, Pass, Progress,
};
use super::openai_request::*;
use super::schema::bedrock::*;
use super::schema::openai::*;
use crate::error::FilterError;
use crate::request::push_path_segment;
use crate::sse::write_data;
use crate::usage::Usage;
use switchyard_aws::eventstream::Message;

/// One request from an OpenAI client to a Bedrock provider.
pub type OpenAiToBedrock = Framed<OpenAiBedrock>;

/// The conversion of one request from an OpenAI client to a Bedrock provider.
#[derive(Debug, Default)]
pub struct OpenAiBedrock {
    head: OpenAiStreamHead,
    upstream_model: String,
    stream: bool,
    /// Bedrock content block index -> OpenAI tool call index.
    tool_index: Vec<(usize, usize)>,
    started: bool,
    finished: bool,
}

impl OpenAiToBedrock {
    /// `id` becomes the answer's id (Bedrock's answers carry none in the body).
    pub fn new(created: u64, id: &str) -> Self {
        Framed::around(OpenAiBedrock {
            head: OpenAiStreamHead {
                created,
                id: format!("chatcmpl-{id}"),
                ..Default::default()
            },
            ..Default::default()
        })
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
        // The client's text goes on as it wrote it (see `JsonText`).
        OpenAiContent::Text(text) => Ok(vec![BedrockBlock::ClientText(text)]),
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

/// Appends the OpenAI `chat.completion` for a Converse answer; returns its usage.
pub fn response(resp: BedrockResponse, head: &OpenAiStreamHead, out: &mut Vec<u8>) -> Usage {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in resp.output.message.content {
        if let Some(t) = block.text {
            text.push_str(&t);
        } else if let Some(call) = block.tool_use {
            calls.push((call.tool_use_id, call.name, call.input.to_string()));
        } else if let Some(r) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            reasoning.push_str(&r.text);
        }
    }
    let tool_calls = calls
        .iter()
        .map(|(id, name, arguments)| {
            OpenAiToolCallOut::call(None, id.as_str(), name, arguments.as_str())
        })
        .collect();
    let usage = usage_from(resp.usage);
    let finish = finish_reason(resp.stop_reason.as_deref());
    head.completion(
        out,
        OpenAiAssistantOut::new(&text, &reasoning, tool_calls),
        finish,
        usage,
    );
    usage
}

/// A Bedrock error (HTTP status and `{"message"}`, or a stream exception's name and message)
/// as OpenAI's error.
pub fn error<'a>(status: u32, exception: Option<&str>, message: &'a str) -> OpenAiErrorOut<'a> {
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
    OpenAiErrorOut::new(message, kind, code)
}

/// What a client is told of an answer that cannot be read.
pub const UNREADABLE: &str = "The provider's answer could not be read.";

/// The message of a Bedrock error body (`{"message"}`), or one saying it could not be read.
pub fn error_message(status: u32, body: &[u8]) -> String {
    serde_json::from_slice::<BedrockErrorBody>(body)
        .map(|b| b.message)
        .unwrap_or_else(|_| format!("The provider answered {status} with an unreadable error."))
}

impl OpenAiBedrock {
    fn on_message(&mut self, m: Message, out: &mut Vec<u8>, p: &mut Progress) {
        // A payload too costly to parse is skipped like an unknown one.
        let payload: BedrockStreamPayload = parse_bounded(&m.payload).unwrap_or_default();
        if m.header(":message-type") == Some("exception") {
            let message = payload.message.unwrap_or_default();
            write_data(out, &error(500, m.header(":exception-type"), &message));
            p.error_sent = true;
            return;
        }
        let h = &self.head;
        match m.header(":event-type") {
            Some("messageStart") if !self.started => {
                self.started = true;
                h.chunk(out, OpenAiDeltaOut::start(), None);
            }
            Some("contentBlockStart") => {
                if let Some(tool) = payload.start.and_then(|s| s.tool_use) {
                    let i = self.tool_index.len();
                    self.tool_index.push((payload.content_block_index, i));
                    let calls = [OpenAiToolCallOut::call(
                        Some(i),
                        tool.tool_use_id.as_str(),
                        &tool.name,
                        "",
                    )];
                    h.chunk(out, OpenAiDeltaOut::tool_calls(&calls), None);
                }
            }
            Some("contentBlockDelta") => {
                let Some(delta) = payload.delta else { return };
                if let Some(text) = delta.text {
                    h.chunk(out, OpenAiDeltaOut::content(&text), None);
                } else if let Some(tool) = delta.tool_use {
                    let block = payload.content_block_index;
                    if let Some(&(_, i)) = self.tool_index.iter().find(|(b, _)| *b == block) {
                        let calls = [OpenAiToolCallOut::arguments(i, &tool.input)];
                        h.chunk(out, OpenAiDeltaOut::tool_calls(&calls), None);
                    }
                } else if let Some(text) = delta.reasoning_content.and_then(|r| r.text) {
                    h.chunk(out, OpenAiDeltaOut::reasoning(&text), None);
                }
            }
            Some("messageStop") => {
                let finish = finish_reason(payload.stop_reason.as_deref());
                h.chunk(out, OpenAiDeltaOut::default(), Some(finish));
                self.finished = true;
            }
            Some("metadata") => {
                if let Some(u) = payload.usage {
                    p.usage = Some(usage_from(u));
                }
            }
            _ => {}
        }
    }
}

impl Converter for OpenAiBedrock {
    const CLIENT: ClientApi = ClientApi::OpenAi;
    const FRAMING: Framing = Framing::AwsEventStream;

    fn request(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let req: OpenAiChatRequest = parse_request(body)?;
        self.stream = req.stream.unwrap_or(false);
        self.head.include_usage = req.wants_usage();
        upstream_model.clone_into(&mut self.upstream_model);
        upstream_model.clone_into(&mut self.head.model);
        let bedrock = request(req)?;
        serde_json::to_vec(&bedrock).map_err(|e| invalid(e.to_string()))
    }

    type Answer<'a> = BedrockResponse;

    fn response(&mut self, answer: BedrockResponse, out: &mut Vec<u8>) -> Option<Usage> {
        Some(response(answer, &self.head, out))
    }

    fn unreadable(&mut self, out: &mut Vec<u8>) {
        error(502, None, UNREADABLE).write(out);
    }

    fn error(&mut self, status: u32, body: &[u8], out: &mut Vec<u8>) -> ErrorHints {
        error(status, None, &error_message(status, body)).write(out);
        ErrorHints::default()
    }

    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>, p: &mut Progress) -> Pass {
        if let Event::Aws(m) = event {
            self.on_message(m, out, p);
        }
        Pass::Replaced
    }

    /// Bedrock ends a stream by closing it: complete only after `messageStop`.
    fn finish(&mut self, out: &mut Vec<u8>, p: &Progress) -> bool {
        if self.finished {
            self.head.end(out, p.usage);
        }
        self.finished
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
