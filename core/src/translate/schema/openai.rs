//! OpenAI Chat Completions wire types: what a client sends, what an OpenAI-style provider
//! answers, and what the gateway answers an OpenAI client (typed and borrowed, written once).
//! <https://platform.openai.com/docs/api-reference/chat/create>

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::needle::Needle;

use crate::sse::write_data;
use crate::usage::Usage;

#[derive(Debug, Deserialize)]
pub struct OpenAiChatRequest {
    pub model: String,
    pub messages: Vec<OpenAiMessage>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Option<OpenAiStop>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<OpenAiStreamOptions>,
    #[serde(default)]
    pub tools: Option<Vec<OpenAiTool>>,
    #[serde(default)]
    pub tool_choice: Option<OpenAiToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub response_format: Option<OpenAiResponseFormat>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
}

impl OpenAiChatRequest {
    /// Whether the client asked for the usage chunk at the end of a stream.
    pub fn wants_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpenAiResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: OpenAiJsonSchema },
}

#[derive(Debug, Deserialize)]
pub struct OpenAiJsonSchema {
    #[serde(default)]
    pub schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiStreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OpenAiStop {
    One(String),
    Many(Vec<String>),
}

impl OpenAiStop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OpenAiStop::One(s) => vec![s],
            OpenAiStop::Many(v) => v,
        }
    }
}

/// A message of the conversation, by its `role`. Read field by field (see the `Deserialize`
/// below), not as serde's internally tagged enum: that buffers every message, each of its strings
/// copied, before reading it again (a third of translating a request to another provider).
#[derive(Debug)]
pub enum OpenAiMessage {
    System {
        content: OpenAiContent,
    },
    Developer {
        content: OpenAiContent,
    },
    User {
        content: OpenAiContent,
    },
    Assistant {
        content: Option<OpenAiContent>,
        tool_calls: Option<Vec<OpenAiToolCall>>,
    },
    Tool {
        tool_call_id: String,
        content: OpenAiContent,
    },
}

/// Message content: a string, or an array of parts.
#[derive(Debug)]
pub enum OpenAiContent {
    Text(JsonText),
    Parts(Vec<OpenAiContentPart>),
}

impl OpenAiContent {
    /// The content of a message's `content` field (`None`: null).
    fn of(raw: &RawValue) -> Result<Option<OpenAiContent>, serde_json::Error> {
        match raw.get().as_bytes().first() {
            Some(b'"') => Ok(Some(OpenAiContent::Text(JsonText::of(raw)?))),
            Some(b'n') => Ok(None),
            // Anything but an array of parts is refused here.
            _ => serde_json::from_str(raw.get()).map(|parts| Some(OpenAiContent::Parts(parts))),
        }
    }
}

/// A message's text as the client wrote it: a JSON string, quotes and escapes included. A
/// translator that passes it on whole writes it into the provider's body as it came
/// (serde_json's escaping of every byte was the most of writing a translated request, and it
/// grows with the prompt); one that needs the text reads it with [`JsonText::into_text`].
#[derive(Debug)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// A string token read by serde_json (its quotes and escapes are well formed). One that
    /// holds a `\u` escape is read once more, so that only a string serde_json itself accepts
    /// (no lone surrogate) goes on.
    fn of(raw: &RawValue) -> Result<JsonText, serde_json::Error> {
        static UNICODE_ESCAPE: Needle = Needle::new(b"\\u");
        if UNICODE_ESCAPE.find(raw.get().as_bytes()).is_some() {
            serde_json::from_str::<String>(raw.get())?;
        }
        Ok(JsonText(raw.to_owned()))
    }

    /// The text itself.
    pub fn into_text(self) -> String {
        let raw = self.0.get();
        match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(plain) if !plain.contains('\\') => plain.to_owned(),
            _ => serde_json::from_str(raw).unwrap_or_default(),
        }
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for OpenAiMessage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Role {
            System,
            Developer,
            User,
            Assistant,
            Tool,
        }
        /// Every role's fields; those a role does not have are read as raw JSON and never
        /// looked at (as the tagged enum ignored them), whatever they hold.
        #[derive(Deserialize)]
        struct Fields<'a> {
            role: Role,
            #[serde(default, borrow)]
            content: Option<&'a RawValue>,
            #[serde(default, borrow)]
            tool_calls: Option<&'a RawValue>,
            #[serde(default, borrow)]
            tool_call_id: Option<&'a RawValue>,
        }
        let f = Fields::deserialize(d)?;
        let body = match f.content {
            Some(raw) => OpenAiContent::of(raw).map_err(D::Error::custom)?,
            None => None,
        };
        let required =
            |body: Option<OpenAiContent>| body.ok_or_else(|| D::Error::missing_field("content"));
        Ok(match f.role {
            Role::System => OpenAiMessage::System {
                content: required(body)?,
            },
            Role::Developer => OpenAiMessage::Developer {
                content: required(body)?,
            },
            Role::User => OpenAiMessage::User {
                content: required(body)?,
            },
            Role::Assistant => OpenAiMessage::Assistant {
                content: body,
                tool_calls: match f.tool_calls {
                    Some(calls) => serde_json::from_str(calls.get()).map_err(D::Error::custom)?,
                    None => None,
                },
            },
            Role::Tool => OpenAiMessage::Tool {
                tool_call_id: match f.tool_call_id {
                    Some(id) => serde_json::from_str(id.get()).map_err(D::Error::custom)?,
                    None => return Err(D::Error::missing_field("tool_call_id")),
                },
                content: required(body)?,
            },
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpenAiContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: OpenAiImageUrl,
    },
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiImageUrl {
    pub url: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct OpenAiToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: OpenAiFunctionCall,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Deserialize, Serialize, Clone)]
