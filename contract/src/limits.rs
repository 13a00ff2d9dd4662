//! The limits protocol between the filter and the control plane's rate limit service, through
//! Envoy's rate limit filter: what a limited key's request asks at admission ([`Admit`]), what
//! its end is charged ([`Charge`]), and why a request was refused ([`RefusalCode`]).

use std::fmt;

/// On a limited key's requests, the [`Admit`] value: their routes carry the rate limits (the
/// rate limit filter costs other requests nothing then), whose admission descriptor is this
/// value. Only the filter writes it; the route strips it.
pub const LIMITED_HEADER: &str = "x-switchyard-limited";

/// The descriptor key of the admission (the [`LIMITED_HEADER`] value).
pub const ADMIT_DESCRIPTOR: &str = "admit";

/// The descriptor key of a request's end (the [`CHARGE_STATE`] value).
pub const CHARGE_DESCRIPTOR: &str = "charge";

/// Filter state (`wasm.<key>`) set when a limited key's request ends, read by the route's
/// end-of-stream rate limit: the [`Charge`] value, what is charged.
pub const CHARGE_STATE: &str = "switchyard_charge";

/// Filter state (`wasm.<key>`): the request's cost in micro-USD, in decimal (the charge's hits).
pub const COST_STATE: &str = "switchyard_cost";

/// Response header by which the rate limit service says why it refused a request (a
/// [`RefusalCode`]). Removed before the client sees the answer.
pub const REFUSAL_HEADER: &str = "x-switchyard-refusal";

/// OpenAI's rate limit headers: limit, remaining and reset of the request window, then of the
/// token window. A provider's (about the gateway's provider key) are removed at the route; the
/// rate limit service sends the client's own under the same names, in this order.
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

/// The admission descriptor's value (from the header [`LIMITED_HEADER`]):
/// `"{key id} {openai|anthropic} {request id} {reserve micros}"`. The request id is the one the
/// request's end is charged under. Older filters send only the first two fields (no
/// reservation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit<'a> {
    pub key: &'a str,
    /// The client speaks Anthropic's API (refusals in its shape).
    pub anthropic: bool,
    /// Empty in the two-field form.
    pub request: &'a str,
    pub reserve: u64,
}

impl<'a> Admit<'a> {
    pub fn value(&self) -> String {
        let api = if self.anthropic {
            "anthropic"
        } else {
            "openai"
        };
        format!("{} {api} {} {}", self.key, self.request, self.reserve)
    }

    /// Reads a value of one, two or four fields; anything else (or a reservation that is not
    /// a whole number) is `None`.
    pub fn parse(value: &'a str) -> Option<Admit<'a>> {
        let mut fields = value.split(' ');
        let key = fields.next().filter(|k| !k.is_empty())?;
        let anthropic = fields.next() == Some("anthropic");
        let (request, reserve) = match (fields.next(), fields.next()) {
            (None, _) => ("", 0),
            (Some(request), Some(reserve)) if !request.is_empty() => {
                (request, reserve.parse().ok()?)
            }
            _ => return None,
        };
        if fields.next().is_some() {
            return None;
        }
        Some(Admit {
            key,
            anthropic,
            request,
            reserve,
        })
    }
}

/// A limited key's request as it ended (the [`CHARGE_STATE`] value):
/// `"{key id} {request id} {total tokens}"`; its cost travels apart, as the charge's hits
/// ([`COST_STATE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge<'a> {
    pub key: &'a str,
    /// The id its admission reserved under.
    pub request: &'a str,
    pub tokens: u64,
}

impl<'a> Charge<'a> {
    pub fn value(&self) -> String {
        self.to_string()
    }

    /// Reads exactly three fields, the ids not empty, the tokens a whole number.
    pub fn parse(value: &'a str) -> Option<Charge<'a>> {
        let mut fields = value.split(' ');
        let (key, request, tokens) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || key.is_empty() || request.is_empty() {
            return None;
        }
        Some(Charge {
            key,
            request,
            tokens: tokens.parse().ok()?,
        })
    }
}

impl fmt::Display for Charge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.key, self.request, self.tokens)
    }
}

/// Why the rate limit service refused a request (the [`REFUSAL_HEADER`] value, and the error
/// code the client sees).
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

    /// The code a refusal header says; a code this side does not know (a newer service) is
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
    fn admission_values_round_trip_and_odd_ones_are_refused() {
        let admit = Admit {
            key: "key_1",
            anthropic: true,
            request: "0123abcd",
            reserve: 4_200,
        };
        assert_eq!(admit.value(), "key_1 anthropic 0123abcd 4200");
        assert_eq!(Admit::parse(&admit.value()), Some(admit));
        let openai = Admit {
            anthropic: false,
            ..admit
        };
        assert_eq!(Admit::parse(&openai.value()), Some(openai));
        let old = Admit::parse("key_1 openai").unwrap();
        assert_eq!(
            (old.key, old.anthropic, old.request, old.reserve),
            ("key_1", false, "", 0)
        );
        assert_eq!(Admit::parse("key_1").unwrap().key, "key_1");
        for odd in [
            "",
            " openai",
            "key_1 openai r1",
            "key_1 openai r1 -5",
            "key_1 openai r1 5.5",
            "key_1 openai r1 99999999999999999999999",
            "key_1 openai  5",
            "key_1 openai r1 5 extra",
        ] {
            assert_eq!(Admit::parse(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn charges_round_trip_and_are_read_strictly() {
        let charge = Charge {
            key: "key_1",
            request: "0123abcd",
            tokens: 42,
        };
        assert_eq!(charge.value(), "key_1 0123abcd 42");
        assert_eq!(Charge::parse(&charge.value()), Some(charge));
        let most = Charge {
            tokens: u64::MAX,
            ..charge
        };
        assert_eq!(Charge::parse(&most.value()), Some(most));
        for odd in [
            "",
            "key_1",
            "key_1 r1",
            "key_1 r1 x",
            "key_1 r1 -5",
            "key_1 r1 5 6",
            "key_1  5",
            " r1 5",
        ] {
            assert_eq!(Charge::parse(odd), None, "{odd:?}");
        }
    }

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

    #[test]
    fn protocol_headers_are_internal() {
        for name in [LIMITED_HEADER, REFUSAL_HEADER] {
            assert!(
                name.starts_with(crate::names::INTERNAL_HEADER_PREFIX),
                "{name}"
            );
        }
    }
}
