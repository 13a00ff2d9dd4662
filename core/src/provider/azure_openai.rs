//! Azure OpenAI: OpenAI's API below `/openai/deployments/{model}` with an `api-version` query
//! (both from the configuration's path style and query) and an `api-key` header.

use super::openai::OpenAiStyle;

pub const AZURE_OPENAI: OpenAiStyle = OpenAiStyle {
    max_completion_tokens: true,
};
