//! Limit leases between the filter and the control plane: an Envoy asks, per limited key, for
//! a bounded allowance ([`LeaseAsk`], POST [`PATH`] over the cluster that carries request
//! records, signed like records under the data plane key with its own domain), and spends it
//! across its workers without asking again until it runs out or expires. The answer
//! ([`LeaseGrant`]) is taken atomically from the global counters; its credit allowance is
//! added to the one hold this Envoy has for this key (kept until shortly after its last ask).
//! The next ask of the same Envoy and key returns the requests the last one left unused,
//! reports the ends of the requests it admitted and releases what its hold no longer covers
//! (those ends' costs, now held one by one, and the credit an expired lease left). Every figure either side reads is
//! bounded here ([`LeaseAsk::bounded`]).

use serde::{Deserialize, Serialize};

use crate::limits::{RefusalCode, MAX_RESERVE_MICROS};

/// Where the control plane answers lease asks (beside [`crate::record::PATH`]).
pub const PATH: &str = "/switchyard.limits.v1/lease";

/// What a lease ask's signature covers before the body (not a records batch's domain: a
/// signed batch cannot be replayed as an ask, nor the reverse).
pub const SIGNATURE_DOMAIN: &[u8] = b"lease/v1\n";

/// An ask older or newer than this (against the control plane's clock) is refused: a captured
/// ask cannot be replayed later.
pub const MAX_SKEW_MS: u64 = 30_000;

/// The most requests one lease grants.
pub const MAX_REQUESTS: u32 = 1_000;

/// The most request ends one ask reports (a filter that has more sends them in several asks).
pub const MAX_ENDS: usize = 256;

/// The most tokens one request's end may report.
pub const MAX_TOKENS: u64 = 1_000_000_000;

/// The most tokens an ask's summed ends may report.
pub const MAX_SUM_TOKENS: u64 = MAX_TOKENS * MAX_REQUESTS as u64;

/// The most reservations in flight one ask may keep held, micro-USD.
pub const MAX_HELD_MICROS: u64 = 1_000 * MAX_RESERVE_MICROS;

/// The longest a lease lives, and the default.
pub const MAX_TTL_MS: u64 = 10_000;
pub const DEFAULT_TTL_MS: u64 = 2_000;

/// One request admitted under a lease that has ended: charged to the key's windows and caps,
/// its cost held from its owner's credits until its record reaches the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEnd {
    /// The request id its record carries.
    pub request: String,
    pub tokens: u64,
    /// Micro-USD.
    pub cost: u64,
    /// Its reservation was taken from a lease (not let through while the control plane was
    /// away): its cost leaves the Envoy's hold, for a hold of its own.
    #[serde(default)]
    pub held: bool,
}

/// One Envoy's ask for a key's allowance (with what its last one left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LeaseAsk {
    /// The Envoy's own id (made once per Envoy, kept in shared data): the credit hold of a
    /// key's leases is this Envoy's for this key; each ask changes it by what it says (so
    /// concurrent asks of one Envoy add up, in any order).
    pub instance: String,
    /// The key's id.
    pub key: String,
    /// When the ask left (Unix ms).
    pub at_ms: u64,
    /// Requests wanted (0: only a return).
    pub requests: u32,
    /// What one request may cost (the reservation of the request that asks), micro-USD.
    pub reserve: u64,
    /// Reservations of the requests admitted and not ended yet, micro-USD (what the Envoy has
    /// in flight; its hold covers them).
    pub held: u64,
    /// Micro-USD the Envoy's lease has left to reserve (within its hold): with nothing more
    /// spendable, the ask is still granted requests to spend it on.
    #[serde(default)]
    pub credit: u64,
    /// Micro-USD the Envoy's hold for the key no longer needs to cover: the costs of the ended
    /// requests it had admitted under its leases (reported here, and held one by one from now
    /// on) and the credit an expired lease left unspent.
    #[serde(default)]
    pub release: u64,
    /// The last lease's unused requests and the second it was granted at: they leave the
    /// window they were counted in.
    pub unused: u32,
    pub granted_at: i64,
    /// Requests ended since the last ask, one by one (when the grant asked for them: the
    /// owner's credits hold each request's cost until its record reaches the ledger).
    #[serde(default)]
    pub ends: Vec<LeaseEnd>,
    /// The other ended requests' tokens and cost (micro-USD), summed.
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub cost: u64,
}

