//! The tokens of one request, as the filter counts them, prices them and records them.

/// Tokens used by one request, with OpenAI semantics (`prompt` includes `cached`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Prompt tokens read from the provider's cache (part of `prompt`).
    pub cached: u64,
    /// Prompt tokens written to the provider's cache (part of `prompt`; Anthropic, Bedrock).
    pub cache_write: u64,
    /// Completion tokens spent reasoning (part of `completion`).
    pub reasoning: u64,
}