pub struct OpenAiFunctionCall {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiTool {
    pub function: OpenAiFunction,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiFunction {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OpenAiToolChoice {
    /// "none", "auto" or "required".
    Mode(String),
    Named {
        function: OpenAiNamedFunction,
    },
}

#[derive(Debug, Deserialize)]
pub struct OpenAiNamedFunction {
    pub name: String,
}

// ---- The provider side: what an OpenAI-style provider answers. ---------------------------------

#[derive(Debug, Deserialize)]
pub struct OpenAiCompletion {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<OpenAiChoice>,
    #[serde(default)]
    pub usage: Option<crate::usage::OpenAiUsage>,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiChoice {
    pub message: OpenAiResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiResponseMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<OpenAiToolCall>>,
}

/// One `chat.completion.chunk`, or an error event inside a stream.
#[derive(Debug, Deserialize)]
pub struct OpenAiChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<OpenAiChunkChoice>,
    #[serde(default)]
    pub usage: Option<crate::usage::OpenAiUsage>,
    #[serde(default)]
    pub error: Option<OpenAiError>,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiChunkChoice {
    #[serde(default)]
    pub delta: OpenAiDelta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct OpenAiDelta {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<OpenAiToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiToolCallDelta {
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<OpenAiFunctionDelta>,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiFunctionDelta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// `{"error":{"message","type","code"}}`, the body of every OpenAI error.
#[derive(Debug, Deserialize)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

#[derive(Debug, Deserialize)]
pub struct OpenAiError {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<Value>,
}

// ---- What the gateway answers an OpenAI client. -------------------------------------------------

/// Appended when the provider's stream ends before it is complete, so no client takes it as whole.
pub const OPENAI_INCOMPLETE_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The provider's stream ended before it was complete.\",\"type\":\"api_error\",\"param\":null,\"code\":\"stream_incomplete\"}}\n\n";

/// The last event of a complete stream.
pub const OPENAI_DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// OpenAI's `usage` object.
#[derive(Debug, Serialize)]
pub struct OpenAiUsageOut {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: OpenAiCachedOut,
    pub completion_tokens_details: OpenAiReasoningOut,
}

#[derive(Debug, Serialize)]
pub struct OpenAiCachedOut {
    pub cached_tokens: u64,
}

#[derive(Debug, Serialize)]
pub struct OpenAiReasoningOut {
    pub reasoning_tokens: u64,
}

impl From<Usage> for OpenAiUsageOut {
    fn from(u: Usage) -> Self {
        OpenAiUsageOut {
            prompt_tokens: u.prompt,
            completion_tokens: u.completion,
            total_tokens: u.total,
            prompt_tokens_details: OpenAiCachedOut {
                cached_tokens: u.cached,
            },
            completion_tokens_details: OpenAiReasoningOut {
                reasoning_tokens: u.reasoning,
            },
        }
    }
}

/// OpenAI's error body: `{"error":{"message","type","param":null,"code"}}`.
#[derive(Debug, Serialize)]
pub struct OpenAiErrorOut<'a> {
    pub error: OpenAiErrorDetailOut<'a>,
}

#[derive(Debug, Serialize)]
pub struct OpenAiErrorDetailOut<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: (),
    pub code: Option<&'a str>,
}

impl<'a> OpenAiErrorOut<'a> {
    pub fn new(message: &'a str, kind: &'a str, code: Option<&'a str>) -> Self {
        OpenAiErrorOut {
            error: OpenAiErrorDetailOut {
                message,
                kind,
                param: (),
                code,
            },
        }
    }

    /// Appends the body as JSON.
    pub fn write(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
    }
}

/// One tool call in an answer (`index` only in stream chunks; `id`, `type` and `name` only where
/// the call starts).
#[derive(Debug, Serialize)]
pub struct OpenAiToolCallOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: OpenAiFunctionOut<'a>,
}

#[derive(Debug, Serialize)]
pub struct OpenAiFunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// JSON text, as OpenAI sends it.
    pub arguments: Cow<'a, str>,
}

impl<'a> OpenAiToolCallOut<'a> {
    /// A whole call (or the start of one in a stream, with `index`).
    pub fn call(
        index: Option<usize>,
        id: impl Into<Cow<'a, str>>,
        name: &'a str,
        arguments: impl Into<Cow<'a, str>>,
    ) -> Self {
        OpenAiToolCallOut {
            index,
            id: Some(id.into()),
            kind: Some("function"),
            function: OpenAiFunctionOut {
                name: Some(name),
                arguments: arguments.into(),
            },
        }
    }

    /// More of a streamed call's arguments.
    pub fn arguments(index: usize, arguments: &'a str) -> Self {
        OpenAiToolCallOut {
            index: Some(index),
            id: None,
            kind: None,
            function: OpenAiFunctionOut {
                name: None,
                arguments: Cow::Borrowed(arguments),
            },
        }
    }
}

/// The `delta` of a stream chunk: only the fields set are written.
#[derive(Debug, Default, Serialize)]
pub struct OpenAiDeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub tool_calls: &'a [OpenAiToolCallOut<'a>],
}

impl<'a> OpenAiDeltaOut<'a> {
    /// The first delta of a stream.
    pub fn start() -> Self {
        OpenAiDeltaOut {
            role: Some("assistant"),
            content: Some(""),
            ..Default::default()
        }
    }

