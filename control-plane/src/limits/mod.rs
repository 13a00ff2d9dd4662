//! Global limits, held for every Envoy at once: the control plane is Envoy's rate limit service
//! (`envoy.service.ratelimit.v3`, see [`service`]), with its counters in Redis (shared by every
//! control plane) or, without Redis, in memory.
//!
//! A request of a limited key (see the filter's `LIMITED_HEADER`) is asked about before it goes
//! upstream (descriptor `admit = "{key} {api} {request id} {reserve}"`, see the filter's
//! `reserve::Admit`): credits, spend caps per day and month of the key and of its owner, then
//! requests and tokens per minute of the key and of its owner, in one atomic step (a refused
//! request counts nowhere, an admitted one holds its reservation). When its stream is done,
//! Envoy reports it (`charge = "{key} {request id} {tokens}"`, its cost in micro-USD as the
//! descriptor's hits).
//!
//! Per-minute limits are sliding windows of one-second buckets: within any 60 seconds, at most
//! `rpm` requests are admitted. Tokens are counted when a response ends, so a request is
//! admitted while the tokens of the last minute are below `tpm`, and may pass it by its own.
//!
//! Credits: a metered user's spendable amount is the ledger balance less what the counters
//! hold: each admitted request's reservation (the most it may cost, estimated by the filter)
//! until its end is reported, then its cost until its record reaches the ledger (each request
//! id counts once whichever comes first). A request is admitted while that is above zero, so a
//! balance is overshot by at most the cost of the last request admitted, plus what requests
//! cost beyond their own reservations; the number of concurrent clients does not matter. A
//! reservation whose end never comes stops counting after the gateway's request timeout and a
//! margin; a cost whose record never comes, after [`CHARGE_TTL_SECS`].
//!
//! Every figure a peer sends is bounded ([`MAX_CHARGE_MICROS`], [`MAX_TOKENS`]); sums saturate
//! and never go below zero; every map keyed by a request id has a cap and an expiry, and every
//! Redis key a TTL.

mod calendar;
mod memory;
mod redis;
mod service;

use std::collections::HashMap;
use std::sync::RwLock;

use calendar::calendar;
pub use calendar::{date, period_starts};
pub use service::Service;
use switchyard_filter::reserve::Admit;

use crate::store::{Store, StoreError};

/// Seconds in a per-minute window.
const WINDOW_SECS: i64 = 60;
/// How long a request's reported cost is held (its record reaches the ledger well within it).
pub const CHARGE_TTL_SECS: i64 = 3_600;
/// How long past the gateway's request timeout a reservation is held when no end comes.
const RESERVE_MARGIN_SECS: i64 = 60;
/// The largest charge or reservation, micro-USD (USD 1,000,000): a report above it is forged or
/// broken, and is refused.
pub const MAX_CHARGE_MICROS: i64 = switchyard_filter::reserve::MAX_RESERVE_MICROS as i64;
/// The most tokens one request's end may report.
pub const MAX_TOKENS: i64 = 1_000_000_000;
/// Requests a user's credits are held for at once (reservations and costs not yet in the
/// ledger). Admission refuses more; a reported end beyond it drops the hold expiring first.
pub const MAX_HOLDS_PER_USER: usize = 10_000;

/// One key's limits and owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub user: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub daily_micros: Option<i64>,
    pub monthly_micros: Option<i64>,
}

/// One user's limits, over all of its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    /// Spend caps, micro-USD per UTC day and month.
    pub daily_micros: Option<i64>,
    pub monthly_micros: Option<i64>,
    /// The user has a credit account: requests need a positive spendable balance.
    pub metered: bool,
}

/// Everything the service enforces, loaded from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub keys: HashMap<String, KeyLimits>,
    pub users: HashMap<String, UserLimits>,
}

impl Table {
    /// Whether requests with this key need asking.
    pub fn limited(&self, key: &str) -> bool {
        self.keys.get(key).is_some_and(|k| {
            k.rpm.is_some()
                || k.tpm.is_some()
                || k.daily_micros.is_some()
                || k.monthly_micros.is_some()
                || self.users.get(&k.user).is_some_and(|u| {
                    u.rpm.is_some()
                        || u.tpm.is_some()
                        || u.daily_micros.is_some()
                        || u.monthly_micros.is_some()
                        || u.metered
                })
        })
    }
}

