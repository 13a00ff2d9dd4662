//! OpenAI Chat Completions (client) <-> Gemini `generateContent` (provider).
//!
//! Request and response: <https://ai.google.dev/api/generate-content>; function calling:
//! <https://ai.google.dev/gemini-api/docs/function-calling>; thought signatures:
//! <https://ai.google.dev/gemini-api/docs/thought-signatures>. Streams are
//! `streamGenerateContent?alt=sse`: every event is a whole `GenerateContentResponse` carrying
//! the new parts, and the stream simply ends (no sentinel) after the event with `finishReason`.

use serde_json::{json, Value};

use super::driver::{ClientApi, Converter, ErrorHints, Event, Framed, Pass, Progress};
use super::openai_request::*;
use super::schema::gemini::*;
use super::schema::openai::*;
use crate::error::FilterError;
use crate::request::push_path_segment;
use crate::sse::write_data;
use crate::usage::Usage;

/// Separates a tool call's id from the thought signature it carries (see [`tool_call_id`]).
const SIGNATURE_MARK: &str = "~sig~";

/// One request from an OpenAI client to a Gemini provider.
pub type OpenAiToGemini = Framed<OpenAiGemini>;

/// The conversion of one request from an OpenAI client to a Gemini provider.
#[derive(Debug, Default)]
pub struct OpenAiGemini {
    head: OpenAiStreamHead,
    upstream_model: String,
    stream: bool,
    /// Tool calls sent so far in this stream (their OpenAI indexes).
    tool_calls: usize,
    started: bool,
    finished: bool,
    /// Gemini on Vertex AI: the same bodies under Vertex's model paths.
    vertex: bool,
}

impl OpenAiToGemini {
    pub fn new(created: u64) -> Self {
        Framed::around(OpenAiGemini::new(created, false))
    }

    /// Gemini models on Vertex AI (below `/v1/projects/{p}/locations/{l}`).
    pub fn vertex(created: u64) -> Self {
        Framed::around(OpenAiGemini::new(created, true))
    }
}

impl OpenAiGemini {
    fn new(created: u64, vertex: bool) -> Self {
        OpenAiGemini {
            head: OpenAiStreamHead {
                created,
                ..Default::default()
            },
            vertex,
            ..Default::default()
        }
    }
}

fn image_part(url: String) -> Result<GeminiPart, FilterError> {
    Ok(match image(url)? {
        Image::Base64 { media_type, data } => GeminiPart {
            inline_data: Some(GeminiBlob {
                mime_type: media_type,
                data,
            }),
            ..Default::default()
        },
        Image::Url(url) => GeminiPart {
            file_data: Some(GeminiFileData {
                mime_type: mime_from_extension(&url)
                    .ok_or_else(|| {
                        invalid(
                            "image URLs for this model must end in .png, .jpg, .jpeg, .webp, \
                             .heic or .heif; send other images as data URLs",
                        )
                    })?
                    .to_owned(),
                file_uri: url,
            }),
            ..Default::default()
        },
    })
}

/// Gemini needs a MIME type with every file URI.
fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

fn text_part(text: String) -> GeminiPart {
    GeminiPart {
        text: Some(text),
        ..Default::default()
    }
}

fn user_parts(content: OpenAiContent) -> Result<Vec<GeminiPart>, FilterError> {
    match content {
        // The client's text goes on as it wrote it (see `JsonText`).
        OpenAiContent::Text(text) => Ok(vec![GeminiPart {
            client_text: Some(text),
            ..Default::default()
        }]),
        OpenAiContent::Parts(parts) => parts
            .into_iter()
            .map(|p| match p {
                OpenAiContentPart::Text { text } => Ok(text_part(text)),
                OpenAiContentPart::ImageUrl { image_url } => image_part(image_url.url),
                OpenAiContentPart::Unsupported => {
                    Err(invalid("unsupported content part for this model"))
                }
            })
            .collect(),
    }
}

