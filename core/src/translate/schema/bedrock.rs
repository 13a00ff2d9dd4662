//! Amazon Bedrock Converse and ConverseStream wire types (the provider side).
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>,
//! <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::openai::JsonText;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockRequest {
    pub messages: Vec<BedrockMessage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<BedrockText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<BedrockInferenceConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<BedrockToolConfig>,
}

#[derive(Debug, Serialize)]
pub struct BedrockText {
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct BedrockMessage {
    /// `user` or `assistant`.
    pub role: &'static str,
    pub content: Vec<BedrockBlock>,
}

/// A content block: an object with exactly one member.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BedrockBlock {
    Text(String),
    /// A text block with the client's text as it came (written as `text`).
    #[serde(rename = "text")]
    ClientText(JsonText),
    Image(BedrockImage),
    ToolUse(BedrockToolUse),
    ToolResult(BedrockToolResult),
}

#[derive(Debug, Serialize)]
pub struct BedrockImage {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: String,
    pub source: BedrockImageSource,
}

#[derive(Debug, Serialize)]
pub struct BedrockImageSource {
    /// Base64 in JSON.
    pub bytes: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockToolUse {
    pub tool_use_id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockToolResult {
    pub tool_use_id: String,
    pub content: Vec<BedrockToolResultContent>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BedrockToolResultContent {
    Text(String),
    Json(Value),
}

#[derive(Debug, Serialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BedrockInferenceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockToolConfig {
    pub tools: Vec<BedrockTool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockTool {
    pub tool_spec: BedrockToolSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockToolSpec {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: BedrockSchema,
}

#[derive(Debug, Serialize)]
pub struct BedrockSchema {
    pub json: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockResponse {
    pub output: BedrockOutput,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: BedrockUsage,
}

#[derive(Debug, Deserialize)]
pub struct BedrockOutput {
    pub message: BedrockOutMessage,
}

#[derive(Debug, Deserialize)]
pub struct BedrockOutMessage {
    #[serde(default)]
    pub content: Vec<BedrockOutBlock>,
}

/// An answer's content block; members Switchyard does not translate are ignored.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BedrockOutBlock {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tool_use: Option<BedrockToolUse>,
    #[serde(default)]
    pub reasoning_content: Option<BedrockReasoning>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockReasoning {
    #[serde(default)]
    pub reasoning_text: Option<BedrockReasoningText>,
}

#[derive(Debug, Deserialize)]
pub struct BedrockReasoningText {
    #[serde(default)]
    pub text: String,
}

/// Token counts; `inputTokens` leaves out cache reads and writes.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct BedrockUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
}

/// The payload of a ConverseStream event (which one it is comes from `:event-type`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BedrockStreamPayload {
    #[serde(default)]
    pub content_block_index: usize,
    #[serde(default)]
    pub start: Option<BedrockBlockStart>,
    #[serde(default)]
    pub delta: Option<BedrockDelta>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<BedrockUsage>,
    /// Exceptions carry a message.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockBlockStart {
    #[serde(default)]
    pub tool_use: Option<BedrockToolStart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockToolStart {
    pub tool_use_id: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockDelta {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tool_use: Option<BedrockToolDelta>,
    #[serde(default)]
    pub reasoning_content: Option<BedrockReasoningDelta>,
}

#[derive(Debug, Deserialize)]
pub struct BedrockToolDelta {
    #[serde(default)]
    pub input: String,
}

#[derive(Debug, Deserialize)]
pub struct BedrockReasoningDelta {
    #[serde(default)]
    pub text: Option<String>,
}

/// An error body: `{"message": "..."}` (the type is in the `x-amzn-errortype` header).
#[derive(Debug, Deserialize)]
pub struct BedrockErrorBody {
    #[serde(default, alias = "Message")]
    pub message: String,
}
