//! Global limits, held for every Envoy at once, off the per-request path: each Envoy spends a
//! bounded allowance per limited key locally (a lease, see [`lease`] and the filter's
//! `switchyard_core::lease`) and asks the control plane (`POST /switchyard.limits.v1/lease`,
//! signed with the data plane key) only when it runs out or expires. Counters live in Redis
//! (shared by every control plane) or, without Redis, in memory; a grant is taken from them in
//! one atomic step, so several Envoys and several control planes stay correct.
//!
//! A grant checks, in order, the owner's credits, the spend caps per day and month of the key
//! and of its owner, then requests and tokens per minute of the key and of its owner (a refused
//! ask counts nowhere), and hands out: requests (at most a tenth of the tightest `rpm`, counted
//! in the request windows at once), a credit allowance (micro-USD, at most what the owner's
//! balance has spendable beyond every hold), what the spend caps have left, and what the token
//! windows have left. Each Envoy has one credit hold per key: a grant adds its allowance to it,
//! and each ask first takes out of it what the Envoy no longer needs there (the costs of the
//! ends it reports, now held one by one until their records reach the ledger, and the credit an
//! expired lease left); the hold is kept until a few seconds after the Envoy's last ask. Every
//! change is an amount, not a state, so concurrent asks of one Envoy add up in any order (and
//! an ask that finds nothing more spendable is still granted requests when the Envoy's lease
//! has credit left, the refunds of its ended requests, to spend them on). The
//! filter keeps one running credit account per key in step with that hold: it admits a request
//! while its lease has a request, credit above zero (and cap, and tokens, above zero), taking
//! its reservation (the most it may cost) from the credit; the request's end gives back what
//! the reservation exceeded its cost by, takes its tokens, and waits (bounded) to be reported
//! with the next ask, or with the return the Envoy's tick sends once the lease expired. Unused
//! requests go back to their window with the next ask or return.
//!
//! The overshoot bound, per limit:
//! - requests per minute: never overshot (a grant's requests are counted when granted, and an
//!   ask gives back to the second it names no more than were granted in it). An Envoy holding
//!   unused requests may make another one be refused early, by at most a tenth of the limit per
//!   grant, until its next ask or return gives them back (those of concurrent grants counted in
//!   an earlier second, and those beyond the 1,000 a lease keeps, until their window slides).
//! - credits: a balance is overshot by at most one request's reservation per Envoy and key
//!   (the last one admitted while its credit was above zero: what it owes is taken from that
//!   Envoy's next grant) plus what requests cost beyond their own reservations, plus the
//!   reservations of requests still in flight when their Envoy's hold expired (requests that
//!   outlive the Envoy's last ask by more than its lease and a margin, about 7 s). An ask that
//!   left but got no answer never releases twice: its Envoy's hold may keep more than it needs
//!   (refusing early), never less.
//! - spend caps: as credits, per Envoy and key: each lease may pass a cap by its last request,
//!   and costs of requests not yet reported by another Envoy's (or another key's) next ask are
//!   not seen by this one's grant.
//! - tokens per minute: a key is admitted while its Envoy's lease has tokens left; the tokens of
//!   requests not yet reported (at most the requests of one lease per Envoy, reported at its
//!   next ask) are not seen by other Envoys' grants, so a minute's tokens may pass `tpm` by
//!   those, as before by the last request's own.
//!
//! These bounds hold while the Envoy's asks are answered. A control plane that cannot answer
//! (Redis away, an ask refused as out of bounds, no answer within the lease timeout) lets the
//! Envoy's requests through until its next answer, a second at most, without taking them from
//! the lease (fail open, as Envoy's rate limit filter did; the filter logs it): so the filter
//! keeps every ask within [`switchyard_contract::lease::LeaseAsk::bounded`] however many asks
//! of one key are in flight at once (a lease holds at most `MAX_REQUESTS` requests). A refusal
//! is answered by the Envoy itself for up to 250 ms before it asks again.
//!
//! Every figure a peer sends is bounded ([`MAX_CHARGE_MICROS`], [`MAX_TOKENS`], and the lease
//! bounds in `switchyard_contract::lease`); sums saturate and never go below zero; every map
//! keyed by a request id has a cap and an expiry, and every Redis key a TTL.

mod calendar;
mod counters;
mod lease;
mod memory;
mod policy;
mod redis;
mod table;

use std::sync::RwLock;

pub use calendar::{date, period_starts};
pub use counters::{Ask, Cap, Counters, Credit, End, Settle, Verdict, Window, WindowState};
pub use lease::router as lease_router;
pub use memory::MemoryCounters;
pub use policy::{Admission, Refusal};
pub use redis::RedisCounters;
pub use table::{KeyLimits, Table, UserLimits};

