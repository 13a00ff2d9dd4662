//! OpenAI Chat Completions (client) <-> Anthropic Messages (provider).
//!
//! Request: <https://docs.anthropic.com/en/api/messages>; response and stream:
//! <https://docs.anthropic.com/en/docs/build-with-claude/streaming>; errors:
//! <https://docs.anthropic.com/en/api/errors>. Client side:
//! <https://platform.openai.com/docs/api-reference/chat>.

use serde_json::json;

use super::driver::{ClientApi, Converter, ErrorHints, Event, Framed, Pass, Progress};
use super::openai_request::*;
use super::schema::anthropic::*;
use super::schema::openai::*;
use crate::error::FilterError;
use crate::sse::write_data;
use crate::usage::Usage;

/// `max_tokens` is required by Anthropic; used when the client sets none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u64 = 1024;

/// One request from an OpenAI client to an Anthropic provider.
pub type OpenAiToAnthropic = Framed<OpenAiAnthropic>;

/// The conversion of one request from an OpenAI client to an Anthropic provider.
#[derive(Debug, Default)]
pub struct OpenAiAnthropic {
    /// `id`, `model` and `created` of the answers.
    head: OpenAiStreamHead,
    stream: bool,
    /// The stream's usage as Anthropic reports it (message_start, then message_delta).
    raw_usage: AnthropicUsage,
    /// Anthropic content block index -> OpenAI tool call index.
    tool_index: Vec<(usize, usize)>,
    /// Claude on Vertex AI: the model goes in the path, `anthropic_version` in the body.
    vertex: bool,
    upstream_model: String,
}

/// The `anthropic_version` Claude on Vertex AI takes in the body.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

impl OpenAiToAnthropic {
    pub fn new(created: u64) -> Self {
        Framed::around(OpenAiAnthropic {
            head: OpenAiStreamHead {
                created,
                ..Default::default()
            },
            ..Default::default()
        })
    }

    /// Claude models on Vertex AI (below `/v1/projects/{p}/locations/{l}`).
    pub fn vertex(created: u64) -> Self {
        Framed::around(OpenAiAnthropic {
            vertex: true,
            head: OpenAiStreamHead {
                created,
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

/// Appends Vertex AI's path for a Claude model: `rawPredict`, or `streamRawPredict`.
pub fn vertex_path(out: &mut String, model: &str, stream: bool) {
    out.push_str("/publishers/anthropic/models/");
    crate::request::push_path_segment(out, model);
    out.push_str(if stream {
        ":streamRawPredict"
    } else {
        ":rawPredict"
    });
}

fn image_source(url: String) -> Result<AnthropicImageSource, FilterError> {
    Ok(match image(url)? {
        Image::Base64 { media_type, data } => AnthropicImageSource::Base64 { media_type, data },
        Image::Url(url) => AnthropicImageSource::Url { url },
    })
}

fn user_blocks(content: OpenAiContent) -> Result<Vec<AnthropicBlock>, FilterError> {
    match content {
        // The client's text goes on as it wrote it (see `JsonText`).
        OpenAiContent::Text(text) => Ok(vec![AnthropicBlock::ClientText { text }]),
        OpenAiContent::Parts(parts) => parts
            .into_iter()
            .map(|p| match p {
                OpenAiContentPart::Text { text } => Ok(AnthropicBlock::Text { text }),
                OpenAiContentPart::ImageUrl { image_url } => Ok(AnthropicBlock::Image {
                    source: image_source(image_url.url)?,
                }),
                OpenAiContentPart::Unsupported => {
                    Err(invalid("unsupported content part for this model"))
                }
            })
            .collect(),
    }
}

/// Appends blocks to the conversation, merging consecutive turns of the same role (tool results
/// arrive as several OpenAI messages but must form one Anthropic user turn).
fn push(messages: &mut Vec<AnthropicMessage>, role: AnthropicRole, blocks: Vec<AnthropicBlock>) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => messages.push(AnthropicMessage {
            role,
            content: blocks,
        }),
    }
}

/// The Anthropic request for an OpenAI chat request.
pub fn request(req: OpenAiChatRequest, model: &str) -> Result<AnthropicRequest, FilterError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(invalid("`n` other than 1 is not supported by this model"));
    }
    let mut system = Vec::new();
    let mut messages = Vec::new();
    let mut called_tools: Vec<String> = Vec::new();
    for message in req.messages {
        match message {
            OpenAiMessage::System { content } | OpenAiMessage::Developer { content } => {
                system.push(text_of(content, "system")?);
            }
            OpenAiMessage::User { content } => {
                push(&mut messages, AnthropicRole::User, user_blocks(content)?);
            }
            OpenAiMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if let Some(content) = content {
                    let text = text_of(content, "assistant")?;
                    if !text.is_empty() {
                        blocks.push(AnthropicBlock::Text { text });
                    }
                }
                for call in tool_calls.unwrap_or_default() {
                    let input = tool_arguments(&call)?;
                    if !called_tools.contains(&call.function.name) {
                        called_tools.push(call.function.name.clone());
                    }
                    blocks.push(AnthropicBlock::ToolUse {
                        id: call.id,
                        name: call.function.name,
                        input,
                    });
                }
                push(&mut messages, AnthropicRole::Assistant, blocks);
            }
            OpenAiMessage::Tool {
                tool_call_id,
                content,
            } => {
                let content = text_of(content, "tool")?;
                push(
                    &mut messages,
                    AnthropicRole::User,
                    vec![AnthropicBlock::ToolResult {
                        tool_use_id: tool_call_id,
                        content,
                    }],
                );
            }
        }
    }
    if messages.is_empty() {
        return Err(invalid(
            "`messages` must contain a user or assistant message",
        ));
    }

