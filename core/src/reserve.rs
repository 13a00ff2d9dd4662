//! Pure: the most a limited key's request may cost, which it reserves from its key's lease (see
//! [`crate::lease`]) until it ends (so concurrent requests cannot all spend the same balance).

use crate::request::{Endpoint, TopLevel};
use switchyard_contract::pricing::Price;

/// The largest reservation: the contract's (the control plane refuses more).
pub use switchyard_contract::limits::MAX_RESERVE_MICROS;

/// Output tokens assumed when a request sets no limit of its own.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 4_096;

/// Body bytes per prompt token assumed: JSON around English text runs at about four bytes a
/// token, so three errs high, as a reservation should.
const BYTES_PER_TOKEN: u64 = 3;

/// The output limit the client set: the largest of `max_tokens` (Chat Completions, Messages),
/// `max_completion_tokens` (Chat Completions) and `max_output_tokens` (Responses), or
/// [`DEFAULT_OUTPUT_TOKENS`] when none is a whole number. Read from the raw values the request's
/// one parse kept: no second parse of the body.
pub fn output_limit(top: &TopLevel) -> u64 {
    ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .filter_map(|name| top.get(name))
        .filter_map(|raw| raw.get().trim().parse::<u64>().ok())
        .max()
        .unwrap_or(DEFAULT_OUTPUT_TOKENS)
}

/// The most `body_len` bytes of prompt and `output_tokens` of answer cost at `price`, in
/// micro-USD rounded up, every token at the dearer of its kinds (a prompt may be written to a
/// cache, an answer may be reasoning), at most [`MAX_RESERVE_MICROS`].
pub fn micros(body_len: usize, output_tokens: u64, price: &Price) -> u64 {
    let prompt = u64::try_from(body_len)
        .unwrap_or(u64::MAX)
        .div_ceil(BYTES_PER_TOKEN);
    let input = price.input.max(price.cache_write.unwrap_or(0));
    let output = price.output.max(price.reasoning.unwrap_or(0));
    // Each product fits in a u128; their sum may not (both at u64::MAX).
    let pico = (u128::from(prompt) * u128::from(input))
        .saturating_add(u128::from(output_tokens) * u128::from(output));
    u64::try_from(pico.div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .min(MAX_RESERVE_MICROS)
}

/// The reservation of a request to `endpoint` with this body going to a target priced `price`
/// (none: nothing to reserve; embeddings produce no output tokens).
pub fn estimate(endpoint: Endpoint, top: &TopLevel, body_len: usize, price: Option<&Price>) -> u64 {
    let Some(price) = price else {
        return 0;
    };
    let output = match endpoint {
        Endpoint::Embeddings => 0,
        _ => output_limit(top),
    };
    micros(body_len, output, price)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(body: &str) -> TopLevel<'_> {
        TopLevel::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn the_output_limit_is_the_largest_the_client_set_or_the_default() {
        let limit = |body: &str| output_limit(&top(body));
        assert_eq!(limit(r#"{"model":"m"}"#), DEFAULT_OUTPUT_TOKENS);
        assert_eq!(limit(r#"{"model":"m","max_tokens":100}"#), 100);
        assert_eq!(limit(r#"{"model":"m","max_completion_tokens": 250 }"#), 250);
        assert_eq!(limit(r#"{"model":"m","max_output_tokens":7}"#), 7);
        assert_eq!(
            limit(r#"{"model":"m","max_tokens":10,"max_completion_tokens":20}"#),
            20
        );
        for odd in ["null", "-5", "1.5", "\"100\"", "1e3", "{}"] {
            assert_eq!(
                limit(&format!(r#"{{"model":"m","max_tokens":{odd}}}"#)),
                DEFAULT_OUTPUT_TOKENS,
                "{odd}"
            );
        }
    }

    #[test]
    fn a_reservation_prices_every_token_at_its_dearest_kind_and_rounds_up() {
        let price = Price {
            input: 2_000_000,
            output: 8_000_000,
            ..Price::default()
        };
        // 300 bytes: 100 prompt tokens at USD 2/Mtok, 50 output tokens at USD 8/Mtok.
        assert_eq!(micros(300, 50, &price), 200 + 400);
        // 301 bytes: 101 tokens.
        assert_eq!(micros(301, 0, &price), 202);
        // A fraction of a micro-USD is a whole one.
        assert_eq!(
            micros(
                1,
                0,
                &Price {
                    input: 1,
                    ..Price::default()
                }
            ),
            1
        );
        let dear = Price {
            cache_write: Some(3_000_000),
            reasoning: Some(10_000_000),
            ..price
        };
        assert_eq!(micros(300, 50, &dear), 300 + 500);
        // Nothing overflows; the largest reservation is the cap.
        let huge = Price {
            input: u64::MAX,
            output: u64::MAX,
            ..Price::default()
        };
        assert_eq!(micros(usize::MAX, u64::MAX, &huge), MAX_RESERVE_MICROS);
    }

    #[test]
    fn estimates_follow_the_endpoint_and_the_price() {
        let body = r#"{"model":"m","max_tokens":1000}"#;
        let price = Price {
            input: 1_000_000,
            output: 1_000_000,
            ..Price::default()
        };
        let prompt = (body.len() as u64).div_ceil(3);
        assert_eq!(
            estimate(
                Endpoint::ChatCompletions,
                &top(body),
                body.len(),
                Some(&price)
            ),
            prompt + 1_000
        );
        assert_eq!(
            estimate(Endpoint::Embeddings, &top(body), body.len(), Some(&price)),
            prompt
        );
        assert_eq!(
            estimate(Endpoint::Messages, &top(body), body.len(), None),
            0,
            "no price, no cost"
        );
    }
}