/// Appends parts to the conversation, merging consecutive turns of the same role (tool results
/// arrive as several OpenAI messages but form one Gemini turn).
fn push(contents: &mut Vec<GeminiContent>, role: &str, parts: Vec<GeminiPart>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(GeminiContent {
            role: Some(role.to_owned()),
            parts,
        }),
    }
}

/// The OpenAI id of a Gemini function call. Gemini 3 models return a thought signature with
/// their calls and refuse a conversation that omits it; OpenAI clients keep only the call id,
/// so the signature rides in it and is taken out again when the call comes back.
fn tool_call_id(call_id: Option<&str>, response_id: &str, n: usize, sig: Option<&str>) -> String {
    let mut id = match call_id {
        Some(id) => id.to_owned(),
        None => format!("call_{response_id}_{n}"),
    };
    if let Some(sig) = sig {
        id.push_str(SIGNATURE_MARK);
        id.push_str(sig);
    }
    id
}

/// A tool result as the `response` object Gemini requires: JSON objects as they are, anything
/// else under `content`.
fn tool_response(text: String) -> Value {
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(v) => json!({ "content": v }),
        Err(_) => json!({ "content": text }),
    }
}

/// The Gemini request for an OpenAI chat request.
pub fn request(req: OpenAiChatRequest) -> Result<GeminiRequest, FilterError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(invalid("`n` other than 1 is not supported by this model"));
    }
    let mut system = Vec::new();
    let mut contents = Vec::new();
    // tool_call_id -> function name: Gemini answers a call by name.
    let mut calls: Vec<(String, String)> = Vec::new();
    for message in req.messages {
        match message {
            OpenAiMessage::System { content } | OpenAiMessage::Developer { content } => {
                system.push(text_part(text_of(content, "system")?));
            }
            OpenAiMessage::User { content } => push(&mut contents, "user", user_parts(content)?),
            OpenAiMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut parts = Vec::new();
                if let Some(content) = content {
                    let text = text_of(content, "assistant")?;
                    if !text.is_empty() {
                        parts.push(text_part(text));
                    }
                }
                for call in tool_calls.unwrap_or_default() {
                    let args = tool_arguments(&call)?;
                    let signature = call
                        .id
                        .split_once(SIGNATURE_MARK)
                        .map(|(_, sig)| sig.to_owned());
                    calls.push((call.id, call.function.name.clone()));
                    parts.push(GeminiPart {
                        function_call: Some(GeminiFunctionCall {
                            id: None,
                            name: call.function.name,
                            args,
                        }),
                        thought_signature: signature,
                        ..Default::default()
                    });
                }
                push(&mut contents, "model", parts);
            }
            OpenAiMessage::Tool {
                tool_call_id,
                content,
            } => {
                let name = calls
                    .iter()
                    .find(|(id, _)| *id == tool_call_id)
                    .map(|(_, name)| name.clone())
                    .ok_or_else(|| {
                        invalid(format!(
                            "tool message answers {tool_call_id:?}, which no assistant message called"
                        ))
                    })?;
                let part = GeminiPart {
                    function_response: Some(GeminiFunctionResponse {
                        name,
                        response: tool_response(text_of(content, "tool")?),
                    }),
                    ..Default::default()
                };
                push(&mut contents, "user", vec![part]);
            }
        }
    }
    if contents.is_empty() {
        return Err(invalid(
            "`messages` must contain a user or assistant message",
        ));
    }

    let declarations: Vec<GeminiFunctionDeclaration> = req
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(|t| GeminiFunctionDeclaration {
            name: t.function.name,
            description: t.function.description,
            parameters_json_schema: t.function.parameters,
        })
        .collect();
    let tool_config = match req.tool_choice {
        None => None,
        Some(choice) => {
            let (mode, names) = match choice {
                OpenAiToolChoice::Mode(mode) => match mode.as_str() {
                    "none" => ("NONE", Vec::new()),
                    "auto" => ("AUTO", Vec::new()),
                    "required" => ("ANY", Vec::new()),
                    other => return Err(invalid(format!("unknown tool_choice {other:?}"))),
                },
                OpenAiToolChoice::Named { function } => ("ANY", vec![function.name]),
            };
            Some(GeminiToolConfig {
                function_calling_config: GeminiFunctionCallingConfig {
                    mode,
                    allowed_function_names: names,
                },
            })
        }
    };

    let (response_mime_type, response_json_schema) = match req.response_format {
        None | Some(OpenAiResponseFormat::Text) => (None, None),
        Some(OpenAiResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(OpenAiResponseFormat::JsonSchema { json_schema }) => {
            (Some("application/json"), json_schema.schema)
        }
    };
    let thinking_config = match req.reasoning_effort.as_deref() {
        None => None,
        Some(effort) => Some(match thinking_budget(effort)? {
            Some(budget) => GeminiThinkingConfig {
                thinking_budget: budget,
                include_thoughts: true,
            },
            None => GeminiThinkingConfig {
                thinking_budget: 0,
                include_thoughts: false,
            },
        }),
    };

    Ok(GeminiRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(GeminiContent {
            role: None,
            parts: system,
        }),
        tools: if declarations.is_empty() {
            Vec::new()
        } else {
            vec![GeminiTool {
                function_declarations: declarations,
            }]
        },
        tool_config,
        generation_config: GeminiGenerationConfig {
            temperature: req.temperature,
            top_p: req.top_p,
            max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
            stop_sequences: req.stop.map(OpenAiStop::into_vec).unwrap_or_default(),
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            seed: req.seed,
            response_mime_type,
            response_json_schema,
            thinking_config,
        },
    })
}