/// A sliding window's state after a request: used, and seconds until the oldest use leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub used: i64,
    pub reset_secs: i64,
}

/// Why the service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("Redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis did not answer lately; the next try waits a moment (see [`redis::Link`]).
    #[error("Redis is unreachable")]
    Down,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A peer's report with a figure out of bounds (forged or broken): refused, counted nowhere.
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    #[error("counters lock poisoned")]
    Poisoned,
}

type Result<T> = std::result::Result<T, LimitsError>;

/// A metered user's part of an admission: the reservation to hold if admitted.
#[derive(Debug)]
pub(super) struct Credit<'a> {
    user: &'a str,
    /// Empty: nothing to hold (an older filter's descriptor).
    request: &'a str,
    reserve: i64,
    /// When the hold stops counting if no end comes.
    expires: i64,
}

/// A spend cap: refused once its total reached it.
#[derive(Debug)]
pub(super) struct Cap {
    total: String,
    cap: i64,
    /// Seconds until the period ends.
    left: i64,
    period: &'static str,
    /// The owner's cap (else the key's).
    user: bool,
}

/// A per-minute window: `hits` counted if admitted (0: only checked).
#[derive(Debug)]
pub(super) struct Window {
    counter: String,
    limit: i64,
    hits: i64,
    /// Requests (else tokens).
    requests: bool,
}

/// One admission as the counters see it: checked in this order, counted only if all allow.
#[derive(Debug)]
pub(super) struct Ask<'a> {
    now: i64,
    credit: Option<Credit<'a>>,
    caps: Vec<Cap>,
    windows: Vec<Window>,
}

/// What the counters found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The user's balance is not in the counters (Redis emptied): read it, then ask again.
    NoBalance,
    NoCredits,
    /// The user has [`MAX_HOLDS_PER_USER`] requests held already.
    TooManyHolds,
    /// The cap at this position in [`Ask::caps`] is reached.
    OverCap(usize),
    /// The windows after the request (counted only if `ok`).
    Windows {
        ok: bool,
        states: Vec<WindowState>,
    },
}

/// A metered user's request ended: its hold becomes its cost (or goes, at no cost).
#[derive(Debug)]
pub(super) struct Settle<'a> {
    user: &'a str,
    request: &'a str,
}

/// A request's end as the counters see it.
#[derive(Debug)]
pub(super) struct End<'a> {
    now: i64,
    /// Token windows to add `tokens` to.
    windows: Vec<String>,
    tokens: i64,
    /// Spend totals to add `cost` to, with their time to live.
    totals: Vec<(String, i64)>,
    cost: i64,
    hold: Option<Settle<'a>>,
}

/// Where the counters live: two implementations of the same operations.
pub enum Counters {
    Memory(Box<std::sync::Mutex<memory::Memory>>),
    Redis(Box<redis::RedisCounters>),
}

impl Counters {
    /// A counter's name (under the prefix in Redis).
    fn name(&self, parts: &[&str]) -> String {
        let prefix = match self {
            Counters::Memory(_) => "",
            Counters::Redis(r) => r.prefix(),
        };
        let mut k = String::from(prefix);
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    fn memory(
        m: &std::sync::Mutex<memory::Memory>,
    ) -> Result<std::sync::MutexGuard<'_, memory::Memory>> {
        m.lock().map_err(|_| LimitsError::Poisoned)
    }

    async fn admit(&self, ask: &Ask<'_>) -> Result<Verdict> {
        match self {
            Counters::Memory(m) => Ok(Self::memory(m)?.admit(ask)),
            Counters::Redis(r) => r.admit(ask).await,
        }
    }

    async fn ended(&self, end: &End<'_>) -> Result<()> {
        match self {
            Counters::Memory(m) => {
                Self::memory(m)?.ended(end);
                Ok(())
            }
            Counters::Redis(r) => r.ended(end).await,
        }
    }

    /// Requests whose cost reached the ledger: (request id, user).
    async fn settle(&self, settled: &[(&str, &str)], now: i64) -> Result<()> {
        match self {
            Counters::Memory(m) => {
                let mut m = Self::memory(m)?;
                for (request, user) in settled {
                    m.settle(request, user, now);
                }
                Ok(())
            }
            Counters::Redis(r) => r.settle(settled).await,
        }
    }

