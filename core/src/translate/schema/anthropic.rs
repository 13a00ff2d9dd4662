//! Anthropic Messages wire types: what the gateway sends an Anthropic provider and reads of its
//! answers, what an Anthropic client sends, and what the gateway answers it (typed, borrowed).
//! <https://docs.anthropic.com/en/api/messages>

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::openai::JsonText;

#[derive(Debug, Serialize)]
pub struct AnthropicRequest {
    /// Empty on Vertex AI, where the model is in the path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Vertex AI only: `vertex-2023-10-16`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anthropic_version: Option<&'static str>,
    pub max_tokens: u64,
    pub messages: Vec<AnthropicMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<AnthropicTool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<AnthropicToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<AnthropicMetadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<AnthropicThinking>,
}

/// Extended thinking. <https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking>
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicThinking {
    Enabled { budget_tokens: u64 },
}

#[derive(Debug, Serialize)]
pub struct AnthropicMetadata {
    pub user_id: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AnthropicRole {
    User,
    Assistant,
}

#[derive(Debug, Serialize)]
pub struct AnthropicMessage {
    pub role: AnthropicRole,
    pub content: Vec<AnthropicBlock>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicBlock {
    Text {
        text: String,
    },
    /// A text block with the client's text as it came (written as a `text` block).
    #[serde(rename = "text")]
    ClientText {
        text: JsonText,
    },
    Image {
        source: AnthropicImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Serialize)]
pub struct AnthropicTool {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: Value,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicToolChoice {
    Auto {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    Any {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    Tool {
        name: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        disable_parallel_tool_use: bool,
    },
    None,
}

#[derive(Debug, Deserialize)]
pub struct AnthropicResponse {
    pub id: String,
    pub model: String,
    pub content: Vec<AnthropicResponseBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    pub usage: AnthropicUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicResponseBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Extended thinking: OpenAI clients get it as `reasoning_content`.
    Thinking {
        thinking: String,
    },
    /// Redacted thinking and block types added later: not part of an OpenAI answer.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Takes a `message_delta`'s figures: cumulative, they replace `message_start`'s, never add
    /// to them. Returns the usage so far.
    pub fn update(&mut self, d: AnthropicDeltaUsage) -> AnthropicUsage {
        self.output_tokens = d.output_tokens.unwrap_or(self.output_tokens);
        self.input_tokens = d.input_tokens.unwrap_or(self.input_tokens);
        self.cache_creation_input_tokens = d
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = d.cache_read_input_tokens.or(self.cache_read_input_tokens);
        *self
    }
}

/// One event of a Messages stream.
/// <https://docs.anthropic.com/en/docs/build-with-claude/streaming>
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicStreamEvent {
    MessageStart {
        message: AnthropicStreamMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: AnthropicStreamBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: AnthropicDelta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: AnthropicMessageDelta,
        #[serde(default)]
        usage: Option<AnthropicDeltaUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: AnthropicError,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
pub struct AnthropicStreamMessage {
    pub id: String,
    pub model: String,
    #[serde(default)]
    pub usage: AnthropicUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicStreamBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct AnthropicMessageDelta {
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// `message_delta` usage: cumulative output tokens (and, on some models, the input figures
/// again); never added to `message_start`'s.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub struct AnthropicDeltaUsage {
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct AnthropicError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// An error body: `{"type":"error","error":{"type","message"}}`.
#[derive(Debug, Deserialize)]
pub struct AnthropicErrorBody {
    pub error: AnthropicError,
}

// ---- The client side: a Messages request as Anthropic SDKs and coding agents send it. ----------

#[derive(Debug, Deserialize)]
pub struct AnthropicInRequest {
    pub model: String,
    pub max_tokens: u64,
    pub messages: Vec<AnthropicInMessage>,
    #[serde(default)]
    pub system: Option<AnthropicInContent>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub tools: Vec<AnthropicInTool>,
    #[serde(default)]
    pub tool_choice: Option<AnthropicInToolChoice>,
    #[serde(default)]
    pub metadata: Option<AnthropicInMetadata>,
}

#[derive(Debug, Deserialize)]
pub struct AnthropicInMetadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AnthropicInMessage {
    pub role: AnthropicInRole,
    pub content: AnthropicInContent,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum AnthropicInRole {
    User,
    Assistant,
}

/// Content: a string, or an array of blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AnthropicInContent {
    Text(String),
    Blocks(Vec<AnthropicInBlock>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicInBlock {
    Text {
        text: String,
    },
    Image {
        source: AnthropicInImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<AnthropicInContent>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    /// Thinking from an earlier Anthropic turn: meaningless to another provider.
    Thinking {},
    RedactedThinking {},
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicInImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
pub struct AnthropicInTool {
    /// Absent for client tools; server tools (web search, code execution) name their type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicInToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

// ---- What the gateway answers an Anthropic client. ----------------------------------------------

/// Sent when the provider's stream ends before it is complete.
pub const ANTHROPIC_INCOMPLETE_EVENT: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"The provider's stream ended before it was complete.\"}}\n\n";

/// Usage with Anthropic's semantics (the cache figures only in final answers).
#[derive(Debug, Serialize)]
pub struct AnthropicUsageOut {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

impl From<crate::usage::Usage> for AnthropicUsageOut {
    /// Anthropic's `input_tokens` leaves out the cache reads and writes OpenAI's count includes.
    fn from(u: crate::usage::Usage) -> Self {
        AnthropicUsageOut {
            input_tokens: u.prompt.saturating_sub(u.cached + u.cache_write),
            output_tokens: u.completion,
            cache_creation_input_tokens: Some(u.cache_write),
            cache_read_input_tokens: Some(u.cached),
        }
    }
}

/// A content block of an answer (whole, or as a stream starts it).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicBlockOut<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
}

/// A whole message, or the one `message_start` opens a stream with (no content yet).
#[derive(Debug, Serialize)]
pub struct AnthropicMessageOut<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: &'a str,
    pub content: Vec<AnthropicBlockOut<'a>>,
    pub stop_reason: Option<&'a str>,
    pub stop_sequence: (),
    pub usage: AnthropicUsageOut,
}

impl AnthropicMessageOut<'_> {
    /// Appends the message as a JSON body.
    pub fn write(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicDeltaOut<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Debug, Serialize)]
pub struct AnthropicStopOut<'a> {
    pub stop_reason: &'a str,
    pub stop_sequence: (),
}

/// One event of a Messages stream, as the gateway writes it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnthropicStreamEventOut<'a> {
    MessageStart {
        message: AnthropicMessageOut<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: AnthropicBlockOut<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: AnthropicDeltaOut<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: AnthropicStopOut<'a>,
        usage: AnthropicUsageOut,
    },
    MessageStop,
}

impl AnthropicStreamEventOut<'_> {
    /// Appends the event, named as its `type`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let name = match self {
            AnthropicStreamEventOut::MessageStart { .. } => "message_start",
            AnthropicStreamEventOut::ContentBlockStart { .. } => "content_block_start",
            AnthropicStreamEventOut::ContentBlockDelta { .. } => "content_block_delta",
            AnthropicStreamEventOut::ContentBlockStop { .. } => "content_block_stop",
            AnthropicStreamEventOut::MessageDelta { .. } => "message_delta",
            AnthropicStreamEventOut::MessageStop => "message_stop",
        };
        crate::sse::write_event(out, name, self);
    }
}

/// An error body: `{"type":"error","error":{"type","message"}}`.
#[derive(Debug, Serialize)]
pub struct AnthropicErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorDetailOut<'a>,
}

#[derive(Debug, Serialize)]
struct AnthropicErrorDetailOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

impl<'a> AnthropicErrorOut<'a> {
    pub fn new(kind: &'a str, message: &'a str) -> Self {
        AnthropicErrorOut {
            kind: "error",
            error: AnthropicErrorDetailOut { kind, message },
        }
    }

    /// Appends the error as a JSON body.
    pub fn write(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
    }

    /// Appends the error as a stream's `error` event.
    pub fn write_event(&self, out: &mut Vec<u8>) {
        crate::sse::write_event(out, "error", self);
    }
}