impl LeaseAsk {
    /// Whether every figure is within its bound and every id plain.
    pub fn bounded(&self) -> bool {
        !self.instance.is_empty()
            && !self.key.is_empty()
            && crate::ids::is_plain(&self.instance)
            && crate::ids::is_plain(&self.key)
            && self.requests <= MAX_REQUESTS
            && self.unused <= MAX_REQUESTS
            && self.reserve <= MAX_RESERVE_MICROS
            && self.held <= MAX_HELD_MICROS
            && self.release <= MAX_HELD_MICROS
            && self.credit <= MAX_HELD_MICROS
            && self.ends.len() <= MAX_ENDS
            && self.tokens <= MAX_SUM_TOKENS
            && self.cost <= MAX_HELD_MICROS
            && self.ends.iter().all(|e| {
                !e.request.is_empty()
                    && crate::ids::is_plain(&e.request)
                    && e.tokens <= MAX_TOKENS
                    && e.cost <= MAX_RESERVE_MICROS
            })
    }

    /// Whether `at_ms` is within [`MAX_SKEW_MS`] of `now_ms`.
    pub fn fresh(&self, now_ms: u64) -> bool {
        self.at_ms.abs_diff(now_ms) <= MAX_SKEW_MS
    }
}

/// A window's state for the `x-ratelimit-*` headers: its limit, what was used before this
/// lease took its part, and seconds until its oldest use leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseWindow {
    pub limit: i64,
    pub used: i64,
    pub reset_secs: i64,
}

/// Why a lease was refused, as the client is to hear it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRefusal {
    /// A [`RefusalCode`] (unknown ones read as a plain rate limit).
    pub code: String,
    pub message: String,
    pub retry_after: Option<i64>,
}

impl LeaseRefusal {
    pub fn code(&self) -> RefusalCode {
        RefusalCode::from_header(&self.code)
    }
}

/// The control plane's answer: an allowance, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LeaseGrant {
    /// The second the requests were counted at (returned with the unused ones).
    pub granted_at: i64,
    /// How long the allowance may be spent, from its arrival.
    pub ttl_ms: u64,
    /// Requests granted ([`MAX_REQUESTS`] with no per-minute request limit).
    pub requests: u32,
    /// Micro-USD added to what the Envoy may reserve (`None`: no credits to spend), held
    /// from the owner's balance: a request is admitted while some is left, and takes its
    /// reservation from it.
    pub credit: Option<u64>,
    /// The least the key's and owner's spend caps have left, micro-USD (`None`: no caps): it
    /// replaces what the lease had (less what its requests in flight reserved).
    #[serde(default)]
    pub cap: Option<u64>,
    /// Tokens that may be spent (`None`: no token limit): a request is admitted while some
    /// are left; its tokens are taken when it ends.
    pub tokens: Option<u64>,
    /// The tightest request and token windows, for the headers.
    pub request_window: Option<LeaseWindow>,
    pub token_window: Option<LeaseWindow>,
    pub refusal: Option<LeaseRefusal>,
    /// The next ask reports ends one by one (else summed).
    #[serde(default)]
    pub itemize: bool,
}

impl LeaseGrant {
    /// The grant with every figure within its bound (a broken or hostile answer cannot make
    /// the filter admit more than a lease may hold, or hold it longer).
    pub fn bounded(mut self) -> LeaseGrant {
        self.ttl_ms = self.ttl_ms.min(MAX_TTL_MS);
        self.requests = self.requests.min(MAX_REQUESTS);
        self.credit = self.credit.map(|c| c.min(MAX_HELD_MICROS));
        self.cap = self.cap.map(|c| c.min(MAX_HELD_MICROS));
        self.tokens = self.tokens.map(|t| t.min(MAX_TOKENS));
        if let Some(r) = &mut self.refusal {
            // At a character boundary: `truncate` panics inside one.
            let mut end = r.message.len().min(256);
            while !r.message.is_char_boundary(end) {
                end -= 1;
            }
            r.message.truncate(end);
            r.retry_after = r.retry_after.map(|s| s.clamp(1, 86_400 * 31));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask() -> LeaseAsk {
        LeaseAsk {
            instance: "e-1a2b".into(),
            key: "key_1".into(),
            at_ms: 1_700_000_000_000,
            requests: 10,
            reserve: 4_500,
            held: 9_000,
            credit: 2_000,
            release: 1_000,
            unused: 3,
            granted_at: 1_700_000_000,
            ends: vec![LeaseEnd {
                request: "0123abcd".into(),
                tokens: 29,
                cost: 2_900,
                held: true,
            }],
            tokens: 58,
            cost: 5_800,
        }
    }

    #[test]
    fn asks_and_grants_round_trip() {
        let a = ask();
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<LeaseAsk>(&text).unwrap(), a);
        let g = LeaseGrant {
            granted_at: 5,
            ttl_ms: 2_000,
            requests: 6,
            credit: Some(10),
            cap: Some(20),
            tokens: None,
            request_window: Some(LeaseWindow {
                limit: 60,
                used: 3,
                reset_secs: 59,
            }),
            token_window: None,
            refusal: Some(LeaseRefusal {
                code: RefusalCode::BudgetExceeded.as_str().into(),
                message: "m".into(),
                retry_after: Some(3),
            }),
            itemize: true,
        };
        let text = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<LeaseGrant>(&text).unwrap(), g);
        assert_eq!(g.refusal.unwrap().code(), RefusalCode::BudgetExceeded);
    }