    pub fn content(text: &'a str) -> Self {
        OpenAiDeltaOut {
            content: Some(text),
            ..Default::default()
        }
    }

    pub fn reasoning(text: &'a str) -> Self {
        OpenAiDeltaOut {
            reasoning_content: Some(text),
            ..Default::default()
        }
    }

    pub fn tool_calls(calls: &'a [OpenAiToolCallOut<'a>]) -> Self {
        OpenAiDeltaOut {
            tool_calls: calls,
            ..Default::default()
        }
    }
}

/// One `chat.completion.chunk` with one choice.
#[derive(Debug, Serialize)]
struct OpenAiChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OpenAiChunkChoiceOut<'a>; 1],
}

#[derive(Debug, Serialize)]
struct OpenAiChunkChoiceOut<'a> {
    index: u32,
    delta: OpenAiDeltaOut<'a>,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

/// The usage-only chunk sent last when the client asked for `include_usage`.
#[derive(Debug, Serialize)]
struct OpenAiUsageChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: OpenAiUsageOut,
}

/// The fields every chunk (and the whole answer) of one stream shares, and whether the stream
/// ends with the usage chunk.
#[derive(Debug, Default)]
pub struct OpenAiStreamHead {
    pub id: String,
    pub model: String,
    pub created: u64,
    /// The client asked for `stream_options.include_usage`.
    pub include_usage: bool,
}

impl OpenAiStreamHead {
    /// Appends one chunk event.
    pub fn chunk(&self, out: &mut Vec<u8>, delta: OpenAiDeltaOut<'_>, finish_reason: Option<&str>) {
        write_data(
            out,
            &OpenAiChunkOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: [OpenAiChunkChoiceOut {
                    index: 0,
                    delta,
                    logprobs: (),
                    finish_reason,
                }],
            },
        );
    }

    /// Appends the usage-only chunk.
    pub fn usage_chunk(&self, out: &mut Vec<u8>, usage: Usage) {
        write_data(
            out,
            &OpenAiUsageChunkOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: [],
                usage: usage.into(),
            },
        );
    }

    /// Ends a complete stream: the usage chunk (when the client asked for it and the usage is
    /// known), then `[DONE]`.
    pub fn end(&self, out: &mut Vec<u8>, usage: Option<Usage>) {
        if let Some(u) = usage.filter(|_| self.include_usage) {
            self.usage_chunk(out, u);
        }
        out.extend_from_slice(OPENAI_DONE_EVENT);
    }

    /// Appends the whole `chat.completion`.
    pub fn completion(
        &self,
        out: &mut Vec<u8>,
        message: OpenAiAssistantOut<'_>,
        finish_reason: &str,
        usage: Usage,
    ) {
        let body = OpenAiCompletionOut {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [OpenAiCompletionChoiceOut {
                index: 0,
                message,
                logprobs: (),
                finish_reason,
            }],
            usage: usage.into(),
        };
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &body);
    }
}

/// The assistant message of a `chat.completion`.
#[derive(Debug, Serialize)]
pub struct OpenAiAssistantOut<'a> {
    role: &'static str,
    /// Null when the answer is only tool calls.
    content: Option<&'a str>,
    refusal: (),
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OpenAiToolCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

