//! OpenAI-compatible providers (Groq, Mistral, DeepSeek, local servers...): OpenAI's API with
//! `max_tokens`, and the preset's quirks (fields dropped or renamed) from the configuration.

use super::openai::OpenAiStyle;

pub const OPENAI_COMPATIBLE: OpenAiStyle = OpenAiStyle {
    max_completion_tokens: false,
};
