//! Where the limits' counters live: one trait, [`Counters`], with two implementations side by
//! side (in memory for one control plane, in Redis shared by every control plane), and the
//! questions the admission policy asks them.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::Result;

/// A sliding window's state after a request: used, and seconds until the oldest use leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub used: i64,
    pub reset_secs: i64,
}

/// A metered user's part of an admission: the reservation to hold if admitted.
#[derive(Debug)]
pub struct Credit<'a> {
    pub user: &'a str,
    /// Empty: nothing to hold (an older filter's descriptor).
    pub request: &'a str,
    pub reserve: i64,
    /// When the hold stops counting if no end comes.
    pub expires: i64,
    /// A lease's hold (see [`super::lease`]), one per Envoy and key: it grows by at most
    /// `reserve`, by what the balance has spendable beyond every hold (its own included), and
    /// keeps what it held. `false`: an admission, which holds `reserve` while anything is
    /// spendable.
    pub upto: bool,
}

/// A spend cap: refused once its total reached it.
#[derive(Debug)]
pub struct Cap {
    pub total: String,
    pub cap: i64,
    /// Seconds until the period ends.
    pub left: i64,
    pub period: &'static str,
    /// The owner's cap (else the key's).
    pub user: bool,
}

/// A per-minute window: `hits` counted if admitted (0: only checked).
#[derive(Debug)]
pub struct Window {
    pub counter: String,
    pub limit: i64,
    pub hits: i64,
    /// Requests (else tokens).
    pub requests: bool,
}

/// One admission as the counters see it: checked in this order, counted only if all allow.
#[derive(Debug)]
pub struct Ask<'a> {
    pub now: i64,
    pub credit: Option<Credit<'a>>,
    pub caps: Vec<Cap>,
    pub windows: Vec<Window>,
    /// A lease: request windows count as many of their `hits` as they have room for (at
    /// least one), all of them the same number.
    pub partial: bool,
}

/// What the counters found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The user's balance is not in the counters (Redis emptied): read it, then ask again.
    NoBalance,
    NoCredits,
    /// The user has [`super::MAX_HOLDS_PER_USER`] requests held already.
    TooManyHolds,
    /// The cap at this position in [`Ask::caps`] is reached.
    OverCap(usize),
    /// The windows after the request (counted only if `ok`).
    Windows {
        ok: bool,
        states: Vec<WindowState>,
        /// Requests counted in each request window (`hits`, or fewer for a partial ask).
        hits: i64,
        /// Micro-USD held for the credit (its `reserve`; what a lease's hold grew by).
        held: i64,
        /// The least any spend cap has left, micro-USD (`None`: no caps).
        caps_left: Option<i64>,
    },
}

/// A metered user's request ended: its hold becomes its cost (or goes, at no cost).
#[derive(Debug)]
pub struct Settle<'a> {
    pub user: &'a str,
    pub request: &'a str,
}

/// An Envoy's hold for a key (see [`super::lease`]) shrinks by `micros` (never below zero;
/// gone at zero), and is kept until `expires` at least.
#[derive(Debug)]
pub struct Release<'a> {
    pub user: &'a str,
    pub hold: &'a str,
    pub micros: i64,
    pub expires: i64,
}

/// A request's end as the counters see it.
#[derive(Debug)]
pub struct End<'a> {
    pub now: i64,
    /// Token windows to add `tokens` to.
    pub windows: Vec<String>,
    pub tokens: i64,
    /// Spend totals to add `cost` to, with their time to live.
    pub totals: Vec<(String, i64)>,
    pub cost: i64,
    pub hold: Option<Settle<'a>>,
}

/// The counters the limits service keeps: chosen once, when the service is made. Each
/// operation is atomic: concurrent admissions never both take the last unit of a limit.
pub trait Counters: Send + Sync {
    /// What counter names start with (in Redis, the deployment's key prefix).
    fn prefix(&self) -> &str;

    /// A counter's name from its parts, under [`Counters::prefix`].
    fn name(&self, parts: &[&str]) -> String {
        let mut k = String::from(self.prefix());
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// Called for every admission (each request of a limited key): checks the credit, caps
    /// and windows of `ask` in order and, when all allow, counts the request and holds its
    /// reservation, in one step.
    fn admit<'a>(&'a self, ask: &'a Ask<'_>) -> BoxFuture<'a, Result<Verdict>>;

    /// Called when Envoy reports a request's end: its tokens and cost are counted, and its
    /// owner's hold becomes its cost.
    fn ended<'a>(&'a self, end: &'a End<'_>) -> BoxFuture<'a, Result<()>>;

    /// Called when requests' costs reached the ledger: (request id, user). What they held
    /// goes; an end reported later holds nothing.
    fn settle<'a>(
        &'a self,
        settled: &'a [(&'a str, &'a str)],
        now: i64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Called when ledger balances changed (and when one was missing): (user, micro-USD).
    fn set_balances<'a>(&'a self, balances: &'a [(String, i64)]) -> BoxFuture<'a, Result<()>>;

    /// Called at start to restore spend totals: adds `delta` to each total, which lives `ttl`
    /// seconds from `now`: (name, ttl).
    fn add_totals<'a>(
        &'a self,
        totals: &'a [(String, i64)],
        delta: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Called when a lease comes back with requests it did not use: they leave the request
    /// windows they were counted in at `second` (never below zero; nothing if that second
    /// left the window).
    fn give_back<'a>(
        &'a self,
        windows: &'a [String],
        second: i64,
        requests: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Called with each lease ask of a metered user's key: see [`Release`].
    fn release<'a>(&'a self, release: &'a Release<'_>) -> BoxFuture<'a, Result<()>>;

    /// Whether the counters answer now (health checks, start-up).
    fn reachable(&self) -> BoxFuture<'_, bool>;
}

/// Shared counters (a test keeps a handle to look inside).
impl<C: Counters + ?Sized> Counters for Arc<C> {
    fn prefix(&self) -> &str {
        (**self).prefix()
    }
    fn admit<'a>(&'a self, ask: &'a Ask<'_>) -> BoxFuture<'a, Result<Verdict>> {
        (**self).admit(ask)
    }
    fn ended<'a>(&'a self, end: &'a End<'_>) -> BoxFuture<'a, Result<()>> {
        (**self).ended(end)
    }
    fn settle<'a>(
        &'a self,
        settled: &'a [(&'a str, &'a str)],
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).settle(settled, now)
    }
    fn set_balances<'a>(&'a self, balances: &'a [(String, i64)]) -> BoxFuture<'a, Result<()>> {
        (**self).set_balances(balances)
    }
    fn add_totals<'a>(
        &'a self,
        totals: &'a [(String, i64)],
        delta: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).add_totals(totals, delta, now)
    }
    fn give_back<'a>(
        &'a self,
        windows: &'a [String],
        second: i64,
        requests: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).give_back(windows, second, requests, now)
    }
    fn release<'a>(&'a self, release: &'a Release<'_>) -> BoxFuture<'a, Result<()>> {
        (**self).release(release)
    }
    fn reachable(&self) -> BoxFuture<'_, bool> {
        (**self).reachable()
    }
}