impl<'a> OpenAiAssistantOut<'a> {
    pub fn new(text: &'a str, reasoning: &'a str, tool_calls: Vec<OpenAiToolCallOut<'a>>) -> Self {
        OpenAiAssistantOut {
            role: "assistant",
            content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
            refusal: (),
            tool_calls,
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        }
    }
}

#[derive(Debug, Serialize)]
struct OpenAiCompletionOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OpenAiCompletionChoiceOut<'a>; 1],
    usage: OpenAiUsageOut,
}

#[derive(Debug, Serialize)]
struct OpenAiCompletionChoiceOut<'a> {
    index: u32,
    message: OpenAiAssistantOut<'a>,
    logprobs: (),
    finish_reason: &'a str,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn messages(json: &str) -> Result<Vec<OpenAiMessage>, serde_json::Error> {
        serde_json::from_slice(json.as_bytes())
    }

    #[test]
    fn messages_read_by_role_with_the_fields_each_role_has() {
        let read = messages(
            r#"[
            {"role": "system", "content": "be brief"},
            {"content": "dev", "role": "developer"},
            {"role": "user", "content": [{"type": "text", "text": "a \"quoted\" word"}], "name": "x",
             "tool_calls": "not read for a user", "tool_call_id": 5},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
             "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "assistant", "content": "plain"},
            {"role": "tool", "tool_call_id": "c\u0031", "content": "42"}
        ]"#,
        )
        .unwrap();
        assert!(
            matches!(&read[0], OpenAiMessage::System { content: OpenAiContent::Text(t) } if t.0.get() == r#""be brief""#)
        );
        assert!(
            matches!(&read[1], OpenAiMessage::Developer { content: OpenAiContent::Text(t) } if t.0.get() == r#""dev""#)
        );
        let OpenAiMessage::User {
            content: OpenAiContent::Parts(parts),
        } = &read[2]
        else {
            panic!("{:?}", read[2]);
        };
        assert!(
            matches!(&parts[0], OpenAiContentPart::Text { text } if text == "a \"quoted\" word")
        );
        let OpenAiMessage::Assistant {
            content: None,
            tool_calls: Some(calls),
        } = &read[3]
        else {
            panic!("{:?}", read[3]);
        };
        assert_eq!(calls[0].id, "c1");
        assert!(matches!(
            &read[4],
            OpenAiMessage::Assistant {
                content: Some(OpenAiContent::Text(_)),
                tool_calls: None
            }
        ));
        assert!(
            matches!(&read[5], OpenAiMessage::Tool { tool_call_id, .. } if tool_call_id == "c1")
        );
    }

    #[test]
    fn malformed_messages_do_not_read() {
        for bad in [
            r#"[{"role": "user"}]"#,
            r#"[{"role": "user", "content": null}]"#,
            r#"[{"role": "user", "content": 5}]"#,
            r#"[{"role": "user", "content": {"text": "x"}}]"#,
            r#"[{"role": "robot", "content": "x"}]"#,
            r#"[{"content": "x"}]"#,
            r#"[{"role": "tool", "content": "x"}]"#,
            r#"[{"role": "tool", "tool_call_id": 7, "content": "x"}]"#,
            r#"[{"role": "assistant", "tool_calls": "x"}]"#,
            r#"[{"role": "user", "content": "x", "content": "y"}]"#,
            r#"["user"]"#,
            r#"[{"role": "user", "content": "lone \ud800 surrogate"}]"#,
            r#"[{"role": "user", "content": "bad \x escape"}]"#,
            r#"[{"role": "user", "content": "short \u12"}]"#,
            "[{\"role\": \"user\", \"content\": \"raw\ttab\"}]",
            "[{\"role\": \"user\", \"content\": \"raw\nnewline\"}]",
            r#"[{"role": "user", "content": "unterminated}]"#,
        ] {
            assert!(messages(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_clients_text_goes_on_as_written_and_reads_as_its_text() {
        let body = r#"[{"role": "user", "content": "line\none \"q\" \u00e9 \ud83d\ude00 \/"},
                       {"role": "user", "content": "plain"}]"#;
        let mut read = messages(body).unwrap().into_iter().map(|m| match m {
            OpenAiMessage::User {
                content: OpenAiContent::Text(t),
            } => t,
            other => panic!("{other:?}"),
        });
        let escaped = read.next().unwrap();
        // Written back verbatim, escapes and all.
        assert_eq!(
            serde_json::to_string(&escaped).unwrap(),
            r#""line\none \"q\" \u00e9 \ud83d\ude00 \/""#
        );
        assert_eq!(escaped.into_text(), "line\none \"q\" \u{e9} \u{1f600} /");
        let plain = read.next().unwrap();
        assert_eq!(serde_json::to_string(&plain).unwrap(), r#""plain""#);
        assert_eq!(plain.into_text(), "plain");
    }
}