    let mut tools: Vec<AnthropicTool> = req
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(|t| AnthropicTool {
            name: t.function.name,
            description: t.function.description,
            input_schema: t
                .function
                .parameters
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        })
        .collect();
    // Anthropic requires a definition for every tool that appears in the conversation, even
    // when the client sends none this turn: define the ones called, with an open schema.
    for name in called_tools {
        if !tools.iter().any(|t| t.name == name) {
            tools.push(AnthropicTool {
                name,
                description: None,
                input_schema: json!({"type": "object"}),
            });
        }
    }

    let no_parallel = req.parallel_tool_calls == Some(false);
    let tool_choice = match req.tool_choice {
        Some(OpenAiToolChoice::Mode(mode)) => Some(match mode.as_str() {
            "none" => AnthropicToolChoice::None,
            "required" => AnthropicToolChoice::Any {
                disable_parallel_tool_use: no_parallel,
            },
            "auto" => AnthropicToolChoice::Auto {
                disable_parallel_tool_use: no_parallel,
            },
            other => return Err(invalid(format!("unknown tool_choice {other:?}"))),
        }),
        Some(OpenAiToolChoice::Named { function }) => Some(AnthropicToolChoice::Tool {
            name: function.name,
            disable_parallel_tool_use: no_parallel,
        }),
        None if no_parallel && !tools.is_empty() => Some(AnthropicToolChoice::Auto {
            disable_parallel_tool_use: true,
        }),
        None => None,
    };

    let asked_max = req.max_completion_tokens.or(req.max_tokens);
    let budget = match req.reasoning_effort.as_deref() {
        Some(effort) => thinking_budget(effort)?,
        None => None,
    };
    // Thinking counts against max_tokens (as reasoning counts against OpenAI's
    // max_completion_tokens) and its budget must stay below it, and at least 1024.
    let (max_tokens, thinking) = match (budget, asked_max) {
        (None, max) => (max.unwrap_or(DEFAULT_MAX_TOKENS), None),
        (Some(budget), None) => (budget + DEFAULT_MAX_TOKENS, Some(budget)),
        (Some(budget), Some(max)) if max > MIN_THINKING_BUDGET => (max, Some(budget.min(max - 1))),
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "reasoning_effort needs max_tokens above {MIN_THINKING_BUDGET} on this model"
            )))
        }
    };

    Ok(AnthropicRequest {
        model: model.to_owned(),
        anthropic_version: None,
        max_tokens,
        messages,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        // OpenAI allows 0..2, Anthropic 0..1; with thinking on, Anthropic takes neither.
        temperature: req
            .temperature
            .filter(|_| thinking.is_none())
            .map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p.filter(|_| thinking.is_none()),
        thinking: thinking.map(|budget_tokens| AnthropicThinking::Enabled { budget_tokens }),
        stop_sequences: req.stop.map(OpenAiStop::into_vec).unwrap_or_default(),
        stream: req.stream.unwrap_or(false),
        tools,
        tool_choice,
        metadata: req.user.map(|user_id| AnthropicMetadata { user_id }),
    })
}

