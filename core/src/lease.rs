//! Pure: a limited key's lease as the workers of one Envoy share it (see
//! [`switchyard_contract::lease`]). One entry per key in [`Shared`] data, changed by
//! compare-and-swap: a request takes one request and its reservation from it, or finds nothing
//! left and asks the control plane (each such request asks: the grants add up, as they do in the
//! Envoy's one credit hold for the key at the control plane); its end gives back what its
//! reservation exceeded its cost by, and its cost is released from the hold with the next ask.
//! Credit is one running account per key, in step with that hold: what an expired lease left is
//! released with the next ask (or the tick's return). A refusal is remembered for a moment and
//! answered locally; a control plane that cannot answer lets requests through for a moment
//! (fail open, as Envoy's rate limit filter did).

use serde::{Deserialize, Serialize};
use switchyard_contract::lease::{
    LeaseAsk, LeaseEnd, LeaseGrant, LeaseRefusal, LeaseWindow, MAX_ENDS, MAX_HELD_MICROS,
    MAX_REQUESTS, MAX_SUM_TOKENS,
};
use switchyard_contract::limits::RATE_LIMIT_HEADERS;

use crate::exchange::shared::{SetError, Shared};

/// Requests one ask wants (the control plane grants fewer under a per-minute limit).
pub const WANTED: u32 = 100;
/// How long an ask may be unanswered before the tick gives the lease back regardless.
pub const ASK_TIMEOUT_MS: u64 = 1_000;
/// How long a refusal is answered locally before the control plane is asked again.
pub const REFUSAL_MS: u64 = 250;
/// How long requests go through unchecked after the control plane could not answer.
pub const OPEN_MS: u64 = 1_000;
/// The first byte of an encoded lease (its layout's version), and the length of its fixed part:
/// two bytes, eleven words, two windows of three, four words.
const ENCODING: u8 = 3;
const ENCODED_LEN: usize = 2 + 8 * 21;

/// Why a request's ask brought no grant: the lease then fails open (see [`answered`]), and the
/// host logs [`NoGrant::warning`], so that an overshoot of the key's limits has its cause in
/// the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoGrant {
    /// The call could not leave.
    NotSent,
    /// No answer came (a reset, or none within the lease timeout).
    NoAnswer,
    /// An answer with a status other than 200 (the control plane refused the ask or failed).
    Status,
    /// A 200 whose body is no grant.
    Unreadable,
}

impl NoGrant {
    pub fn warning(self) -> &'static str {
        match self {
            NoGrant::NotSent => "switchyard: a lease ask could not leave; the key's requests go through unchecked for up to 1 s",
            NoGrant::NoAnswer => "switchyard: a lease ask got no answer; the key's requests go through unchecked for up to 1 s",
            NoGrant::Status => "switchyard: a lease ask was answered with an error; the key's requests go through unchecked for up to 1 s",
            NoGrant::Unreadable => "switchyard: a lease ask's answer did not read; the key's requests go through unchecked for up to 1 s",
        }
    }
}

/// Compare-and-swap tries before giving up on shared data (then the request is let through).
const TRIES: usize = 32;

/// Where this Envoy's id is kept in shared data.
const INSTANCE: &str = "switchyard.lease.instance";

/// This Envoy's id (made by the first worker that needs it, from its clock): the control plane
/// keeps one credit hold per Envoy and key.
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
/// `"{request id} {tokens} {cost} {1 if its reservation was taken from the lease, else 0}\n"`.
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
                held: f.next() == Some("1"),
            })
        })
        .collect()
}