    async fn set_balances(&self, balances: &[(String, i64)]) -> Result<()> {
        match self {
            Counters::Memory(m) => {
                let mut m = Self::memory(m)?;
                for (user, b) in balances {
                    m.set_balance(user, *b);
                }
                Ok(())
            }
            Counters::Redis(r) => r.set_balances(balances).await,
        }
    }

    /// Adds `delta` to each total, which lives `ttl` seconds from `now`: (name, ttl).
    async fn add_totals(&self, totals: &[(String, i64)], delta: i64, now: i64) -> Result<()> {
        match self {
            Counters::Memory(m) => {
                Self::memory(m)?.add_totals(totals, delta, now);
                Ok(())
            }
            Counters::Redis(r) => r.add_totals(totals, delta).await,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Error code (also the reason header the filter reads).
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<i64>,
}

/// What admission found: a refusal, or the windows for the `x-ratelimit-*` headers.
#[derive(Debug, Default)]
pub struct Admission {
    pub refusal: Option<Refusal>,
    /// (limit, state) of the tightest request and token windows.
    pub requests: Option<(i64, WindowState)>,
    pub tokens: Option<(i64, WindowState)>,
}

impl Admission {
    fn refused(code: &'static str, message: String, retry_after: Option<i64>) -> Admission {
        Admission {
            refusal: Some(Refusal {
                code,
                message,
                retry_after,
            }),
            ..Admission::default()
        }
    }
}

/// The limits service.
pub struct Limits {
    counters: Counters,
    table: RwLock<Table>,
    /// Where a balance the counters do not know (Redis emptied) is read from.
    store: Option<Store>,
    /// How long a reservation is held when its end never comes.
    reserve_ttl: i64,
}

impl Limits {
    pub fn in_memory() -> Limits {
        Limits::new(Counters::Memory(Box::default()))
    }

    pub fn new(counters: Counters) -> Limits {
        Limits {
            counters,
            table: RwLock::default(),
            store: None,
            reserve_ttl: 600 + RESERVE_MARGIN_SECS,
        }
    }

    /// Limits in Redis at `url` (keys under `prefix`), or in memory without one. Redis is not
    /// needed now: its connection is made on first use and again whenever it was lost.
    pub fn connect(redis_url: Option<&str>, prefix: &str) -> Result<Limits> {
        let counters = match redis_url {
            None => Counters::Memory(Box::default()),
            Some(url) => Counters::Redis(Box::new(redis::RedisCounters::new(url, prefix)?)),
        };
        Ok(Limits::new(counters))
    }

    /// Whether the counters answer now (Redis reachable; memory always).
    pub async fn reachable(&self) -> bool {
        match &self.counters {
            Counters::Memory(_) => true,
            Counters::Redis(r) => r.ping().await.is_ok(),
        }
    }

    /// Reads balances the counters lack from `store`.
    pub fn with_store(mut self, store: Store) -> Limits {
        self.store = Some(store);
        self
    }

    /// Reservations are held for the gateway's request timeout and a margin at most.
    pub fn with_request_timeout(mut self, secs: u64) -> Limits {
        self.reserve_ttl = i64::try_from(secs)
            .unwrap_or(i64::MAX)
            .saturating_add(RESERVE_MARGIN_SECS);
        self
    }

    pub fn set_table(&self, table: Table) {
        if let Ok(mut t) = self.table.write() {
            *t = table;
        }
    }

    pub fn table(&self) -> Table {
        self.table.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Ledger balances after a change (ingest, top-up, adjustment).
    pub async fn balances_changed(&self, balances: &[(String, i64)]) {
        if let Err(e) = self.counters.set_balances(balances).await {
            tracing::error!("credit balances not shared: {e}");
        }
    }

    /// Requests whose cost reached the ledger: (request id, user, cost). Their holds go.
    pub async fn settled(&self, charges: &[(String, String, i64)], now: i64) {
        let settled: Vec<(&str, &str)> = charges
            .iter()
            .map(|(request, user, _)| (request.as_str(), user.as_str()))
            .collect();
        if let Err(e) = self.counters.settle(&settled, now).await {
            tracing::error!("charges not settled: {e}");
        }
    }

    /// A key's limits and its owner's (`None`: a key without any).
    fn lookup(&self, key: &str) -> Result<Option<(KeyLimits, UserLimits)>> {
        let table = self.table.read().map_err(|_| LimitsError::Poisoned)?;
        Ok(table.keys.get(key).map(|k| {
            let user = table.users.get(&k.user).cloned().unwrap_or_default();
            (k.clone(), user)
        }))
    }

    /// What admitting a request of `key` checks and counts.
    fn ask<'a>(
        &self,
        admit: &Admit<'a>,
        limits: &'a KeyLimits,
        user: &UserLimits,
        now: i64,
    ) -> Ask<'a> {
        let c = &self.counters;
        let key = admit.key;
        let credit = user.metered.then(|| Credit {
            user: &limits.user,
            request: admit.request,
            reserve: i64::try_from(admit.reserve)
                .unwrap_or(MAX_CHARGE_MICROS)
                .min(MAX_CHARGE_MICROS),
            expires: now.saturating_add(self.reserve_ttl),
        });
        let (day, day_left, month, month_left) = calendar(now);
        let mut caps = Vec::new();
        for (cap, total, left, period, of_user) in [
            (
                limits.daily_micros,
                ["spend", key, day.as_str()],
                day_left,
                "day",
                false,
            ),
            (
                limits.monthly_micros,
                ["spend", key, month.as_str()],
                month_left,
                "month",
                false,
            ),
            (
                user.daily_micros,
                ["spend-user", limits.user.as_str(), day.as_str()],
                day_left,
                "day",
                true,
            ),
            (
                user.monthly_micros,
                ["spend-user", limits.user.as_str(), month.as_str()],
                month_left,
                "month",
                true,
            ),
        ] {
            if let Some(cap) = cap {
                caps.push(Cap {
                    total: c.name(&total),
                    cap,
                    left,
                    period,
                    user: of_user,
                });
            }
        }
        // Requests counted now, tokens only checked.
        let mut windows = Vec::new();
        for (who, id, rpm, tpm) in [
            ("key", key, limits.rpm, limits.tpm),
            ("user", limits.user.as_str(), user.rpm, user.tpm),
        ] {
            if let Some(rpm) = rpm {
                windows.push(Window {
                    counter: c.name(&["rpm", who, id]),
                    limit: rpm,
                    hits: 1,
                    requests: true,
                });
            }
            if let Some(tpm) = tpm {
                windows.push(Window {
                    counter: c.name(&["tpm", who, id]),
                    limit: tpm,
                    hits: 0,
                    requests: false,
                });
            }
        }
        Ask {
            now,
            credit,
            caps,
            windows,
        }
    }

    /// Whether a request may go now; counts it, and holds its reservation, if so.
    pub async fn admit(&self, admit: &Admit<'_>, now: i64) -> Result<Admission> {
        let Some((limits, user)) = self.lookup(admit.key)? else {
            return Ok(Admission::default());
        };
        let ask = self.ask(admit, &limits, &user, now);
        let mut verdict = self.counters.admit(&ask).await?;
        if verdict == Verdict::NoBalance {
            self.load_balance(&limits.user).await?;
            verdict = self.counters.admit(&ask).await?;
            if verdict == Verdict::NoBalance {
                verdict = Verdict::NoCredits;
            }
        }
        Ok(admission(&ask, verdict))
    }

    /// Reads a user's balance from the store into the counters (none: 0).
    async fn load_balance(&self, user: &str) -> Result<()> {
        let balance = match &self.store {
            Some(store) => match store.get_account(user).await {
                Ok(a) => a.balance_micros,
                Err(StoreError::NotFound) => 0,
                Err(e) => return Err(e.into()),
            },
            None => 0,
        };
        self.counters
            .set_balances(&[(user.to_owned(), balance)])
            .await
    }

    /// A request ended: its tokens count against per-minute limits, its cost against spend
    /// caps, and its owner's hold becomes its cost. Figures out of bounds are refused.
    pub async fn ended(
        &self,
        key: &str,
        request: &str,
        tokens: i64,
        cost: i64,
        now: i64,
    ) -> Result<()> {
        if !(0..=MAX_TOKENS).contains(&tokens) {
            return Err(LimitsError::OutOfRange("tokens"));
        }
        if !(0..=MAX_CHARGE_MICROS).contains(&cost) {
            return Err(LimitsError::OutOfRange("cost"));
        }
        let Some((limits, user)) = self.lookup(key)? else {
            return Ok(());
        };
        let c = &self.counters;
        let mut windows = Vec::new();
        if tokens > 0 {
            if limits.tpm.is_some() {
                windows.push(c.name(&["tpm", "key", key]));
            }
            if user.tpm.is_some() {
                windows.push(c.name(&["tpm", "user", &limits.user]));
            }
        }
        let mut totals = Vec::new();
        if cost > 0 {
            let (day, day_left, month, month_left) = calendar(now);
            for (cap, total, ttl) in [
                (limits.daily_micros, ["spend", key, day.as_str()], day_left),
                (
                    limits.monthly_micros,
                    ["spend", key, month.as_str()],
                    month_left,
                ),
                (
                    user.daily_micros,
                    ["spend-user", limits.user.as_str(), day.as_str()],
                    day_left,
                ),
                (
                    user.monthly_micros,
                    ["spend-user", limits.user.as_str(), month.as_str()],
                    month_left,
                ),
            ] {
                if cap.is_some() {
                    totals.push((c.name(&total), ttl + 3_600));
                }
            }
        }
        let hold = (user.metered && !request.is_empty()).then_some(Settle {
            user: &limits.user,
            request,
        });
        if windows.is_empty() && totals.is_empty() && hold.is_none() {
            return Ok(());
        }
        c.ended(&End {
            now,
            windows,
            tokens,
            totals,
            cost,
            hold,
        })
        .await
    }

    /// Spend so far today and this month of each key and user with a cap, from the request log
    /// (the in-memory counters start empty): (key id or user name, today, this month).
    pub async fn restore_spend(
        &self,
        keys: &[(String, i64, i64)],
        users: &[(String, i64, i64)],
        now: i64,
    ) -> Result<()> {
        let (day, day_left, month, month_left) = calendar(now);
        let c = &self.counters;
        for (kind, spend) in [("spend", keys), ("spend-user", users)] {
            for (who, today, this_month) in spend {
                for (amount, period, left) in
                    [(*today, &day, day_left), (*this_month, &month, month_left)]
                {
                    if amount > 0 {
                        let total = c.name(&[kind, who, period]);
                        c.add_totals(&[(total, left + 3_600)], amount.min(MAX_CHARGE_MICROS), now)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The answer to an admission from what the counters found.
fn admission(ask: &Ask<'_>, verdict: Verdict) -> Admission {
    match verdict {
        Verdict::NoBalance | Verdict::NoCredits => Admission::refused(
            "insufficient_credits",
            "The credit balance of this key's owner is used up; add credits to continue.".into(),
            None,
        ),
        Verdict::TooManyHolds => Admission::refused(
            "rate_limit_exceeded",
            "Too many requests of this key's owner are in flight.".into(),
            Some(1),
        ),
        Verdict::OverCap(i) => {
            let Some(cap) = ask.caps.get(i) else {
                return Admission::refused("budget_exceeded", "Budget spent.".into(), None);
            };
            let whose = if cap.user {
                "This key's owner"
            } else {
                "This key"
            };
            Admission::refused(
                "budget_exceeded",
                format!(
                    "{whose} has spent its budget for the {} ({} USD).",
                    cap.period,
                    crate::domain::micros_to_usd(cap.cap)
                ),
                Some(cap.left),
            )
        }
        Verdict::Windows { ok, states } => {
            let mut admission = Admission::default();
            // The tightest window of each kind: the one with the least left.
            for (w, state) in ask.windows.iter().zip(&states) {
                let slot = if w.requests {
                    &mut admission.requests
                } else {
                    &mut admission.tokens
                };
                let left = w.limit.saturating_sub(state.used);
                if slot.is_none_or(|(l, s)| l.saturating_sub(s.used) > left) {
                    *slot = Some((w.limit, *state));
                }
            }
            if !ok {
                // The first window that is full says why.
                let full = ask.windows.iter().zip(&states).find(|(w, state)| {
                    if w.hits > 0 {
                        state.used.saturating_add(w.hits) > w.limit
                    } else {
                        state.used >= w.limit
                    }
                });
                let (requests, reset) = full.map_or((true, 1), |(w, s)| (w.requests, s.reset_secs));
                admission.refusal = Some(if requests {
                    Refusal {
                        code: "rate_limit_exceeded",
                        message: "Too many requests per minute for this key.".into(),
                        retry_after: Some(reset.max(1)),
                    }
                } else {
                    Refusal {
                        code: "tokens_per_minute_exceeded",
                        message: "Too many tokens per minute for this key.".into(),
                        retry_after: Some(reset.max(1)),
                    }
                });
            }
            admission
        }
    }
}

#[cfg(test)]
mod tests;
