//! List prices of well-known models, for models an administrator has priced at nothing (the
//! control plane fills them in before the filter sees them).

pub use switchyard_contract::pricing::Price;

/// USD per million tokens as micro-USD (for tables written in dollars).
const fn usd(dollars_times_1000: u64) -> u64 {
    dollars_times_1000 * 1_000
}

/// List prices of well-known models (USD per Mtok, as published by each vendor for its
/// standard tier), used when an administrator has set none: (model name, input, output, cache
/// read, cache write). Figures are thousandths of a dollar to stay integers.
/// (model name, input, output, cache read, cache write).
type ListPrice = (&'static str, u64, u64, Option<u64>, Option<u64>);

const DEFAULTS: &[ListPrice] = &[
    // OpenAI
    ("gpt-4o", 2_500, 10_000, Some(1_250), None),
    ("gpt-4o-mini", 150, 600, Some(75), None),
    ("gpt-4.1", 2_000, 8_000, Some(500), None),
    ("gpt-4.1-mini", 400, 1_600, Some(100), None),
    ("gpt-4.1-nano", 100, 400, Some(25), None),
    ("gpt-5", 1_250, 10_000, Some(125), None),
    ("gpt-5-mini", 250, 2_000, Some(25), None),
    ("gpt-5-nano", 50, 400, Some(5), None),
    ("o1", 15_000, 60_000, Some(7_500), None),
    ("o3", 2_000, 8_000, Some(500), None),
    ("o3-mini", 1_100, 4_400, Some(550), None),
    ("o4-mini", 1_100, 4_400, Some(275), None),
    ("text-embedding-3-small", 20, 0, None, None),
    ("text-embedding-3-large", 130, 0, None, None),
    // Anthropic (cache writes: 5-minute cache, 1.25x input)
    ("claude-opus-4-1", 15_000, 75_000, Some(1_500), Some(18_750)),
    ("claude-opus-4", 15_000, 75_000, Some(1_500), Some(18_750)),
    ("claude-sonnet-4-5", 3_000, 15_000, Some(300), Some(3_750)),
    ("claude-sonnet-4", 3_000, 15_000, Some(300), Some(3_750)),
    ("claude-3-7-sonnet", 3_000, 15_000, Some(300), Some(3_750)),
    ("claude-haiku-4-5", 1_000, 5_000, Some(100), Some(1_250)),
    ("claude-3-5-haiku", 800, 4_000, Some(80), Some(1_000)),
    // Google (prompts up to 200k tokens)
    ("gemini-2.5-pro", 1_250, 10_000, Some(125), None),
    ("gemini-2.5-flash", 300, 2_500, Some(30), None),
    ("gemini-2.5-flash-lite", 100, 400, Some(10), None),
    ("gemini-2.0-flash", 100, 400, Some(25), None),
    // Mistral, DeepSeek
    ("mistral-large-latest", 2_000, 6_000, None, None),
    ("mistral-small-latest", 100, 300, None, None),
    ("deepseek-chat", 270, 1_100, Some(70), None),
    ("deepseek-reasoner", 550, 2_190, Some(140), None),
];

/// The list price of a well-known model, found by name: the vendor prefix of Bedrock and
/// Vertex ids (`us.anthropic.`, `publishers/google/models/`) is ignored, and a dated or
/// versioned name (`claude-sonnet-4-5-20250929`, `...@20250929`, `...-v1:0`) takes the price of
/// the longest known name it starts with.
pub fn default_price(model: &str) -> Option<Price> {
    let name = model.rsplit('/').next().unwrap_or(model);
    // Bedrock: `[region.]vendor.model-version:n`.
    let name = strip_vendor(name);
    DEFAULTS
        .iter()
        .filter(|(known, ..)| {
            name.strip_prefix(known)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '@', ':']))
        })
        .max_by_key(|(known, ..)| known.len())
        .map(|&(_, input, output, cache_read, cache_write)| Price {
            input: usd(input),
            output: usd(output),
            cache_read: cache_read.map(usd),
            cache_write: cache_write.map(usd),
            reasoning: None,
        })
}

/// `us.anthropic.claude-...` -> `claude-...`: drops leading dot-separated segments that are
/// all letters (region and vendor), keeping dots that belong to a version (`gpt-4.1`).
fn strip_vendor(name: &str) -> &str {
    let mut rest = name;
    while let Some((head, tail)) = rest.split_once('.') {
        if !head.is_empty() && head.bytes().all(|b| b.is_ascii_alphabetic()) && !tail.is_empty() {
            rest = tail;
        } else {
            break;
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_models_by_any_of_their_names() {
        let sonnet = default_price("claude-sonnet-4-5").unwrap();
        assert_eq!((sonnet.input, sonnet.output), (3_000_000, 15_000_000));
        assert_eq!(sonnet.cache_read, Some(300_000));
        for id in [
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5@20250929",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "publishers/anthropic/models/claude-sonnet-4-5",
        ] {
            assert_eq!(default_price(id), Some(sonnet), "{id}");
        }
        assert_eq!(default_price("gpt-4o-mini").unwrap().input, 150_000);
        assert_eq!(default_price("gpt-4o-2024-08-06").unwrap().input, 2_500_000);
        assert_eq!(default_price("gpt-4.1-mini").unwrap().input, 400_000);
        assert_eq!(default_price("o3-mini").unwrap().input, 1_100_000);
        assert_eq!(default_price("gpt-4oo"), None);
        assert_eq!(default_price("my-local-llama"), None);
        assert_eq!(default_price(""), None);
    }
}
