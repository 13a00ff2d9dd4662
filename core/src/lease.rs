//! Pure: a limited key's lease as the workers of one Envoy share it (see
//! [`switchyard_contract::lease`]). One entry per key in [`Shared`] data, changed by
//! compare-and-swap: a request takes one request and its reservation from it, or finds nothing
//! left and asks the control plane (one worker at a time per key: the others spend what is
//! left or ask only once that ask is overdue); its end gives back what its reservation
//! exceeded its cost by. A refusal is remembered for a moment and answered locally; a control
//! plane that cannot answer lets requests through for a moment (fail open, as Envoy's rate
//! limit filter did).

use serde::{Deserialize, Serialize};
use switchyard_contract::lease::{
    LeaseAsk, LeaseEnd, LeaseGrant, LeaseRefusal, LeaseWindow, MAX_ENDS,
};
use switchyard_contract::limits::RATE_LIMIT_HEADERS;

use crate::exchange::shared::{SetError, Shared};

/// Requests one ask wants (the control plane grants fewer under a per-minute limit).
pub const WANTED: u32 = 100;
/// How long an ask may be unanswered before another worker asks too.
pub const ASK_TIMEOUT_MS: u64 = 1_000;
/// How long a refusal is answered locally before the control plane is asked again.
pub const REFUSAL_MS: u64 = 250;
/// How long requests go through unchecked after the control plane could not answer.
pub const OPEN_MS: u64 = 1_000;
/// The first byte of an encoded lease (its layout's version), and the length of its fixed part:
/// two bytes, eleven words, two windows of three, two words.
const ENCODING: u8 = 1;
const ENCODED_LEN: usize = 2 + 8 * 19;

/// The generation of a request let through without taking from a lease.
pub const UNLEASED: u32 = u32::MAX;
/// Compare-and-swap tries before giving up on shared data (then the request is let through).
const TRIES: usize = 32;

/// Where this Envoy's id is kept in shared data.
const INSTANCE: &str = "switchyard.lease.instance";

/// This Envoy's id (made by the first worker that needs it, from its clock): a lease's credit
/// hold at the control plane is this Envoy's for its key.
pub fn instance(shared: &impl Shared) -> String {
    for _ in 0..TRIES {
        let Ok((bytes, cas)) = shared.get(INSTANCE) else {
            break;
        };
        if let Some(id) = bytes.and_then(|b| String::from_utf8(b).ok()) {
            if !id.is_empty() {
                return id;
            }
        }
        let id = format!("e{:x}", shared.now_ns());
        match shared.set(INSTANCE, id.as_bytes(), cas) {
            Ok(()) => return id,
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Other) => break,
        }
    }
    format!("e{:x}", shared.now_ns())
}

/// Where a key's lease is kept in shared data.
pub fn name(key: &str) -> String {
    format!("switchyard.lease.{key}")
}

/// Where the ends of a key's requests wait for the next ask, one line each:
/// `"{request id} {tokens} {cost}\n"`.
fn ends_name(key: &str) -> String {
    format!("switchyard.lease-ends.{key}")
}

/// Ends waiting at most; past this the next request asks (and reports them).
const MAX_WAITING_ENDS: usize = MAX_ENDS;