/// Gemini finish reasons as OpenAI's; a turn that called functions ends in `tool_calls`.
pub fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => "content_filter",
        _ if called_tools => "tool_calls",
        _ => "stop",
    }
}

/// Usage with OpenAI semantics: Gemini's prompt count already includes the cached tokens, but its
/// candidates count leaves out the thoughts, which OpenAI counts as completion tokens.
fn usage_from(u: GeminiUsage) -> Usage {
    let prompt = u.prompt_token_count + u.tool_use_prompt_token_count;
    let completion = u.candidates_token_count + u.thoughts_token_count;
    Usage {
        prompt,
        completion,
        total: prompt + completion,
        cached: u.cached_content_token_count,
        cache_write: 0,
        reasoning: u.thoughts_token_count,
    }
}

/// One function call of a Gemini response, in OpenAI's terms.
struct Call {
    id: String,
    name: String,
    arguments: String,
}

/// What one Gemini response (or stream event) says, in OpenAI's terms.
#[derive(Default)]
struct Content {
    text: String,
    reasoning: String,
    calls: Vec<Call>,
    finish: Option<String>,
}

impl Content {
    /// The calls as OpenAI's; with their stream indexes from `first` when streamed.
    fn tool_calls(&self, first: Option<usize>) -> Vec<OpenAiToolCallOut<'_>> {
        self.calls
            .iter()
            .enumerate()
            .map(|(n, c)| {
                OpenAiToolCallOut::call(
                    first.map(|f| f + n),
                    c.id.as_str(),
                    &c.name,
                    c.arguments.as_str(),
                )
            })
            .collect()
    }
}