/// Anthropic stop reasons as OpenAI finish reasons.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop", // end_turn, stop_sequence, pause_turn
    }
}

/// Usage with OpenAI semantics: Anthropic's `input_tokens` excludes cache reads and writes,
/// OpenAI's `prompt_tokens` includes them.
pub(crate) fn usage_from(u: AnthropicUsage) -> Usage {
    let cached = u.cache_read_input_tokens.unwrap_or(0);
    let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens + cached + cache_write;
    Usage {
        prompt,
        completion: u.output_tokens,
        total: prompt + u.output_tokens,
        cached,
        cache_write,
        reasoning: 0,
    }
}

/// Appends the OpenAI `chat.completion` for an Anthropic message; returns its usage.
pub fn response(resp: AnthropicResponse, created: u64, out: &mut Vec<u8>) -> Usage {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in &resp.content {
        match block {
            AnthropicResponseBlock::Text { text: t } => text.push_str(t),
            AnthropicResponseBlock::Thinking { thinking } => reasoning.push_str(thinking),
            AnthropicResponseBlock::ToolUse { id, name, input } => {
                calls.push(OpenAiToolCallOut::call(
                    None,
                    id.as_str(),
                    name,
                    input.to_string(),
                ));
            }
            AnthropicResponseBlock::Other => {}
        }
    }
    let usage = usage_from(resp.usage);
    let head = OpenAiStreamHead {
        id: resp.id,
        model: resp.model,
        created,
        ..Default::default()
    };
    let finish = finish_reason(resp.stop_reason.as_deref());
    head.completion(
        out,
        OpenAiAssistantOut::new(&text, &reasoning, calls),
        finish,
        usage,
    );
    usage
}

/// Appends an Anthropic error body as the OpenAI error a client expects; returns its status.
pub fn error(status: u32, body: &[u8], out: &mut Vec<u8>) -> u32 {
    match serde_json::from_slice::<AnthropicErrorBody>(body) {
        Ok(b) => openai_error(status, &b.error.kind, &b.error.message, out),
        Err(_) => openai_error(
            status,
            "api_error",
            "The provider answered with an unreadable error.",
            out,
        ),
    }
}

/// Appends one Anthropic error as OpenAI's body (type and code); returns its status.
fn openai_error(status: u32, kind: &str, message: &str, out: &mut Vec<u8>) -> u32 {
    let (status, openai_type, code) = openai_error_kind(status, kind, message);
    OpenAiErrorOut::new(message, openai_type, code).write(out);
    status
}

/// One Anthropic error type as OpenAI's status, type and code.
fn openai_error_kind(
    status: u32,
    kind: &str,
    message: &str,
) -> (u32, &'static str, Option<&'static str>) {
    let (status, openai_type, code) = match kind {
        "invalid_request_error" => (status, "invalid_request_error", None),
        "authentication_error" => (status, "authentication_error", Some("invalid_api_key")),
        "permission_error" => (status, "permission_error", None),
        "not_found_error" => (status, "not_found_error", None),
        "request_too_large" => (status, "invalid_request_error", Some("request_too_large")),
        "rate_limit_error" => (status, "rate_limit_error", Some("rate_limit_exceeded")),
        // Anthropic's 529 is not an HTTP status clients retry on; 503 is.
        "overloaded_error" => (503, "server_error", Some("overloaded")),
        _ => (status, "server_error", None),
    };
    let code = match code {
        None if message.contains("prompt is too long") => Some("context_length_exceeded"),
        code => code,
    };
    (status, openai_type, code)
}