fn write_ends(ends: &[LeaseEnd], out: &mut Vec<u8>) {
    for e in ends {
        let line = format!(
            "{} {} {} {}\n",
            e.request,
            e.tokens,
            e.cost,
            u8::from(e.held)
        );
        out.extend_from_slice(line.as_bytes());
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

/// Puts back what an ask that got no answer reported, for the next ask. `sent`: it left, and
/// the control plane may have applied it without its answer coming back; then the ends are
/// reported again (a request's hold is kept under its id, so holding its cost twice is holding
/// it once) but what it released is not released again: the Envoy's hold may keep more than it
/// needs until it expires, never less.
pub fn put_back(shared: &impl Shared, key: &str, ask: &LeaseAsk, sent: bool) {
    if !ask.ends.is_empty() {
        let ends: Vec<LeaseEnd> = ask
            .ends
            .iter()
            .map(|e| LeaseEnd {
                held: e.held && !sent,
                ..e.clone()
            })
            .collect();
        update_ends(shared, key, |bytes| write_ends(&ends, bytes));
    }
    let release = if sent { 0 } else { ask.release };
    if ask.tokens > 0 || ask.cost > 0 || release > 0 {
        update(shared, key, |lease| {
            lease.ended_tokens = lease.ended_tokens.saturating_add(ask.tokens);
            lease.ended_cost = lease.ended_cost.saturating_add(ask.cost);
            lease.release = lease.release.saturating_add(release);
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
    /// Requests granted at `granted_at`: the most an ask gives back to that second's bucket
    /// (requests of grants counted in another second stay counted until their window slides
    /// past them: refusing early, and never taking another Envoy's requests out of a bucket).
    #[serde(default)]
    pub granted_then: u32,
    /// Requests left.
    #[serde(default)]
    pub requests: u32,
    /// Micro-USD left to reserve of what the Envoy's hold covers (`None`: no credit to spend):
    /// grants add to it, reservations take from it, ends give back what a reservation exceeded
    /// its cost by. It may fall below zero by the last reservation admitted while some was
    /// left; that is made up from the next grant.
    #[serde(default)]
    pub credit: Option<i64>,
    /// Micro-USD the spend caps have left for it (`None`: no caps), as [`Lease::credit`] but
    /// replaced by each grant.
    #[serde(default)]
    pub cap: Option<i64>,
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
    /// Micro-USD the next ask releases from the Envoy's hold: credit an expired lease left.
    #[serde(default)]
    pub release: u64,
    /// Ends wait to be reported (one by one, or summed below).
    #[serde(default)]
    pub ends_waiting: bool,
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
    /// end is handed [`ended`] with `leased` (`false`: let through without taking from the
    /// lease, the control plane being away).
    Admitted(Vec<(&'static str, String)>, bool),
    /// Refused: answer the client with this (and these headers).
    Refused(LeaseRefusal, Vec<(&'static str, String)>),
    /// Ask the control plane with this, then call [`answered`].
    Ask(LeaseAsk),
}

/// What the tick does with a key's lease (see [`give_back`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Return {
    /// Nothing yet: the lease lives, or an ask is under way.
    Later,
    /// Nothing to give back until a request of the key asks again.
    Idle,
    /// Send this return (an ask for nothing).
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
            | u8::from(self.itemize) << 5
            | u8::from(self.cap.is_some()) << 6
            | u8::from(self.ends_waiting) << 7;
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
            self.release,
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
        for word in [
            self.ended_tokens,
            self.ended_cost,
            self.cap.unwrap_or(0) as u64,
            u64::from(self.granted_then),
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
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
            let until = word(21)?;
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
            release: word(10)?,
            request_window: window(11, flags & 4 != 0)?,
            token_window: window(14, flags & 8 != 0)?,
            refusal,
            itemize: flags & 32 != 0,
            ended_tokens: word(17)?,
            ended_cost: word(18)?,
            cap: (flags & 64 != 0).then_some(word(19)? as i64),
            granted_then: u32::try_from(word(20)?).ok()?,
            ends_waiting: flags & 128 != 0,
        })
    }

    /// Whether a request may be taken from it now.
    fn spendable(&self, now_ms: u64) -> bool {
        self.until_ms > now_ms
            && self.requests > 0
            && self.credit.is_none_or(|c| c > 0)
            && self.cap.is_none_or(|c| c > 0)
            && self.tokens.is_none_or(|t| t > 0)
    }

    /// Why a request may not be taken from a live lease (`None`: it may).
    fn shortfall(&self) -> Option<LeaseRefusal> {
        use switchyard_contract::limits::RefusalCode;
        let (code, message, retry_after) = if self.requests == 0 {
            let message = "Too many requests per minute for this key.";
            (RefusalCode::RateLimitExceeded, message, Some(1))
        } else if self.credit.is_some_and(|c| c <= 0) {
            let message =
                "The credit balance of this key's owner is used up; add credits to continue.";
            (RefusalCode::InsufficientCredits, message, None)
        } else if self.cap.is_some_and(|c| c <= 0) {
            (RefusalCode::BudgetExceeded, "Budget spent.", None)
        } else if self.tokens.is_some_and(|t| t <= 0) {
            let message = "Too many tokens per minute for this key.";
            (RefusalCode::TokensPerMinuteExceeded, message, Some(1))
        } else {
            return None;
        };
        Some(LeaseRefusal {
            code: code.as_str().into(),
            message: message.into(),
            retry_after,
        })
    }

    /// Takes one request reserving `reserve`.
    fn take(&mut self, reserve: u64) {
        self.requests -= 1;
        self.taken = self.taken.saturating_add(1);
        let r = i64::try_from(reserve).unwrap_or(i64::MAX);
        self.credit = self.credit.map(|c| c.saturating_sub(r));
        self.cap = self.cap.map(|c| c.saturating_sub(r));
        self.held = self.held.saturating_add(reserve);
    }

    /// Once the lease expired, the credit it left is released with the next ask: it is no
    /// longer spent here (what it owes, below zero, stays to be made up).
    fn release_expired(&mut self, now_ms: u64) {
        if self.until_ms > now_ms {
            return;
        }
        if let Some(c) = self.credit.filter(|c| *c > 0) {
            let c = u64::try_from(c).unwrap_or(0);
            self.release = self.release.saturating_add(c).min(MAX_HELD_MICROS);
            self.credit = Some(0);
        }
    }

    /// An ask for `requests` (0: only a return) with what this lease has to report, which
    /// leaves it: its unused requests, the credit to release, summed ends. The itemized ends
    /// are added by the caller ([`take_ends`]).
    fn ask(
        &mut self,
        instance: &str,
        key: &str,
        requests: u32,
        reserve: u64,
        now_ms: u64,
    ) -> LeaseAsk {
        self.release_expired(now_ms);
        self.ends_waiting = false;
        let ask = LeaseAsk {
            instance: instance.to_owned(),
            key: key.to_owned(),
            at_ms: now_ms,
            requests,
            reserve,
            held: self.held.min(MAX_HELD_MICROS),
            credit: self
                .credit
                .map_or(0, |c| u64::try_from(c).unwrap_or(0))
                .min(MAX_HELD_MICROS),
            release: take_at_most(&mut self.release, MAX_HELD_MICROS),
            unused: self.requests.min(self.granted_then),
            granted_at: self.granted_at,
            ends: Vec::new(),
            tokens: take_at_most(&mut self.ended_tokens, MAX_SUM_TOKENS),
            cost: take_at_most(&mut self.ended_cost, MAX_HELD_MICROS),
        };
        self.requests = 0;
        self.granted_then = 0;
        ask
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

/// Takes at most `bound` out of `left` (what an ask may report: the rest waits for the next):
/// an ask out of its bounds is refused whole, and its Envoy would let requests through
/// unchecked until another answer came.
fn take_at_most(left: &mut u64, bound: u64) -> u64 {
    let taken = (*left).min(bound);
    *left -= taken;
    taken
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
/// as remembered, or (nothing left) an ask for the control plane. `instance` is this Envoy's
/// id.
pub fn admit(
    shared: &impl Shared,
    instance: &str,
    key: &str,
    reserve: u64,
    now_ms: u64,
) -> Admission {
    let answer = update(shared, key, |lease| {
        if lease.open_until_ms > now_ms {
            return Admission::Admitted(Vec::new(), false);
        }
        if lease.spendable(now_ms) {
            lease.take(reserve);
            return Admission::Admitted(lease.headers(), true);
        }
        if let Some((refusal, until)) = &lease.refusal {
            if *until > now_ms {
                return Admission::Refused(refusal.clone(), lease.refused_headers(refusal));
            }
        }
        // Nothing left. Another worker may be asking already: this request asks too rather
        // than wait for that answer (the grants add up; see `answered`).
        let ask = lease.ask(instance, key, WANTED, reserve, now_ms);
        lease.asking_until_ms = now_ms.saturating_add(ASK_TIMEOUT_MS);
        Admission::Ask(ask)
    });
    match answer {
        Some(Admission::Ask(mut ask)) => {
            ask.ends = take_ends(shared, key);
            Admission::Ask(ask)
        }
        Some(other) => other,
        None => Admission::Admitted(Vec::new(), false),
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
            return Admission::Admitted(Vec::new(), false);
        };
        lease.open_until_ms = 0;
        if let Some(refusal) = &grant.refusal {
            // Another request's grant may have come meanwhile: this one takes from it.
            if lease.spendable(now_ms) {
                lease.take(reserve);
                return Admission::Admitted(lease.headers(), true);
            }
            lease.request_window = grant.request_window;
            lease.token_window = grant.token_window;
            let secs = u64::try_from(refusal.retry_after.unwrap_or(0)).unwrap_or(0);
            let until = now_ms.saturating_add(secs.saturating_mul(1_000).clamp(1, REFUSAL_MS));
            lease.refusal = Some((refusal.clone(), until));
            lease.taken = 0;
            lease.spent_tokens = 0;
            return Admission::Refused(refusal.clone(), lease.refused_headers(refusal));
        }
        lease.request_window = grant.request_window;
        lease.token_window = grant.token_window;
        lease.refusal = None;
        lease.itemize = grant.itemize;
        // The Envoy's hold grew by the grant's credit: so does what is left here (however
        // the answers of concurrent asks are ordered). An expired lease released what it left
        // with the ask (see `Lease::ask`).
        let credit = grant.credit.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        lease.credit = match (lease.credit, credit) {
            (Some(left), Some(c)) => Some(left.saturating_add(c)),
            (_, c) => c,
        };
        // The caps' figure is the control plane's latest, less what requests in flight here
        // reserved.
        let in_flight = i64::try_from(lease.held).unwrap_or(i64::MAX);
        lease.cap = grant.cap.map(|c| {
            i64::try_from(c)
                .unwrap_or(i64::MAX)
                .saturating_sub(in_flight)
        });
        lease.until_ms = now_ms.saturating_add(grant.ttl_ms);
        // Concurrent grants may be counted in different seconds (and answered in any order):
        // the lease gives back to the latest second only what was counted there.
        match grant.granted_at.cmp(&lease.granted_at) {
            std::cmp::Ordering::Greater => {
                lease.granted_at = grant.granted_at;
                lease.granted_then = grant.requests;
            }
            std::cmp::Ordering::Equal => {
                lease.granted_then = lease.granted_then.saturating_add(grant.requests);
            }
            std::cmp::Ordering::Less => {}
        }
        // Requests of an earlier grant still left were counted too: they add up, to at most
        // what one ask may give back. Concurrent asks (each request that finds the lease empty
        // asks) are each granted up to [`WANTED`]: a dozen of them would otherwise make the next
        // ask's `unused` out of bounds, the control plane refuse it whole (400), and this
        // Envoy let its requests through unchecked until another answer came (the credit
        // overshoot of the 32-client tests). Requests beyond the bound stay counted in their
        // window until it slides past them: rpm refuses early, never late.
        lease.requests = lease
            .requests
            .saturating_add(grant.requests)
            .min(MAX_REQUESTS);
        // The token figure is the control plane's latest.
        lease.tokens = grant.tokens.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        lease.taken = 0;
        lease.spent_tokens = 0;
        // A grant may leave nothing to take: no request, or credit still below zero (what
        // this Envoy's last requests owed took it).
        if let Some(refusal) = lease.shortfall() {
            return Admission::Refused(refusal.clone(), lease.refused_headers(&refusal));
        }
        lease.take(reserve);
        Admission::Admitted(lease.headers(), true)
    });
    answer.unwrap_or(Admission::Admitted(Vec::new(), false))
}

/// A request (`request`) of `key` reserving `reserve` ended having cost `cost` and spent
/// `tokens`; `leased`: its reservation was taken from the lease (see [`Admission::Admitted`]),
/// and is no longer held, what it exceeded the cost by may be spent again, and the cost is
/// released from the Envoy's hold when the end is reported. Its tokens leave what is left, and
/// its end waits to be reported with the next ask (which comes at the next request once
/// [`MAX_WAITING_ENDS`] wait, or with the tick's return).
pub fn ended(
    shared: &impl Shared,
    key: &str,
    request: &str,
    leased: bool,
    reserve: u64,
    tokens: u64,
    cost: u64,
) {
    let itemize = update(shared, key, |lease| {
        if leased {
            lease.held = lease.held.saturating_sub(reserve);
            let refund = i64::try_from(reserve)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(cost).unwrap_or(i64::MAX));
            lease.credit = lease.credit.map(|c| c.saturating_add(refund));
            lease.cap = lease.cap.map(|c| c.saturating_add(refund));
        }
        let t = i64::try_from(tokens).unwrap_or(i64::MAX);
        lease.tokens = lease.tokens.map(|left| left.saturating_sub(t));
        lease.spent_tokens = lease.spent_tokens.saturating_add(t);
        if !lease.itemize {
            lease.ended_tokens = lease.ended_tokens.saturating_add(tokens);
            lease.ended_cost = lease.ended_cost.saturating_add(cost);
        }
        lease.ends_waiting = true;
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
                held: leased,
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

/// A request's end as the exchange reports it (see [`ended`]).
pub fn request_ended(shared: &impl Shared, end: &crate::exchange::LeaseEnd) {
    ended(
        shared,
        &end.key,
        &end.request,
        end.leased,
        end.reserve,
        end.tokens,
        end.cost,
    );
}

fn bytecount_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// What the tick does with `key`'s lease at `now_ms`: once it expired and no ask is under way,
/// what it has to give back (its unused requests, the credit it left, waiting ends) leaves as
/// a return.
pub fn give_back(shared: &impl Shared, instance: &str, key: &str, now_ms: u64) -> Return {
    // Read first: most ticks find nothing to do, and write nothing.
    let Ok((bytes, _)) = shared.get(&name(key)) else {
        return Return::Later;
    };
    match returning(&mut Lease::decode(bytes.as_deref()), instance, key, now_ms) {
        Return::Ask(_) => {}
        other => return other,
    }
    let answer = update(shared, key, |lease| returning(lease, instance, key, now_ms));
    match answer {
        Some(Return::Ask(mut ask)) => {
            ask.ends = take_ends(shared, key);
            Return::Ask(ask)
        }
        Some(other) => other,
        None => Return::Later,
    }
}

/// What [`give_back`] does with `lease`.
fn returning(lease: &mut Lease, instance: &str, key: &str, now_ms: u64) -> Return {
    if lease.until_ms > now_ms || lease.asking_until_ms > now_ms {
        return Return::Later;
    }
    lease.release_expired(now_ms);
    if lease.requests == 0 && lease.release == 0 && !lease.ends_waiting {
        // Requests in flight end later, with something to report.
        return if lease.held == 0 {
            Return::Idle
        } else {
            Return::Later
        };
    }
    Return::Ask(lease.ask(instance, key, 0, 0, now_ms))
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
            cap: None,
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

    fn return_of(r: Return) -> LeaseAsk {
        match r {
            Return::Ask(ask) => ask,
            other => panic!("not a return: {other:?}"),
        }
    }

    /// The control plane's answer when nothing more is spendable.
    fn credits_refused() -> LeaseGrant {
        LeaseGrant {
            refusal: Some(LeaseRefusal {
                code: RefusalCode::InsufficientCredits.as_str().into(),
                message: "used up".into(),
                retry_after: None,
            }),
            ..grant(0, None)
        }
    }

    fn lease(shared: &Memory) -> Lease {
        Lease::decode(shared.value(&name("k")).as_deref())
    }

    #[test]
    fn credit_is_spent_by_reservation_and_refunded_by_the_cost() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 40, now));
        assert!(matches!(
            answered(&shared, "k", Some(grant(100, Some(100))), 40, now),
            Admission::Admitted(_, true)
        ));
        assert!(matches!(
            admit(&shared, "e1", "k", 40, now),
            Admission::Admitted(_, true)
        ));
        // 20 left: one more is admitted while some is left, then none.
        assert!(matches!(
            admit(&shared, "e1", "k", 40, now),
            Admission::Admitted(_, true)
        ));
        let ask = ask_of(admit(&shared, "e1", "k", 40, now));
        assert_eq!((ask.held, ask.unused, ask.release), (120, 97, 0));
        // An end of a request let through unchecked refunds nothing, and releases nothing.
        ended(&shared, "k", "r0", false, 40, 0, 0);
        assert_eq!(
            (lease(&shared).held, lease(&shared).credit),
            (120, Some(-20))
        );
        // Ends refund what the reservations exceeded the costs by.
        for _ in 0..3 {
            ended(&shared, "k", "r1", true, 40, 5, 10);
        }
        assert_eq!(
            (lease(&shared).held, lease(&shared).credit),
            (0, Some(-20 + 90))
        );
        // The next ask, once the lease expired, reports the four ends (the costs of the three
        // leased ones leave the Envoy's hold) and releases the 70 left; an ask that could not
        // leave puts them back.
        let ask = ask_of(admit(&shared, "e1", "k", 40, now + 5_000));
        assert_eq!(ask.ends.len(), 4, "r0 and the three");
        assert_eq!((ask.ends[1].tokens, ask.ends[1].cost), (5, 10));
        assert_eq!(
            ask.ends.iter().map(|e| e.held).collect::<Vec<_>>(),
            [false, true, true, true]
        );
        assert_eq!((ask.release, lease(&shared).credit), (70, Some(0)));
        put_back(&shared, "k", &ask, false);
        answered(&shared, "k", None, 40, now + 5_000);
        let again = ask_of(admit(&shared, "e1", "k", 40, now + 5_000 + OPEN_MS));
        assert_eq!((&again.ends, again.release), (&ask.ends, 70));
        // One that left and got no answer may have been applied: its ends are reported
        // again, but nothing is released twice.
        put_back(&shared, "k", &again, true);
        answered(&shared, "k", None, 40, now + 6_000 + OPEN_MS);
        let third = ask_of(admit(&shared, "e1", "k", 40, now + 6_000 + 2 * OPEN_MS));
        assert_eq!(third.ends.len(), 4);
        assert!(third.ends.iter().all(|e| !e.held));
        assert_eq!(third.release, 0);
    }

    /// A lease spent below zero with requests in flight asks (giving its unused requests back)
    /// and is refused; the ends refund it above zero: the next ask says what it has left, so
    /// that the control plane grants requests to spend it on.
    #[test]
    fn an_ask_says_what_credit_the_lease_has_left() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 4_500, now));
        answered(&shared, "k", Some(grant(100, Some(5_000))), 4_500, now);
        assert!(matches!(
            admit(&shared, "e1", "k", 4_500, now),
            Admission::Admitted(..)
        ));
        let ask = ask_of(admit(&shared, "e1", "k", 4_500, now + 1));
        assert_eq!((ask.credit, ask.unused), (0, 98));
        let refusal = credits_refused();
        assert!(matches!(
            answered(&shared, "k", Some(refusal), 4_500, now + 2),
            Admission::Refused(..)
        ));
        ended(&shared, "k", "r1", true, 4_500, 10, 1_000);
        ended(&shared, "k", "r2", true, 4_500, 10, 1_000);
        let ask = ask_of(admit(&shared, "e1", "k", 4_500, now + 10));
        assert_eq!(ask.credit, 5_000 - 2_000);
        let mut g = grant(100, Some(0));
        g.granted_at = 101;
        assert!(matches!(
            answered(&shared, "k", Some(g), 4_500, now + 11),
            Admission::Admitted(_, true)
        ));
    }

    /// Concurrent asks of one Envoy (each request that finds the lease empty asks): their
    /// grants add up, as the control plane's one hold for the Envoy and key does, whatever
    /// order the answers come in; a refusal that comes after another's grant takes from it.
    #[test]
    fn concurrent_grants_add_up_and_a_refusal_after_a_grant_takes_from_it() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        for _ in 0..3 {
            ask_of(admit(&shared, "e1", "k", 4_500, now));
        }
        assert!(matches!(
            answered(&shared, "k", Some(grant(100, Some(30_000))), 4_500, now + 1),
            Admission::Admitted(_, true)
        ));
        let refusal = credits_refused();
        assert!(matches!(
            answered(&shared, "k", Some(refusal.clone()), 4_500, now + 2),
            Admission::Admitted(_, true)
        ));
        assert!(matches!(
            answered(&shared, "k", Some(grant(100, Some(1_000))), 4_500, now + 3),
            Admission::Admitted(_, true)
        ));
        assert_eq!(lease(&shared).credit, Some(31_000 - 3 * 4_500));
        // Spent to below zero: a refusal is a refusal, and a grant that does not make up what
        // the last requests owed admits nothing either.
        while matches!(
            admit(&shared, "e1", "k", 4_500, now + 4),
            Admission::Admitted(..)
        ) {}
        assert_eq!(lease(&shared).credit, Some(31_000 - 7 * 4_500));
        assert!(matches!(
            answered(&shared, "k", Some(refusal), 4_500, now + 5),
            Admission::Refused(..)
        ));
        let Admission::Refused(r, _) =
            answered(&shared, "k", Some(grant(100, Some(500))), 4_500, now + 6)
        else {
            panic!("refused")
        };
        assert_eq!(r.code(), RefusalCode::InsufficientCredits);
        assert_eq!(lease(&shared).credit, Some(31_500 - 7 * 4_500));
    }

    /// A burst of requests finds the lease empty and each asks; every grant brings its
    /// requests. However many there are, the next ask stays within its bounds (else the control
    /// plane refuses it whole and the Envoy lets requests through unchecked), and so do the sums
    /// it reports: what is beyond a bound waits for the ask after it.
    #[test]
    fn concurrent_grants_never_make_an_ask_out_of_bounds() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        let burst = MAX_REQUESTS / WANTED + 5;
        for _ in 0..burst {
            ask_of(admit(&shared, "e1", "k", 4_500, now));
        }
        for _ in 0..burst {
            answered(&shared, "k", Some(grant(WANTED, Some(0))), 4_500, now + 1);
        }
        assert_eq!(lease(&shared).requests, MAX_REQUESTS);
        let mut over = lease(&shared);
        over.release = MAX_HELD_MICROS + 7;
        over.ended_tokens = MAX_SUM_TOKENS + 8;
        over.ended_cost = MAX_HELD_MICROS + 9;
        shared.set(&name("k"), &over.encode(), None).unwrap();
        let ask = ask_of(admit(&shared, "e1", "k", 4_500, now + 2));
        assert!(ask.bounded(), "{ask:?}");
        assert_eq!(
            (ask.unused, ask.release, ask.tokens, ask.cost),
            (
                MAX_REQUESTS,
                MAX_HELD_MICROS,
                MAX_SUM_TOKENS,
                MAX_HELD_MICROS
            )
        );
        let rest = ask_of(admit(&shared, "e1", "k", 4_500, now + 3));
        assert_eq!((rest.release, rest.tokens, rest.cost), (7, 8, 9));
    }

    /// Concurrent grants counted in two seconds: the next ask gives back to the later second
    /// only what was counted there, whatever order the answers came in (the earlier second's
    /// bucket keeps its requests; the later one never loses another Envoy's).
    #[test]
    fn unused_requests_go_back_only_to_the_second_they_were_counted_in() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        for _ in 0..3 {
            ask_of(admit(&shared, "e1", "k", 0, now));
        }
        let at = |second: i64, requests: u32| LeaseGrant {
            granted_at: second,
            ..grant(requests, None)
        };
        answered(&shared, "k", Some(at(101, 10)), 0, now);
        answered(&shared, "k", Some(at(100, 30)), 0, now);
        answered(&shared, "k", Some(at(101, 5)), 0, now);
        assert_eq!(lease(&shared).requests, 45 - 3);
        let ask = ask_of(admit(&shared, "e1", "k", 0, now + 2_000));
        assert_eq!((ask.unused, ask.granted_at), (15, 101));
        // In the other order: the later second's grant comes last.
        let other = Memory::at(0);
        ask_of(admit(&other, "e1", "k", 0, now));
        answered(&other, "k", Some(at(100, 30)), 0, now);
        answered(&other, "k", Some(at(101, 10)), 0, now);
        let ask = ask_of(admit(&other, "e1", "k", 0, now + 2_000));
        assert_eq!((ask.unused, ask.granted_at), (10, 101));
    }

    #[test]
    fn ends_of_an_owner_without_credits_are_summed() {
        let shared = Memory::at(0);
        let now = 1_000_000;
        ask_of(admit(&shared, "e1", "k", 0, now));
        let mut g = grant(10, None);
        g.itemize = false;
        answered(&shared, "k", Some(g), 0, now);
        ended(&shared, "k", "r1", true, 0, 29, 2_900);
        ended(&shared, "k", "r2", true, 0, 1, 100);
        let ask = return_of(give_back(&shared, "e1", "k", now + 2_000));
        assert_eq!((ask.ends.len(), ask.tokens, ask.cost), (0, 30, 3_000));
        // No answer: the sums wait for the next ask.
        put_back(&shared, "k", &ask, true);
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
            ended(&shared, "k", &format!("r{i}"), true, 0, 1, 0);
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
            Admission::Admitted(Vec::new(), false)
        );
        assert_eq!(
            admit(&shared, "e1", "k", 0, now + 10),
            Admission::Admitted(Vec::new(), false)
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
            Return::Later,
            "not expired yet"
        );
        let back = return_of(give_back(&shared, "e1", "k", now + 2_000));
        assert_eq!(
            (
                back.requests,
                back.unused,
                back.held,
                back.granted_at,
                back.release
            ),
            (0, 5, 10, 100, 50)
        );
        assert_eq!(
            give_back(&shared, "e1", "k", now + 3_000),
            Return::Later,
            "given back once; a request is in flight"
        );
        // Its end comes: what it reported and refunded leaves with the next tick's return.
        ended(&shared, "k", "r1", true, 10, 3, 4);
        let back = return_of(give_back(&shared, "e1", "k", now + 3_250));
        assert_eq!((back.unused, back.release, back.ends.len()), (0, 6, 1));
        assert_eq!(
            give_back(&shared, "e1", "k", now + 3_500),
            Return::Idle,
            "nothing left"
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
            granted_then: 6,
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
            release: 4,
            cap: Some(-3),
            ends_waiting: true,
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