fn read_ends(bytes: &[u8]) -> Vec<LeaseEnd> {
    std::str::from_utf8(bytes)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            Some(LeaseEnd {
                request: f.next()?.to_owned(),
                tokens: f.next()?.parse().ok()?,
                cost: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

fn write_ends(ends: &[LeaseEnd], out: &mut Vec<u8>) {
    for e in ends {
        out.extend_from_slice(format!("{} {} {}\n", e.request, e.tokens, e.cost).as_bytes());
    }
}

/// Changes the waiting ends of `key` by compare-and-swap; `None` without shared data.
fn update_ends<R>(
    shared: &impl Shared,
    key: &str,
    mut change: impl FnMut(&mut Vec<u8>) -> R,
) -> Option<R> {
    let name = ends_name(key);
    for _ in 0..TRIES {
        let (bytes, cas) = shared.get(&name).ok()?;
        let mut ends = bytes.unwrap_or_default();
        let out = change(&mut ends);
        match shared.set(&name, &ends, cas) {
            Ok(()) => return Some(out),
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Other) => return None,
        }
    }
    None
}

/// Takes up to [`MAX_ENDS`] waiting ends of `key` for an ask.
fn take_ends(shared: &impl Shared, key: &str) -> Vec<LeaseEnd> {
    update_ends(shared, key, |bytes| {
        let all = read_ends(bytes);
        let (taken, rest) = all.split_at(all.len().min(MAX_ENDS));
        bytes.clear();
        write_ends(rest, bytes);
        taken.to_vec()
    })
    .unwrap_or_default()
}

/// Puts back the ends an ask that got no answer carried (they are reported with the next).
pub fn put_back(shared: &impl Shared, key: &str, ask: &LeaseAsk) {
    if !ask.ends.is_empty() {
        update_ends(shared, key, |bytes| write_ends(&ask.ends, bytes));
    }
    if ask.tokens > 0 || ask.cost > 0 {
        update(shared, key, |lease| {
            lease.ended_tokens = lease.ended_tokens.saturating_add(ask.tokens);
            lease.ended_cost = lease.ended_cost.saturating_add(ask.cost);
        });
    }
}

/// A key's lease in one Envoy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// Unix ms until which the allowance may be spent (0: none).
    #[serde(default)]
    pub until_ms: u64,
    #[serde(default)]
    pub granted_at: i64,
    /// Requests left.
    #[serde(default)]
    pub requests: u32,
    /// Micro-USD left to reserve (`None`: no credit to spend); may fall below zero by the
    /// last reservation admitted while some was left.
    #[serde(default)]
    pub credit: Option<i64>,
    /// Tokens left (`None`: no token limit).
    #[serde(default)]
    pub tokens: Option<i64>,
    /// Requests taken and tokens spent under this lease (for the headers).
    #[serde(default)]
    pub taken: u32,
    #[serde(default)]
    pub spent_tokens: i64,
    #[serde(default)]
    pub request_window: Option<LeaseWindow>,
    #[serde(default)]
    pub token_window: Option<LeaseWindow>,
    /// An ask is under way until then (Unix ms).
    #[serde(default)]
    pub asking_until_ms: u64,
    /// Answered locally until then (Unix ms).
    #[serde(default)]
    pub refusal: Option<(LeaseRefusal, u64)>,
    /// Requests go through unchecked until then (Unix ms).
    #[serde(default)]
    pub open_until_ms: u64,
    /// Reservations of requests admitted and not ended, micro-USD.
    #[serde(default)]
    pub held: u64,
    /// Which run of grants the credit belongs to (a request's end refunds only its own).
    #[serde(default)]
    pub generation: u32,
    /// Ends are reported one by one (else summed in `ended_tokens` and `ended_cost`).
    #[serde(default)]
    pub itemize: bool,
    #[serde(default)]
    pub ended_tokens: u64,
    #[serde(default)]
    pub ended_cost: u64,
}

/// What a request of a limited key does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Go on; these `x-ratelimit-*` headers go to the client with the answer; the request's
    /// end is handed [`ended`] with this generation ([`UNLEASED`]: let through unchecked).
    Admitted(Vec<(&'static str, String)>, u32),
    /// Refused: answer the client with this (and these headers).
    Refused(LeaseRefusal, Vec<(&'static str, String)>),
    /// Ask the control plane with this, then call [`answered`].
    Ask(LeaseAsk),
}

impl Lease {
    /// Reads the form [`Lease::encode`] writes; anything else is no lease.
    fn decode(bytes: Option<&[u8]>) -> Lease {
        bytes.and_then(Lease::read).unwrap_or_default()
    }

    /// A fixed little-endian layout (read and written twice per request: no JSON), the
    /// remembered refusal, when there is one, as JSON at the end.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN + 8);
        out.push(ENCODING);
        let flags = u8::from(self.credit.is_some())
            | u8::from(self.tokens.is_some()) << 1
            | u8::from(self.request_window.is_some()) << 2
            | u8::from(self.token_window.is_some()) << 3
            | u8::from(self.refusal.is_some()) << 4
            | u8::from(self.itemize) << 5;
        out.push(flags);
        for word in [
            self.until_ms,
            self.granted_at as u64,
            u64::from(self.requests),
            self.credit.unwrap_or(0) as u64,
            self.tokens.unwrap_or(0) as u64,
            u64::from(self.taken),
            self.spent_tokens as u64,
            self.asking_until_ms,
            self.open_until_ms,
            self.held,
            u64::from(self.generation),
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for w in [self.request_window, self.token_window] {
            let w = w.unwrap_or(LeaseWindow {
                limit: 0,
                used: 0,
                reset_secs: 0,
            });
            for v in [w.limit, w.used, w.reset_secs] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.ended_tokens.to_le_bytes());
        out.extend_from_slice(&self.ended_cost.to_le_bytes());
        if let Some((refusal, until)) = &self.refusal {
            out.extend_from_slice(&until.to_le_bytes());
            out.extend_from_slice(&serde_json::to_vec(refusal).unwrap_or_default());
        }
        out
    }

    fn read(bytes: &[u8]) -> Option<Lease> {
        if bytes.len() < ENCODED_LEN || bytes.first() != Some(&ENCODING) {
            return None;
        }
        let flags = *bytes.get(1)?;
        let word = |i: usize| -> Option<u64> {
            let at = 2 + 8 * i;
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let window = |first: usize, present: bool| -> Option<Option<LeaseWindow>> {
            Some(present.then_some(LeaseWindow {
                limit: word(first)? as i64,
                used: word(first + 1)? as i64,
                reset_secs: word(first + 2)? as i64,
            }))
        };
        let refusal = if flags & 16 != 0 {
            let until = word(19)?;
            let json = bytes.get(ENCODED_LEN + 8..)?;
            Some((serde_json::from_slice(json).ok()?, until))
        } else {
            None
        };
        Some(Lease {
            until_ms: word(0)?,
            granted_at: word(1)? as i64,
            requests: u32::try_from(word(2)?).ok()?,
            credit: (flags & 1 != 0).then_some(word(3)? as i64),
            tokens: (flags & 2 != 0).then_some(word(4)? as i64),
            taken: u32::try_from(word(5)?).ok()?,
            spent_tokens: word(6)? as i64,
            asking_until_ms: word(7)?,
            open_until_ms: word(8)?,
            held: word(9)?,
            generation: u32::try_from(word(10)?).ok()?,
            request_window: window(11, flags & 4 != 0)?,
            token_window: window(14, flags & 8 != 0)?,
            refusal,
            itemize: flags & 32 != 0,
            ended_tokens: word(17)?,
            ended_cost: word(18)?,
        })
    }

    /// Whether a request may be taken from it now.
    fn spendable(&self, now_ms: u64) -> bool {
        self.until_ms > now_ms
            && self.requests > 0
            && self.credit.is_none_or(|c| c > 0)
            && self.tokens.is_none_or(|t| t > 0)
    }

    /// Takes one request reserving `reserve`.
    fn take(&mut self, reserve: u64) {
        self.requests -= 1;
        self.taken = self.taken.saturating_add(1);
        let r = i64::try_from(reserve).unwrap_or(i64::MAX);
        self.credit = self.credit.map(|c| c.saturating_sub(r));
        self.held = self.held.saturating_add(reserve);
    }

    /// The `x-ratelimit-*` headers after this lease's latest request.
    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let used = [i64::from(self.taken), self.spent_tokens];
        for ((names, window), used) in RATE_LIMIT_HEADERS
            .chunks(3)
            .zip([self.request_window, self.token_window])
            .zip(used)
        {
            if let (Some(w), [limit, remaining, reset]) = (window, names) {
                let left = w.limit.saturating_sub(w.used).saturating_sub(used).max(0);
                out.push((*limit, w.limit.to_string()));
                out.push((*remaining, left.to_string()));
                out.push((*reset, format!("{}s", w.reset_secs.max(0))));
            }
        }
        out
    }

    fn refused_headers(&self, refusal: &LeaseRefusal) -> Vec<(&'static str, String)> {
        let mut out = self.headers();
        if refusal.code() == switchyard_contract::limits::RefusalCode::RateLimitExceeded {
            for (name, value) in &mut out {
                if *name == RATE_LIMIT_HEADERS[1] {
                    *value = "0".into();
                }
            }
        }
        out
    }
}

/// Reads, changes and writes a key's lease by compare-and-swap; `None` when shared data
/// cannot be had (the caller lets the request through).
fn update<R>(
    shared: &impl Shared,
    key: &str,
    mut change: impl FnMut(&mut Lease) -> R,
) -> Option<R> {
    let name = name(key);
    for _ in 0..TRIES {
        let (bytes, cas) = shared.get(&name).ok()?;
        let mut lease = Lease::decode(bytes.as_deref());
        let out = change(&mut lease);
        match shared.set(&name, &lease.encode(), cas) {
            Ok(()) => return Some(out),
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Other) => return None,
        }
    }
    None
}

/// A request of `key` reserving `reserve` arrives at `now_ms`: taken from the lease, refused
/// as remembered, or (nothing left, nobody asking) an ask for the control plane. `instance` is
/// this Envoy's id.
pub fn admit(
    shared: &impl Shared,
    instance: &str,
    key: &str,
    reserve: u64,
    now_ms: u64,
) -> Admission {
    let answer = update(shared, key, |lease| {
        if lease.open_until_ms > now_ms {
            return Admission::Admitted(Vec::new(), UNLEASED);
        }
        if lease.spendable(now_ms) {
            lease.take(reserve);
            return Admission::Admitted(lease.headers(), lease.generation);
        }
        if let Some((refusal, until)) = &lease.refusal {
            if *until > now_ms {
                return Admission::Refused(refusal.clone(), lease.refused_headers(refusal));
            }
        }
        // Nothing left. Another worker may be asking already: this request asks too rather
        // than wait for that answer (the grants' requests add up; see `answered`).
        let ask = LeaseAsk {
            instance: instance.to_owned(),
            key: key.to_owned(),
            id: String::new(),
            at_ms: now_ms,
            requests: WANTED,
            reserve,
            held: lease.held,
            unused: lease.requests,
            granted_at: lease.granted_at,
            ends: Vec::new(),
            tokens: std::mem::take(&mut lease.ended_tokens),
            cost: std::mem::take(&mut lease.ended_cost),
        };
        lease.requests = 0;
        lease.asking_until_ms = now_ms.saturating_add(ASK_TIMEOUT_MS);
        Admission::Ask(ask)
    });
    match answer {
        Some(Admission::Ask(mut ask)) => {
            ask.ends = take_ends(shared, key);
            Admission::Ask(ask)
        }
        Some(other) => other,
        None => Admission::Admitted(Vec::new(), UNLEASED),
    }
}

/// The control plane's answer to a request's ask (`None`: none came, or it was not a grant),
/// at `now_ms`: the lease is renewed and the request takes its part, or is refused.
pub fn answered(
    shared: &impl Shared,
    key: &str,
    grant: Option<LeaseGrant>,
    reserve: u64,
    now_ms: u64,
) -> Admission {
    let grant = grant.map(LeaseGrant::bounded);
    let answer = update(shared, key, |lease| {
        lease.asking_until_ms = 0;
        let Some(grant) = &grant else {
            lease.open_until_ms = now_ms.saturating_add(OPEN_MS);
            return Admission::Admitted(Vec::new(), UNLEASED);
        };
        lease.open_until_ms = 0;
        lease.request_window = grant.request_window;
        lease.token_window = grant.token_window;
        if let Some(refusal) = &grant.refusal {
            let secs = u64::try_from(refusal.retry_after.unwrap_or(0)).unwrap_or(0);
            let until = now_ms.saturating_add(secs.saturating_mul(1_000).clamp(1, REFUSAL_MS));
            lease.refusal = Some((refusal.clone(), until));
            lease.taken = 0;
            lease.spent_tokens = 0;
            return Admission::Refused(refusal.clone(), lease.refused_headers(refusal));
        }
        lease.refusal = None;
        lease.itemize = grant.itemize;
        // Each grant's credit is held apart at the control plane: while the lease lives, a
        // grant adds to what is left (which may be below zero by the last reservation, and
        // takes the refunds of the requests admitted under it); a lease that expired starts
        // afresh (its allowance is no longer held: its requests' refunds stop counting).
        let live = lease.until_ms > now_ms;
        if !live {
            lease.generation = lease.generation.wrapping_add(1);
        }
        let credit = grant.credit.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        lease.credit = match (live, lease.credit, credit) {
            (true, Some(left), Some(c)) => Some(left.saturating_add(c)),
            (_, _, c) => c,
        };
        lease.until_ms = now_ms.saturating_add(grant.ttl_ms);
        lease.granted_at = grant.granted_at;
        // Requests of an earlier grant still left were counted too: they add up. The token
        // figure is the control plane's latest.
        lease.requests = lease.requests.saturating_add(grant.requests);
        lease.tokens = grant.tokens.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        lease.taken = 0;
        lease.spent_tokens = 0;
        if lease.requests == 0 {
            let refusal = LeaseRefusal {
                code: switchyard_contract::limits::RefusalCode::RateLimitExceeded
                    .as_str()
                    .into(),
                message: "Too many requests per minute for this key.".into(),
                retry_after: Some(1),
            };
            return Admission::Refused(refusal.clone(), lease.refused_headers(&refusal));
        }
        lease.take(reserve);
        Admission::Admitted(lease.headers(), lease.generation)
    });
    answer.unwrap_or(Admission::Admitted(Vec::new(), UNLEASED))
}

/// A request (`request`) admitted under `key`'s lease with `reserve` ended having cost `cost`
/// and spent `tokens`: its reservation is no longer held, what it exceeded the cost by may be
/// spent again, its tokens leave what is left, and its end waits to be reported with the next
/// ask (which comes at the next request once [`MAX_WAITING_ENDS`] wait).
pub fn ended(
    shared: &impl Shared,
    key: &str,
    request: &str,
    generation: u32,
    reserve: u64,
    tokens: u64,
    cost: u64,
) {
    let itemize = update(shared, key, |lease| {
        if generation == lease.generation {
            lease.held = lease.held.saturating_sub(reserve);
            let refund = i64::try_from(reserve)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(cost).unwrap_or(i64::MAX));
            lease.credit = lease.credit.map(|c| c.saturating_add(refund));
        }
        let t = i64::try_from(tokens).unwrap_or(i64::MAX);
        lease.tokens = lease.tokens.map(|left| left.saturating_sub(t));
        lease.spent_tokens = lease.spent_tokens.saturating_add(t);
        if !lease.itemize {
            lease.ended_tokens = lease.ended_tokens.saturating_add(tokens);
            lease.ended_cost = lease.ended_cost.saturating_add(cost);
        }
        lease.itemize
    })
    .unwrap_or(false);
    if !itemize {
        return;
    }
    let waiting = update_ends(shared, key, |bytes| {
        write_ends(
            &[LeaseEnd {
                request: request.to_owned(),
                tokens,
                cost,
            }],
            bytes,
        );
        bytecount_lines(bytes)
    })
    .unwrap_or(0);
    if waiting >= MAX_WAITING_ENDS {
        update(shared, key, |lease| lease.requests = 0);
    }
}

fn bytecount_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// What `key`'s lease gives back once it expired unused (its requests and credit hold), at
/// `now_ms`: an ask for nothing, or `None` when there is nothing to give back or an ask is
/// under way. Called on the tick.
pub fn give_back(shared: &impl Shared, instance: &str, key: &str, now_ms: u64) -> Option<LeaseAsk> {
    update(shared, key, |lease| {
        let idle = lease.until_ms != 0 && lease.until_ms <= now_ms;
        if !idle || lease.asking_until_ms > now_ms {
            return None;
        }
        let ask = LeaseAsk {
            instance: instance.to_owned(),
            key: key.to_owned(),
            id: String::new(),
            at_ms: now_ms,
            requests: 0,
            reserve: 0,
            held: lease.held,
            unused: lease.requests,
            granted_at: lease.granted_at,
            ends: Vec::new(),
            tokens: std::mem::take(&mut lease.ended_tokens),
            cost: std::mem::take(&mut lease.ended_cost),
        };
        lease.requests = 0;
        lease.until_ms = 0;
        lease.credit = None;
        Some(ask)
    })
    .flatten()
    .map(|mut ask| {
        ask.ends = take_ends(shared, key);
        ask
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::shared::Memory;
    use switchyard_contract::limits::RefusalCode;

    fn grant(requests: u32, credit: Option<u64>) -> LeaseGrant {
        LeaseGrant {
            granted_at: 100,
            ttl_ms: 2_000,
            requests,
            credit,
            tokens: None,
            request_window: Some(LeaseWindow {
                limit: 60,
                used: 0,
                reset_secs: 60,
            }),
            token_window: None,
            refusal: None,
            itemize: true,
        }
    }

    fn ask_of(a: Admission) -> LeaseAsk {
        match a {
            Admission::Ask(ask) => ask,
            other => panic!("not an ask: {other:?}"),
        }
    }

    fn remaining(a: &Admission) -> Option<String> {
        let headers = match a {
            Admission::Admitted(h, _) | Admission::Refused(_, h) => h,
            Admission::Ask(_) => return None,
        };
        headers
            .iter()
            .find(|(n, _)| *n == "x-ratelimit-remaining-requests")
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn a_grant_is_spent_by_every_worker_then_exhaustion_asks_once() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        let first = ask_of(admit(&shared, "e1", "k", 10, now));
        assert_eq!(
            (first.key.as_str(), first.requests, first.reserve),
            ("k", WANTED, 10)
        );
        let a = answered(&shared, "k", Some(grant(3, None)), 10, now);
        assert_eq!(remaining(&a).as_deref(), Some("59"));
        // Two more, from any worker (the same shared data), then nothing left: one ask.
        assert!(matches!(
            admit(&shared, "e1", "k", 10, now + 1),
            Admission::Admitted(..)
        ));
        let a = admit(&shared, "e1", "k", 10, now + 2);
        assert_eq!(remaining(&a).as_deref(), Some("57"));
        let again = ask_of(admit(&shared, "e1", "k", 10, now + 3));
        assert_eq!(again.unused, 0);
        assert_eq!(again.held, 30, "three requests in flight");
        // Another worker's write between this worker's read and write: the CAS retries, and
        // the interleaved lease is the one spent from.
        let mut other = Lease::decode(shared.value(&name("k")).as_deref());
        other.until_ms = now + 2_000;
        other.requests = 5;
        shared.interleave(&name("k"), &other.encode());
        assert!(matches!(
            admit(&shared, "e1", "k", 10, now + 4),
            Admission::Admitted(..)
        ));
        let after = Lease::decode(shared.value(&name("k")).as_deref());
        assert_eq!(after.requests, 4);
    }

    #[test]
    fn credit_is_spent_by_reservation_and_refunded_by_the_cost() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 40, now));
        assert!(matches!(
            answered(&shared, "k", Some(grant(100, Some(100))), 40, now),
            Admission::Admitted(..)
        ));
        assert!(matches!(
            admit(&shared, "e1", "k", 40, now),
            Admission::Admitted(..)
        ));
        // 20 left: one more is admitted while some is left, then none.
        assert!(matches!(
            admit(&shared, "e1", "k", 40, now),
            Admission::Admitted(..)
        ));
        let ask = ask_of(admit(&shared, "e1", "k", 40, now));
        assert_eq!((ask.held, ask.unused), (120, 97));
        // An end of an earlier generation (its lease expired) refunds nothing.
        ended(&shared, "k", "r0", 0, 40, 0, 0);
        let lease = Lease::decode(shared.value(&name("k")).as_deref());
        assert_eq!((lease.held, lease.credit), (120, Some(-20)));
        // Ends refund what the reservations exceeded the costs by.
        for _ in 0..3 {
            ended(&shared, "k", "r1", 1, 40, 5, 10);
        }
        let lease = Lease::decode(shared.value(&name("k")).as_deref());
        assert_eq!((lease.held, lease.credit), (0, Some(-20 + 90)));
        // The next ask reports the four ends; an ask that got no answer puts them back.
        let ask = ask_of(admit(&shared, "e1", "k", 40, now + 5_000));
        assert_eq!(ask.ends.len(), 4, "r0 and the three");
        assert_eq!((ask.ends[1].tokens, ask.ends[1].cost), (5, 10));
        put_back(&shared, "k", &ask);
        answered(&shared, "k", None, 40, now + 5_000);
        let again = ask_of(admit(&shared, "e1", "k", 40, now + 5_000 + OPEN_MS));
        assert_eq!(again.ends, ask.ends);
    }

    #[test]
    fn ends_of_an_owner_without_credits_are_summed() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 0, now));
        let mut g = grant(10, None);
        g.itemize = false;
        answered(&shared, "k", Some(g), 0, now);
        ended(&shared, "k", "r1", 1, 0, 29, 2_900);
        ended(&shared, "k", "r2", 1, 0, 1, 100);
        let ask = give_back(&shared, "e1", "k", now + 2_000).expect("a return");
        assert_eq!((ask.ends.len(), ask.tokens, ask.cost), (0, 30, 3_000));
        // No answer: the sums wait for the next ask.
        put_back(&shared, "k", &ask);
        let again = ask_of(admit(&shared, "e1", "k", 0, now + 2_000));
        assert_eq!((again.tokens, again.cost), (30, 3_000));
    }

    #[test]
    fn too_many_waiting_ends_make_the_next_request_ask() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 0, now));
        answered(&shared, "k", Some(grant(1_000, None)), 0, now);
        for i in 0..MAX_WAITING_ENDS {
            ended(&shared, "k", &format!("r{i}"), 0, 0, 1, 0);
        }
        let ask = ask_of(admit(&shared, "e1", "k", 0, now + 1));
        assert_eq!(ask.ends.len(), MAX_ENDS);
        assert!(ask.bounded());
    }

    #[test]
    fn refusals_keep_the_clients_shape_and_are_remembered_for_a_moment() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 0, now));
        let mut g = grant(0, None);
        g.request_window = Some(LeaseWindow {
            limit: 60,
            used: 60,
            reset_secs: 12,
        });
        g.refusal = Some(LeaseRefusal {
            code: RefusalCode::RateLimitExceeded.as_str().into(),
            message: "Too many requests per minute for this key.".into(),
            retry_after: Some(12),
        });
        let a = answered(&shared, "k", Some(g), 0, now);
        let Admission::Refused(r, headers) = &a else {
            panic!("{a:?}")
        };
        assert_eq!(
            (r.code(), r.retry_after),
            (RefusalCode::RateLimitExceeded, Some(12))
        );
        assert!(headers.contains(&("x-ratelimit-limit-requests", "60".into())));
        assert!(headers.contains(&("x-ratelimit-reset-requests", "12s".into())));
        assert_eq!(remaining(&a).as_deref(), Some("0"));
        // Remembered: the next requests are refused without asking, then it asks again.
        assert!(matches!(
            admit(&shared, "e1", "k", 0, now + 100),
            Admission::Refused(..)
        ));
        assert!(matches!(
            admit(&shared, "e1", "k", 0, now + REFUSAL_MS),
            Admission::Ask(_)
        ));
    }

    #[test]
    fn without_an_answer_requests_go_through_for_a_moment() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 0, now));
        assert_eq!(
            answered(&shared, "k", None, 0, now),
            Admission::Admitted(Vec::new(), UNLEASED)
        );
        assert_eq!(
            admit(&shared, "e1", "k", 0, now + 10),
            Admission::Admitted(Vec::new(), UNLEASED)
        );
        assert!(matches!(
            admit(&shared, "e1", "k", 0, now + OPEN_MS),
            Admission::Ask(_)
        ));
    }

    #[test]
    fn an_expired_lease_gives_back_what_it_did_not_use() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 10, now));
        answered(&shared, "k", Some(grant(6, Some(60))), 10, now);
        assert_eq!(
            give_back(&shared, "e1", "k", now + 1_000),
            None,
            "not expired yet"
        );
        let back = give_back(&shared, "e1", "k", now + 2_000).expect("a return");
        assert_eq!(
            (back.requests, back.unused, back.held, back.granted_at),
            (0, 5, 10, 100)
        );
        assert_eq!(
            give_back(&shared, "e1", "k", now + 3_000),
            None,
            "given back once"
        );
        // The next request asks afresh.
        assert!(matches!(
            admit(&shared, "e1", "k", 10, now + 3_000),
            Admission::Ask(_)
        ));
    }

    #[test]
    fn leases_round_trip_through_their_encoding() {
        let mut lease = Lease {
            until_ms: 5,
            granted_at: -1,
            requests: 7,
            credit: Some(-20),
            tokens: None,
            taken: 3,
            spent_tokens: 9,
            request_window: Some(LeaseWindow {
                limit: 60,
                used: 2,
                reset_secs: 58,
            }),
            token_window: None,
            asking_until_ms: 11,
            refusal: None,
            open_until_ms: 12,
            held: 13,
            generation: 4,
            itemize: true,
            ended_tokens: 14,
            ended_cost: 15,
        };
        assert_eq!(Lease::decode(Some(&lease.encode())), lease);
        lease.refusal = Some((
            LeaseRefusal {
                code: "budget_exceeded".into(),
                message: "m".into(),
                retry_after: Some(3),
            },
            99,
        ));
        lease.tokens = Some(0);
        assert_eq!(Lease::decode(Some(&lease.encode())), lease);
        let bytes = lease.encode();
        assert_eq!(
            Lease::decode(Some(&bytes[..ENCODED_LEN - 1])),
            Lease::default()
        );
        assert_eq!(
            Lease::decode(Some(&bytes[..ENCODED_LEN + 3])),
            Lease::default()
        );
    }

    #[test]
    fn a_hostile_grant_is_bounded_and_garbled_shared_data_starts_afresh() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        let mut g = grant(u32::MAX, Some(u64::MAX));
        g.ttl_ms = u64::MAX;
        ask_of(admit(&shared, "e1", "k", 0, now));
        answered(&shared, "k", Some(g), 0, now);
        let lease = Lease::decode(shared.value(&name("k")).as_deref());
        assert_eq!(lease.until_ms, now + switchyard_contract::lease::MAX_TTL_MS);
        assert_eq!(lease.requests, switchyard_contract::lease::MAX_REQUESTS - 1);
        shared.set(&name("k"), b"\xff not json", None).unwrap();
        assert!(matches!(
            admit(&shared, "e1", "k", 0, now),
            Admission::Ask(_)
        ));
    }
}