impl OpenAiAnthropic {
    /// OpenAI events for one Anthropic stream event, appended to `out`.
    fn on_event(&mut self, event: AnthropicStreamEvent, out: &mut Vec<u8>, p: &mut Progress) {
        let h = &mut self.head;
        match event {
            AnthropicStreamEvent::MessageStart { message } => {
                h.id = message.id;
                h.model = message.model;
                self.raw_usage = message.usage;
                p.usage = Some(usage_from(message.usage));
                h.chunk(out, OpenAiDeltaOut::start(), None);
            }
            AnthropicStreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                AnthropicStreamBlock::Text { text } if !text.is_empty() => {
                    h.chunk(out, OpenAiDeltaOut::content(&text), None);
                }
                AnthropicStreamBlock::ToolUse { id, name } => {
                    let i = self.tool_index.len();
                    self.tool_index.push((index, i));
                    let calls = [OpenAiToolCallOut::call(Some(i), id.as_str(), &name, "")];
                    h.chunk(out, OpenAiDeltaOut::tool_calls(&calls), None);
                }
                _ => {}
            },
            AnthropicStreamEvent::ContentBlockDelta { index, delta } => match delta {
                AnthropicDelta::TextDelta { text } => {
                    h.chunk(out, OpenAiDeltaOut::content(&text), None);
                }
                AnthropicDelta::InputJsonDelta { partial_json } => {
                    if let Some(&(_, i)) = self.tool_index.iter().find(|(b, _)| *b == index) {
                        let calls = [OpenAiToolCallOut::arguments(i, &partial_json)];
                        h.chunk(out, OpenAiDeltaOut::tool_calls(&calls), None);
                    }
                }
                AnthropicDelta::ThinkingDelta { thinking } => {
                    h.chunk(out, OpenAiDeltaOut::reasoning(&thinking), None);
                }
                AnthropicDelta::Other => {}
            },
            AnthropicStreamEvent::MessageDelta { delta, usage } => {
                let reason = finish_reason(delta.stop_reason.as_deref());
                if let Some(d) = usage {
                    p.usage = Some(usage_from(self.raw_usage.update(d)));
                }
                h.chunk(out, OpenAiDeltaOut::default(), Some(reason));
            }
            AnthropicStreamEvent::MessageStop => {
                h.end(out, p.usage);
                p.done = true;
            }
            AnthropicStreamEvent::Error { error } => {
                let (_, kind, code) = openai_error_kind(500, &error.kind, &error.message);
                write_data(out, &OpenAiErrorOut::new(&error.message, kind, code));
                p.error_sent = true;
            }
            AnthropicStreamEvent::ContentBlockStop { .. }
            | AnthropicStreamEvent::Ping
            | AnthropicStreamEvent::Unknown => {}
        }
    }
}

impl Converter for OpenAiAnthropic {
    const CLIENT: ClientApi = ClientApi::OpenAi;

    fn request(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let req: OpenAiChatRequest = parse_request(body)?;
        self.stream = req.stream.unwrap_or(false);
        self.head.include_usage = req.wants_usage();
        upstream_model.clone_into(&mut self.upstream_model);
        let mut anthropic = request(req, upstream_model)?;
        if self.vertex {
            anthropic.model.clear();
            anthropic.anthropic_version = Some(VERTEX_ANTHROPIC_VERSION);
        }
        serde_json::to_vec(&anthropic).map_err(|e| invalid(e.to_string()))
    }

    fn status(&self, status: u32) -> Option<u32> {
        // Anthropic's 529 "overloaded" is not a status OpenAI clients retry on; 503 is.
        (status == 529).then_some(503)
    }

    type Answer<'a> = AnthropicResponse;

    fn response(&mut self, answer: AnthropicResponse, out: &mut Vec<u8>) -> Option<Usage> {
        Some(response(answer, self.head.created, out))
    }

    fn error(&mut self, status: u32, body: &[u8], out: &mut Vec<u8>) -> ErrorHints {
        error(status, body, out);
        ErrorHints::default()
    }

    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>, p: &mut Progress) -> Pass {
        // Unknown event types are skipped, never fatal.
        if let Some(ev) = event.parse::<AnthropicStreamEvent>() {
            self.on_event(ev, out, p);
        }
        Pass::Replaced
    }

    fn upstream_path(&self, out: &mut String) {
        if self.vertex {
            vertex_path(out, &self.upstream_model, self.stream);
        } else {
            out.push_str("/v1/messages");
        }
    }
}

#[cfg(test)]
mod tests;