fn content(resp: &mut GeminiResponse, response_id: &str, first_call: usize) -> Content {
    let mut out = Content::default();
    if let Some(candidate) = resp.candidates.first_mut() {
        let parts = candidate
            .content
            .as_mut()
            .map(|c| std::mem::take(&mut c.parts))
            .unwrap_or_default();
        for part in parts {
            if let Some(call) = part.function_call {
                let n = first_call + out.calls.len();
                out.calls.push(Call {
                    id: tool_call_id(
                        call.id.as_deref(),
                        response_id,
                        n,
                        part.thought_signature.as_deref(),
                    ),
                    name: call.name,
                    arguments: call.args.to_string(),
                });
            } else if let Some(text) = part.text {
                if part.thought == Some(true) {
                    out.reasoning.push_str(&text);
                } else {
                    out.text.push_str(&text);
                }
            }
        }
        out.finish = candidate.finish_reason.take();
    } else if let Some(reason) = resp
        .prompt_feedback
        .as_mut()
        .and_then(|f| f.block_reason.take())
    {
        // The prompt itself was blocked: no candidate at all.
        out.finish = Some(if reason == "OTHER" {
            "SAFETY".into()
        } else {
            reason
        });
    }
    out
}

/// Appends the OpenAI `chat.completion` for a Gemini response; returns its usage.
pub fn response(mut resp: GeminiResponse, created: u64, model: &str, out: &mut Vec<u8>) -> Usage {
    let id = resp.response_id.take().unwrap_or_default();
    let c = content(&mut resp, &id, 0);
    let usage = resp.usage_metadata.map(usage_from).unwrap_or_default();
    let finish = finish_reason(c.finish.as_deref().unwrap_or(""), !c.calls.is_empty());
    let head = OpenAiStreamHead {
        id: format!("chatcmpl-{id}"),
        model: resp.model_version.unwrap_or_else(|| model.to_owned()),
        created,
        ..Default::default()
    };
    let message = OpenAiAssistantOut::new(&c.text, &c.reasoning, c.tool_calls(None));
    head.completion(out, message, finish, usage);
    usage
}

/// A Google error body (also as a one-element array, as streaming endpoints send it), appended
/// as the OpenAI error a client expects; returns whether it says the credential is bad.
pub fn error(status: u32, body: &[u8], out: &mut Vec<u8>) -> bool {
    let parsed = serde_json::from_slice::<GeminiErrorBody>(body)
        .ok()
        .or_else(|| {
            serde_json::from_slice::<Vec<GeminiErrorBody>>(body)
                .ok()
                .and_then(|v| v.into_iter().next())
        });
    match parsed {
        Some(b) => {
            let (kind, code) = openai_error(&b.error);
            OpenAiErrorOut::new(&b.error.message, kind, code).write(out);
            kind == "authentication_error"
        }
        None => {
            let message = format!("The provider answered {status} with an unreadable error.");
            OpenAiErrorOut::new(&message, "server_error", None).write(out);
            false
        }
    }
}

/// The delay Google's `RetryInfo` asks for, in whole seconds (`"37s"`, `"1.5s"` -> 2).
pub fn retry_delay(body: &[u8]) -> Option<u64> {
    let b: GeminiErrorBody = serde_json::from_slice(body).ok()?;
    b.error.details.iter().find_map(|d| {
        let delay = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
        let secs: f64 = delay.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| secs.ceil() as u64)
    })
}

/// One Google error as OpenAI's type and code.
/// <https://cloud.google.com/apis/design/errors#handling_errors>
fn openai_error(e: &GeminiError) -> (&'static str, Option<&'static str>) {
    let reason = |r: &str| {
        e.details
            .iter()
            .any(|d| d.get("reason").and_then(Value::as_str) == Some(r))
    };
    match e.status.as_str() {
        _ if reason("API_KEY_INVALID") => ("authentication_error", Some("invalid_api_key")),
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            let too_long = e.message.contains("exceeds the maximum number of tokens")
                || e.message.contains("input token count");
            (
                "invalid_request_error",
                too_long.then_some("context_length_exceeded"),
            )
        }
        "UNAUTHENTICATED" => ("authentication_error", Some("invalid_api_key")),
        "PERMISSION_DENIED" => ("permission_error", None),
        "NOT_FOUND" => ("not_found_error", Some("model_not_found")),
        "RESOURCE_EXHAUSTED" => ("rate_limit_error", Some("rate_limit_exceeded")),
        "UNAVAILABLE" => ("server_error", Some("overloaded")),
        "DEADLINE_EXCEEDED" => ("server_error", Some("timeout")),
        _ => ("server_error", None),
    }
}