    #[test]
    fn hostile_asks_are_out_of_bounds() {
        assert!(ask().bounded());
        type Spoil = Box<dyn Fn(&mut LeaseAsk)>;
        let odd: Vec<Spoil> = vec![
            Box::new(|a| a.instance.clear()),
            Box::new(|a| a.instance = "e:1".into()),
            Box::new(|a| a.key = "k".repeat(65)),
            Box::new(|a| a.release = MAX_HELD_MICROS + 1),
            Box::new(|a| a.credit = MAX_HELD_MICROS + 1),
            Box::new(|a| a.requests = MAX_REQUESTS + 1),
            Box::new(|a| a.unused = u32::MAX),
            Box::new(|a| a.reserve = MAX_RESERVE_MICROS + 1),
            Box::new(|a| a.held = u64::MAX),
            Box::new(|a| a.ends[0].tokens = MAX_TOKENS + 1),
            Box::new(|a| a.ends[0].cost = u64::MAX),
            Box::new(|a| a.ends[0].request = "r 1".into()),
            Box::new(|a| a.ends[0].request.clear()),
            Box::new(|a| a.ends = vec![a.ends[0].clone(); MAX_ENDS + 1]),
            Box::new(|a| a.tokens = MAX_SUM_TOKENS + 1),
            Box::new(|a| a.cost = u64::MAX),
        ];
        for (i, spoil) in odd.iter().enumerate() {
            let mut a = ask();
            spoil(&mut a);
            assert!(!a.bounded(), "case {i}");
        }
        let a = ask();
        assert!(a.fresh(a.at_ms + MAX_SKEW_MS));
        assert!(!a.fresh(a.at_ms + MAX_SKEW_MS + 1));
        assert!(!a.fresh(a.at_ms - MAX_SKEW_MS - 1));
    }

    #[test]
    fn hostile_grants_are_bounded() {
        let g = LeaseGrant {
            ttl_ms: u64::MAX,
            requests: u32::MAX,
            credit: Some(u64::MAX),
            cap: Some(u64::MAX),
            tokens: Some(u64::MAX),
            refusal: Some(LeaseRefusal {
                code: "x".into(),
                message: "m".repeat(10_000),
                retry_after: Some(-5),
            }),
            ..LeaseGrant::default()
        }
        .bounded();
        assert_eq!(g.ttl_ms, MAX_TTL_MS);
        assert_eq!(g.requests, MAX_REQUESTS);
        assert_eq!(g.credit, Some(MAX_HELD_MICROS));
        assert_eq!(g.cap, Some(MAX_HELD_MICROS));
        assert_eq!(g.tokens, Some(MAX_TOKENS));
        let r = g.refusal.unwrap();
        assert_eq!((r.message.len(), r.retry_after), (256, Some(1)));
        assert_eq!(r.code(), RefusalCode::RateLimitExceeded);
        let wide = LeaseGrant {
            refusal: Some(LeaseRefusal {
                code: "x".into(),
                message: "é".repeat(200),
                retry_after: None,
            }),
            ..LeaseGrant::default()
        }
        .bounded();
        assert_eq!(wide.refusal.unwrap().message.len(), 256);
    }
}