use crate::store::{Store, StoreError};

/// Seconds in a per-minute window.
const WINDOW_SECS: i64 = 60;
/// How long a request's reported cost is held (its record reaches the ledger well within it).
pub const CHARGE_TTL_SECS: i64 = 3_600;
/// How long past the gateway's request timeout a reservation is held when no end comes.
const RESERVE_MARGIN_SECS: i64 = 60;
/// The largest charge or reservation, micro-USD (USD 1,000,000): a report above it is forged or
/// broken, and is refused.
pub const MAX_CHARGE_MICROS: i64 = switchyard_contract::limits::MAX_RESERVE_MICROS as i64;
/// The most tokens one request's end may report.
pub const MAX_TOKENS: i64 = 1_000_000_000;
/// Requests a user's credits are held for at once (reservations and costs not yet in the
/// ledger). Admission refuses more; a reported end beyond it drops the hold expiring first.
pub const MAX_HOLDS_PER_USER: usize = 10_000;

/// One request's admission as the counters take it: its key, the id its reservation is held
/// under (empty: none) and the reservation, micro-USD. A lease ask is one (see [`lease`]), for
/// as many requests as it is granted; the counters' tests admit requests one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit<'a> {
    pub key: &'a str,
    pub request: &'a str,
    pub reserve: u64,
}

/// Why the service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// Redis failed, or is unreachable (see [`crate::redis_link::RedisLink`]).
    #[error("Redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A peer's report with a figure out of bounds (forged or broken): refused, counted nowhere.
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    #[error("counters lock poisoned")]
    Poisoned,
}

type Result<T> = std::result::Result<T, LimitsError>;

/// The limits service.
pub struct Limits {
    counters: Box<dyn Counters>,
    table: RwLock<Table>,
    /// Where a balance the counters do not know (Redis emptied) is read from.
    store: Option<Store>,
    /// How long a reservation is held when its end never comes.
    reserve_ttl: i64,
}

impl Limits {
    pub fn in_memory() -> Limits {
        Limits::new(MemoryCounters::default())
    }

    pub fn new(counters: impl Counters + 'static) -> Limits {
        Limits {
            counters: Box::new(counters),
            table: RwLock::default(),
            store: None,
            reserve_ttl: 600 + RESERVE_MARGIN_SECS,
        }
    }

    /// Limits in Redis at `url` (keys under `prefix`), or in memory without one. Redis is not
    /// needed now: its connection is made on first use and again whenever it was lost.
    pub fn connect(redis_url: Option<&str>, prefix: &str) -> Result<Limits> {
        Ok(match redis_url {
            None => Limits::in_memory(),
            Some(url) => Limits::new(RedisCounters::new(url, prefix)?),
        })
    }

    /// Whether the counters answer now (Redis reachable; memory always).
    pub async fn reachable(&self) -> bool {
        self.counters.reachable().await
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
        Ok(table.lookup(key))
    }

    /// Whether one request may go now; counts it, and holds its reservation, if so (the
    /// counters' own step, which leases take for many requests at once; see [`lease`]).
    pub async fn admit(&self, admit: &Admit<'_>, now: i64) -> Result<Admission> {
        let Some((limits, user)) = self.lookup(admit.key)? else {
            return Ok(Admission::default());
        };
        let ask = policy::ask(
            &*self.counters,
            admit,
            &limits,
            &user,
            now,
            self.reserve_ttl,
        );
        let mut verdict = self.counters.admit(&ask).await?;
        if verdict == Verdict::NoBalance {
            self.load_balance(&limits.user).await?;
            verdict = self.counters.admit(&ask).await?;
            if verdict == Verdict::NoBalance {
                verdict = Verdict::NoCredits;
            }
        }
        Ok(policy::admission(&ask, verdict))
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
        let counters = &*self.counters;
        match policy::end(counters, key, request, &limits, &user, tokens, cost, now) {
            Some(end) => counters.ended(&end).await,
            None => Ok(()),
        }
    }

    /// Spend so far today and this month of each key and user with a cap, from the request log
    /// (the in-memory counters start empty): (key id or user name, today, this month).
    pub async fn restore_spend(
        &self,
        keys: &[(String, i64, i64)],
        users: &[(String, i64, i64)],
        now: i64,
    ) -> Result<()> {
        let counters = &*self.counters;
        for (kind, spend) in [("spend", keys), ("spend-user", users)] {
            for (who, today, this_month) in spend {
                for (total, ttl, amount) in
                    policy::restored_totals(counters, kind, who, *today, *this_month, now)
                {
                    counters.add_totals(&[(total, ttl)], amount, now).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod tests;
