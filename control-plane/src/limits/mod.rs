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
mod counters;
mod memory;
mod policy;
mod redis;
mod service;
mod table;

use std::sync::RwLock;

pub use calendar::{date, period_starts};
pub use counters::{Ask, Cap, Counters, Credit, End, Settle, Verdict, Window, WindowState};
pub use memory::MemoryCounters;
pub use policy::{Admission, Refusal};
pub use redis::RedisCounters;
pub use service::Service;
use switchyard_contract::limits::Admit;
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

    /// Whether a request may go now; counts it, and holds its reservation, if so.
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
mod tests;