impl OpenAiGemini {
    /// OpenAI events for one Gemini stream event, appended to `out`.
    fn on_event(&mut self, mut event: GeminiResponse, out: &mut Vec<u8>, p: &mut Progress) {
        if let Some(e) = &event.error {
            let (kind, code) = openai_error(e);
            write_data(out, &OpenAiErrorOut::new(&e.message, kind, code));
            p.error_sent = true;
            return;
        }
        if !self.started {
            self.started = true;
            let id = event.response_id.take().unwrap_or_default();
            self.head.id = format!("chatcmpl-{id}");
            self.head.model = event
                .model_version
                .take()
                .unwrap_or_else(|| self.upstream_model.clone());
            self.head.chunk(out, OpenAiDeltaOut::start(), None);
        }
        if let Some(u) = event.usage_metadata {
            // Each event carries the figures so far: they replace, never add.
            p.usage = Some(usage_from(u));
        }
        let response_id = self.head.id.trim_start_matches("chatcmpl-");
        let c = content(&mut event, response_id, self.tool_calls);
        let h = &self.head;
        if !c.reasoning.is_empty() {
            h.chunk(out, OpenAiDeltaOut::reasoning(&c.reasoning), None);
        }
        if !c.text.is_empty() {
            h.chunk(out, OpenAiDeltaOut::content(&c.text), None);
        }
        if !c.calls.is_empty() {
            let calls = c.tool_calls(Some(self.tool_calls));
            h.chunk(out, OpenAiDeltaOut::tool_calls(&calls), None);
            self.tool_calls += c.calls.len();
        }
        if let Some(reason) = &c.finish {
            let finish = finish_reason(reason, self.tool_calls > 0);
            h.chunk(out, OpenAiDeltaOut::default(), Some(finish));
            self.finished = true;
        }
    }
}

impl Converter for OpenAiGemini {
    const CLIENT: ClientApi = ClientApi::OpenAi;

    fn request(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let req: OpenAiChatRequest = parse_request(body)?;
        self.stream = req.stream.unwrap_or(false);
        self.head.include_usage = req.wants_usage();
        upstream_model.clone_into(&mut self.upstream_model);
        let gemini = request(req)?;
        serde_json::to_vec(&gemini).map_err(|e| invalid(e.to_string()))
    }

    type Answer<'a> = GeminiResponse;

    fn response(&mut self, answer: GeminiResponse, out: &mut Vec<u8>) -> Option<Usage> {
        Some(response(
            answer,
            self.head.created,
            &self.upstream_model,
            out,
        ))
    }

    fn error(&mut self, status: u32, body: &[u8], out: &mut Vec<u8>) -> ErrorHints {
        let bad_key = error(status, body, out);
        ErrorHints {
            // Google answers a bad API key with 400; clients expect 401.
            status: bad_key.then_some(401),
            retry_after: retry_delay(body),
        }
    }

    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>, p: &mut Progress) -> Pass {
        if let Some(ev) = event.parse::<GeminiResponse>() {
            self.on_event(ev, out, p);
        }
        Pass::Replaced
    }

    /// Gemini ends a stream by closing it: complete only after a finish reason.
    fn finish(&mut self, out: &mut Vec<u8>, p: &Progress) -> bool {
        if self.finished {
            self.head.end(out, p.usage);
        }
        self.finished
    }

    fn upstream_path(&self, out: &mut String) {
        out.push_str(if self.vertex {
            "/publishers/google/models/"
        } else {
            "/v1beta/models/"
        });
        push_path_segment(out, &self.upstream_model);
        out.push_str(if self.stream {
            ":streamGenerateContent?alt=sse"
        } else {
            ":generateContent"
        });
    }
}

#[cfg(test)]
mod tests;
