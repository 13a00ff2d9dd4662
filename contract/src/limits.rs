//! What the filter and the control plane agree on about limits besides leases (see
//! [`crate::lease`]): the `x-ratelimit-*` headers, the largest reservation, and why a request
//! was refused ([`RefusalCode`]).

use std::fmt;

/// OpenAI's rate limit headers: limit, remaining and reset of the request window, then of the
/// token window. A provider's (about the gateway's provider key) are removed at the route; the
/// filter sends the client's own, from its key's lease, under the same names, in this order.
pub const RATE_LIMIT_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// The largest reservation, micro-USD (USD 1,000,000); the control plane refuses any charge
/// above it as forged or broken.
pub const MAX_RESERVE_MICROS: u64 = 1_000_000_000_000;

/// Why the control plane refused a lease (the error code the client sees).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// The owner's credits do not cover the request's reservation: 402.
    InsufficientCredits,
    /// A daily or monthly spend cap is reached.
    BudgetExceeded,
    /// Too many requests this minute.
    RateLimitExceeded,
    /// Too many tokens this minute.
    TokensPerMinuteExceeded,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 4] = [
        RefusalCode::InsufficientCredits,
        RefusalCode::BudgetExceeded,
        RefusalCode::RateLimitExceeded,
        RefusalCode::TokensPerMinuteExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::InsufficientCredits => "insufficient_credits",
            RefusalCode::BudgetExceeded => "budget_exceeded",
            RefusalCode::RateLimitExceeded => "rate_limit_exceeded",
            RefusalCode::TokensPerMinuteExceeded => "tokens_per_minute_exceeded",
        }
    }

    /// The code written as [`RefusalCode::as_str`] does, or `None`.
    pub fn parse(code: &str) -> Option<RefusalCode> {
        RefusalCode::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// The code a refusal carries; a code this side does not know (a newer control plane) is
    /// a plain rate limit.
    pub fn from_header(value: &str) -> RefusalCode {
        RefusalCode::parse(value).unwrap_or(RefusalCode::RateLimitExceeded)
    }

    /// The HTTP status the client gets.
    pub fn status(self) -> u32 {
        match self {
            RefusalCode::InsufficientCredits => 402,
            _ => 429,
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_round_trip_and_unknown_ones_are_rate_limits() {
        for code in RefusalCode::ALL {
            assert_eq!(RefusalCode::parse(code.as_str()), Some(code));
            assert_eq!(RefusalCode::from_header(&code.to_string()), code);
        }
        assert_eq!(RefusalCode::parse("something_new"), None);
        assert_eq!(
            RefusalCode::from_header("something_new"),
            RefusalCode::RateLimitExceeded
        );
        assert_eq!(RefusalCode::InsufficientCredits.status(), 402);
        assert_eq!(RefusalCode::BudgetExceeded.status(), 429);
        assert_eq!(RefusalCode::TokensPerMinuteExceeded.status(), 429);
    }
}
