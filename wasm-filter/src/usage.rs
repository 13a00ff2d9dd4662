//! Pure usage extraction: one normalised token record from OpenAI-style responses.

use serde::Deserialize;

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

/// OpenAI's `usage` object (chat, completions and embeddings).
/// <https://platform.openai.com/docs/api-reference/chat/object#chat/object-usage>
#[derive(Debug, Deserialize)]
pub struct OpenAiUsage {
    /// `input_tokens` in image generation answers.
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    /// `output_tokens` in image generation answers.
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Usage {
        Usage {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
            total: u
                .total_tokens
                .unwrap_or(u.prompt_tokens + u.completion_tokens),
            cached: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write: 0,
            reasoning: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Usage from a whole OpenAI-style JSON response body.
///
/// Fast path: the top-level `usage` is the last `"usage"` key in the body (OpenAI writes it after
/// `choices`/`data`, and string contents cannot hold an unescaped quote), so only that object is
/// parsed; large bodies (embeddings) are not walked twice. Falls back to a full parse.
pub fn from_openai_body(body: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    if let Some(pos) = memchr::memmem::rfind(body, KEY) {
        let rest = &body[pos + KEY.len()..];
        let rest = trim_start(rest);
        if let Some(rest) = rest.strip_prefix(b":") {
            let mut de = serde_json::Deserializer::from_slice(trim_start(rest));
            if let Ok(Some(u)) = Option::<OpenAiUsage>::deserialize(&mut de) {
                return Some(u.into());
            }
        }
    }
    #[derive(Deserialize)]
    struct Body {
        usage: Option<OpenAiUsage>,
    }
    serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.usage)
        .map(Usage::from)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        .count();
    &b[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_usage_with_details() {
        let body = br#"{"id":"c","choices":[{"message":{"content":"say \"usage\": {}"}}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}}"#;
        assert_eq!(
            from_openai_body(body),
            Some(Usage {
                prompt: 19,
                completion: 10,
                total: 29,
                cached: 4,
                cache_write: 0,
                reasoning: 2
            })
        );
    }

    #[test]
    fn embeddings_usage_has_no_completion() {
        let body = br#"{"object":"list","data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            from_openai_body(body),
            Some(Usage {
                prompt: 8,
                total: 8,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn usage_not_last_is_found_by_the_full_parse() {
        let body = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"choices":[{"x":{"usage":null}}]}"#;
        assert_eq!(from_openai_body(body).map(|u| u.total), Some(3));
    }

    #[test]
    fn no_usage_is_none() {
        assert_eq!(from_openai_body(br#"{"choices":[]}"#), None);
        assert_eq!(from_openai_body(br#"{"usage":null}"#), None);
        assert_eq!(from_openai_body(b"not json"), None);
    }
}
