//! Pure pricing: what a request's tokens cost, in integer micro-USD (no floating-point money).
//!
//! Prices are micro-USD per million tokens by kind. A request's exact cost is the sum of
//! `tokens x price` (in units of 1e-12 USD), rounded once to the nearest micro-USD; every
//! figure is an integer, so the same usage always costs the same, on any machine.

use serde::{Deserialize, Serialize};

use crate::usage::Usage;

/// One model's price, in micro-USD per million tokens (USD 3 per Mtok = 3_000_000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Prompt tokens neither read from nor written to a cache.
    pub input: u64,
    /// Completion tokens that are not reasoning tokens.
    pub output: u64,
    /// Prompt tokens read from the provider's cache; the input price when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<u64>,
    /// Prompt tokens written to the provider's cache; the input price when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<u64>,
    /// Completion tokens spent reasoning; the output price when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<u64>,
}

const PER_MTOK: u128 = 1_000_000;

impl Price {
    /// What `usage` costs at this price, in micro-USD, rounded half up.
    ///
    /// `usage` has OpenAI's semantics: `prompt` includes cached and cache-written tokens,
    /// `completion` includes reasoning tokens. Counts that contradict each other (more cached
    /// tokens than prompt tokens) are priced as reported, never below zero.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let plain_input = usage
            .prompt
            .saturating_sub(usage.cached)
            .saturating_sub(usage.cache_write);
        let plain_output = usage.completion.saturating_sub(usage.reasoning);
        let parts = [
            (plain_input, self.input),
            (usage.cached, self.cache_read.unwrap_or(self.input)),
            (usage.cache_write, self.cache_write.unwrap_or(self.input)),
            (plain_output, self.output),
            (usage.reasoning, self.reasoning.unwrap_or(self.output)),
        ];
        let pico: u128 = parts
            .iter()
            .map(|&(tokens, price)| u128::from(tokens) * u128::from(price))
            .sum();
        u64::try_from((pico + PER_MTOK / 2) / PER_MTOK).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt,
            completion,
            total: prompt + completion,
            ..Usage::default()
        }
    }

    #[test]
    fn plain_tokens_at_input_and_output_prices() {
        let p = Price {
            input: 3_000_000,
            output: 15_000_000,
            ..Price::default()
        };
        // 1,000 x 3 + 500 x 15 = 10,500 micro-USD.
        assert_eq!(p.cost_micros(&usage(1_000, 500)), 10_500);
        assert_eq!(p.cost_micros(&Usage::default()), 0);
    }

    #[test]
    fn cache_and_reasoning_tokens_at_their_own_prices() {
        let p = Price {
            input: 3_000_000,
            output: 15_000_000,
            cache_read: Some(300_000),
            cache_write: Some(3_750_000),
            reasoning: Some(20_000_000),
        };
        let u = Usage {
            prompt: 10_000,
            cached: 6_000,
            cache_write: 2_000,
            completion: 1_000,
            reasoning: 400,
            total: 11_000,
        };
        // 2,000 x 3 + 6,000 x 0.3 + 2,000 x 3.75 + 600 x 15 + 400 x 20
        assert_eq!(p.cost_micros(&u), 6_000 + 1_800 + 7_500 + 9_000 + 8_000);
        // Without cache prices, cached tokens cost what input costs.
        let plain = Price {
            input: 3_000_000,
            output: 15_000_000,
            ..Price::default()
        };
        assert_eq!(plain.cost_micros(&u), 10_000 * 3 + 1_000 * 15);
    }

    #[test]
    fn rounding_is_once_per_request_half_up() {
        let p = Price {
            input: 150_000,
            output: 600_000,
            ..Price::default()
        };
        // 3 x 0.15 + 1 x 0.6 = 1.05 micro-USD -> 1; 7 x 0.15 = 1.05, + 2 x 0.6 = 2.25 -> 2.
        assert_eq!(p.cost_micros(&usage(3, 1)), 1);
        assert_eq!(p.cost_micros(&usage(7, 2)), 2);
        assert_eq!(p.cost_micros(&usage(10, 0)), 2, "1.5 rounds up");
        // Contradictory counts never go negative.
        let odd = Usage {
            prompt: 5,
            cached: 9,
            ..Usage::default()
        };
        assert_eq!(p.cost_micros(&odd), 1, "9 cached tokens x 0.15");
    }
}
