//! The limits' counters in memory: one control plane, nothing shared, lost on
//! restart. Sums saturate and never go below zero; maps keyed by request ids are capped.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use futures::future::{ready, BoxFuture};

use super::counters::{Ask, Counters, End, Release, Verdict, WindowState};
use super::{LimitsError, Result, CHARGE_TTL_SECS, MAX_HOLDS_PER_USER, WINDOW_SECS};

/// Requests remembered as settled before their end was reported, at most (the oldest go
/// first: its end, if it ever comes, then holds its cost until that expires).
const MAX_SETTLED: usize = 100_000;

/// The counters in this process's memory.
#[derive(Default)]
pub struct MemoryCounters(Mutex<Memory>);

impl MemoryCounters {
    /// The counters, locked for one step.
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, Memory>> {
        self.0.lock().map_err(|_| LimitsError::Poisoned)
    }

    /// Runs one step on the counters, at once.
    fn step<'a, T: Send + 'a>(&self, f: impl FnOnce(&mut Memory) -> T) -> BoxFuture<'a, Result<T>> {
        Box::pin(ready(self.lock().map(|mut m| f(&mut m))))
    }
}

impl Counters for MemoryCounters {
    fn prefix(&self) -> &str {
        ""
    }

    fn admit<'a>(&'a self, ask: &'a Ask<'_>) -> BoxFuture<'a, Result<Verdict>> {
        self.step(|m| m.admit(ask))
    }

    fn ended<'a>(&'a self, end: &'a End<'_>) -> BoxFuture<'a, Result<()>> {
        self.step(|m| m.ended(end))
    }

    fn settle<'a>(
        &'a self,
        settled: &'a [(&'a str, &'a str)],
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        self.step(|m| {
            for (request, user) in settled {
                m.settle(request, user, now);
            }
        })
    }

    fn set_balances<'a>(&'a self, balances: &'a [(String, i64)]) -> BoxFuture<'a, Result<()>> {
        self.step(|m| {
            for (user, b) in balances {
                m.set_balance(user, *b);
            }
        })
    }

    fn add_totals<'a>(
        &'a self,
        totals: &'a [(String, i64)],
        delta: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        self.step(|m| m.add_totals(totals, delta, now))
    }

    fn give_back<'a>(
        &'a self,
        windows: &'a [String],
        second: i64,
        requests: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        self.step(|m| m.give_back(windows, second, requests, now))
    }

    fn release<'a>(&'a self, release: &'a Release<'_>) -> BoxFuture<'a, Result<()>> {
        self.step(|m| m.release(release))
    }

    fn reachable(&self) -> BoxFuture<'_, bool> {
        Box::pin(ready(true))
    }
}

/// Whether the windows admit `ask` at these states, and how many requests each request window
/// counts: its `hits`, or (partial) as many of them as every request window has room for.
pub(super) fn granted_hits(ask: &Ask<'_>, states: &[WindowState]) -> (bool, i64) {
    let mut ok = true;
    let mut hits = ask.windows.iter().map(|w| w.hits).max().unwrap_or(0);
    for (w, state) in ask.windows.iter().zip(states) {
        if w.hits > 0 {
            let room = w.limit.saturating_sub(state.used);
            if ask.partial {
                hits = hits.min(room);
            } else if state.used.saturating_add(w.hits) > w.limit {
                ok = false;
            }
        } else if state.used >= w.limit {
            ok = false;
        }
    }
    if ask.windows.iter().any(|w| w.hits > 0) && hits <= 0 {
        ok = false;
    }
    (ok, hits.max(0))
}

/// The counters' maps: a fast seeded hash, not SipHash (every stored record of a metered user
/// looks up its account and hold here; SipHash was a twentieth of the ingest's CPU).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The counters' state.
#[derive(Default)]
pub struct Memory {
    /// Per window: (second, count), oldest first.
    windows: Map<String, Vec<(i64, i64)>>,
    /// Spend per key or user and day or month: (micro-USD, expires at); the names carry the
    /// period.
    totals: Map<String, (i64, i64)>,
    /// Credits per user (users of the limits table and of the ledger only).
    accounts: Map<String, Account>,
    /// Requests whose record reached the ledger before Envoy reported their end (that end then
    /// holds nothing): request id -> expires at; and the same in the order they came.
    /// (Every record of a metered user's request passes here: see [`RequestKey`].)
    settled: Map<RequestKey, i64>,
    settled_order: VecDeque<(i64, RequestKey)>,
    /// When expired totals, windows and holds are next swept.
    next_sweep: i64,
}

/// A request id as a map key. The filter's ids (32 lower-case hex digits) are the number they
/// spell, so remembering one allocates nothing (every stored record of a metered user's
/// request is remembered; a copy of each id was a fifth of that); any other id keeps its text.
/// The two kinds never meet: a number comes only from such an id, and back to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RequestKey {
    Hex(u128),
    Text(Box<str>),
}

impl RequestKey {
    fn of(request: &str) -> RequestKey {
        let hex = request.len() == 32
            && request
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match hex
            .then(|| u128::from_str_radix(request, 16).ok())
            .flatten()
        {
            Some(n) => RequestKey::Hex(n),
            None => RequestKey::Text(request.into()),
        }
    }
}

/// One user's credits as the counters see them.
#[derive(Default)]
struct Account {
    /// The ledger balance (`None`: not known yet, read from the store).
    balance: Option<i64>,
    /// The sum of `holds`.
    held: i64,
    holds: Map<String, Hold>,
    /// (expires at, request id) of every hold, soonest first.
    expiry: BTreeSet<(i64, String)>,
}

/// What a request holds of its owner's credits.
#[derive(Debug, Clone, Copy)]
struct Hold {
    micros: i64,
    expires: i64,
    /// Its end was reported: this is its cost (else its reservation).
    ended: bool,
}

impl Account {
    /// Holds whose time is up stop counting.
    fn expire(&mut self, now: i64) {
        while self.expiry.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, request)) = self.expiry.pop_first() {
                if let Some(h) = self.holds.remove(&request) {
                    self.held = (self.held.saturating_sub(h.micros)).max(0);
                }
            }
        }
    }

    fn release(&mut self, request: &str) -> Option<Hold> {
        let h = self.holds.remove(request)?;
        self.expiry.remove(&(h.expires, request.to_owned()));
        self.held = (self.held.saturating_sub(h.micros)).max(0);
        Some(h)
    }

    /// Holds `hold` for `request`, instead of what it held; beyond the cap the hold expiring
    /// first goes.
    fn hold(&mut self, request: &str, hold: Hold) {
        self.release(request);
        if self.holds.len() >= MAX_HOLDS_PER_USER {
            if let Some((_, first)) = self.expiry.first().cloned() {
                self.release(&first);
            }
        }
        self.expiry.insert((hold.expires, request.to_owned()));
        self.holds.insert(request.to_owned(), hold);
        self.held = self.held.saturating_add(hold.micros);
    }
}

impl Memory {
    fn admit(&mut self, ask: &Ask<'_>) -> Verdict {
        let now = ask.now;
        self.sweep(now);
        let mut held = 0;
        if let Some(credit) = &ask.credit {
            let account = self.accounts.entry(credit.user.to_owned()).or_default();
            account.expire(now);
            let Some(balance) = account.balance else {
                return Verdict::NoBalance;
            };
            let spendable = balance.saturating_sub(account.held);
            if spendable <= 0 {
                return Verdict::NoCredits;
            }
            held = if credit.upto {
                credit.reserve.min(spendable)
            } else {
                credit.reserve
            };
            if !credit.request.is_empty()
                && account.holds.len() >= MAX_HOLDS_PER_USER
                && !account.holds.contains_key(credit.request)
            {
                return Verdict::TooManyHolds;
            }
        }
        let mut caps_left: Option<i64> = None;
        for (i, cap) in ask.caps.iter().enumerate() {
            let spent = self.totals.get(&cap.total).map_or(0, |(spent, _)| *spent);
            if spent >= cap.cap {
                return Verdict::OverCap(i);
            }
            let left = cap.cap.saturating_sub(spent);
            caps_left = Some(caps_left.map_or(left, |l| l.min(left)));
        }
        let mut states = Vec::with_capacity(ask.windows.len());
        for w in &ask.windows {
            let buckets = self.windows.entry(w.counter.clone()).or_default();
            buckets.retain(|(s, _)| *s > now - WINDOW_SECS);
            let used = buckets
                .iter()
                .fold(0i64, |sum, (_, n)| sum.saturating_add(*n));
            let oldest = buckets.first().map_or(now, |(s, _)| *s);
            states.push(WindowState {
                used,
                reset_secs: oldest + WINDOW_SECS - now,
            });
        }
        let (ok, hits) = granted_hits(ask, &states);
        if ok {
            for (w, state) in ask.windows.iter().zip(&mut states) {
                if w.hits > 0 {
                    self.add(&w.counter, now, hits);
                    state.used = state.used.saturating_add(hits);
                }
            }
            if let Some(credit) = ask.credit.as_ref().filter(|c| !c.request.is_empty()) {
                if let Some(account) = self.accounts.get_mut(credit.user) {
                    // A lease's hold grows by what it was granted.
                    let kept = if credit.upto {
                        account.holds.get(credit.request).map_or(0, |h| h.micros)
                    } else {
                        0
                    };
                    account.hold(
                        credit.request,
                        Hold {
                            micros: kept.saturating_add(held),
                            expires: credit.expires,
                            ended: false,
                        },
                    );
                }
            }
        }
        Verdict::Windows {
            ok,
            states,
            hits,
            held: if ok { held } else { 0 },
            caps_left,
        }
    }

    /// A lease's hold shrinks, and is kept longer.
    fn release(&mut self, r: &Release<'_>) {
        let Some(account) = self.accounts.get_mut(r.user) else {
            return;
        };
        let Some(h) = account.release(r.hold) else {
            return;
        };
        let left = h.micros.saturating_sub(r.micros.max(0));
        if left > 0 {
            account.hold(
                r.hold,
                Hold {
                    micros: left,
                    expires: h.expires.max(r.expires),
                    ended: false,
                },
            );
        }
    }

    /// Takes `requests` back out of each window's bucket at `second`.
    fn give_back(&mut self, windows: &[String], second: i64, requests: i64, now: i64) {
        if second <= now - WINDOW_SECS || requests <= 0 {
            return;
        }
        for name in windows {
            if let Some(buckets) = self.windows.get_mut(name) {
                if let Some((_, n)) = buckets.iter_mut().find(|(s, _)| *s == second) {
                    *n = n.saturating_sub(requests).max(0);
                }
            }
        }
    }

    fn add(&mut self, counter: &str, now: i64, hits: i64) {
        let buckets = self.windows.entry(counter.to_owned()).or_default();
        match buckets.last_mut() {
            Some((s, n)) if *s == now => *n = n.saturating_add(hits),
            _ => buckets.push((now, hits)),
        }
    }

    fn ended(&mut self, end: &End<'_>) {
        let now = end.now;
        self.sweep(now);
        for w in &end.windows {
            self.add(w, now, end.tokens);
        }
        self.add_totals(&end.totals, end.cost, now);
        let Some(settle) = &end.hold else {
            return;
        };
        let account = self.accounts.entry(settle.user.to_owned()).or_default();
        if self
            .settled
            .remove(&RequestKey::of(settle.request))
            .is_some()
            || end.cost == 0
        {
            // Its record came first (the balance has its cost), or it cost nothing.
            account.release(settle.request);
            return;
        }
        account.hold(
            settle.request,
            Hold {
                micros: end.cost,
                expires: now.saturating_add(CHARGE_TTL_SECS),
                ended: true,
            },
        );
    }

    /// A request's cost reached the ledger: what it held goes; if its end has not been
    /// reported yet, that end is remembered to hold nothing.
    fn settle(&mut self, request: &str, user: &str, now: i64) {
        let hold = self.accounts.get_mut(user).and_then(|a| a.release(request));
        if hold.is_some_and(|h| h.ended) {
            return;
        }
        let expires = now.saturating_add(CHARGE_TTL_SECS);
        let request = RequestKey::of(request);
        self.settled.insert(request.clone(), expires);
        self.settled_order.push_back((expires, request));
        self.forget_settled(now);
    }

    fn set_balance(&mut self, user: &str, balance: i64) {
        self.accounts.entry(user.to_owned()).or_default().balance = Some(balance);
    }

    fn add_totals(&mut self, totals: &[(String, i64)], delta: i64, now: i64) {
        if delta <= 0 {
            return;
        }
        for (name, ttl) in totals {
            let total = self
                .totals
                .entry(name.clone())
                .or_insert((0, now.saturating_add(*ttl)));
            total.0 = total.0.saturating_add(delta);
        }
    }

    /// Settled requests past their time, or beyond the cap, are forgotten (oldest first).
    fn forget_settled(&mut self, now: i64) {
        while let Some((expires, request)) = self.settled_order.front() {
            if *expires > now && self.settled_order.len() <= MAX_SETTLED {
                break;
            }
            if self.settled.get(request) == Some(expires) {
                self.settled.remove(request);
            }
            self.settled_order.pop_front();
        }
    }

    /// Forgets what expired: totals of past periods, empty windows, holds and settled requests
    /// past their time; once a minute at most.
    fn sweep(&mut self, now: i64) {
        if now < self.next_sweep {
            return;
        }
        self.totals.retain(|_, (_, expires)| *expires > now);
        self.windows.retain(|_, buckets| {
            buckets.retain(|(s, _)| *s > now - WINDOW_SECS);
            !buckets.is_empty()
        });
        for account in self.accounts.values_mut() {
            account.expire(now);
        }
        self.accounts
            .retain(|_, a| a.balance.is_some() || !a.holds.is_empty());
        self.forget_settled(now);
        self.next_sweep = now + 60;
    }

    #[cfg(test)]
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        let holds = self.accounts.values().map(|a| a.holds.len()).sum();
        (
            self.totals.len(),
            holds,
            self.settled.len(),
            self.settled_order.len(),
        )
    }

    #[cfg(test)]
    pub fn held(&self, user: &str) -> i64 {
        self.accounts.get(user).map_or(0, |a| a.held)
    }
}

#[cfg(test)]
mod key_tests {
    use super::RequestKey;

    #[test]
    fn the_filters_ids_are_numbers_and_every_other_id_keeps_its_text() {
        let id = "0196f3a2b4c00123456789abcdef0123";
        assert_eq!(
            RequestKey::of(id),
            RequestKey::Hex(u128::from_str_radix(id, 16).unwrap())
        );
        // Upper case, other lengths and other letters keep their text: ids differing only in
        // case stay two requests.
        for other in [
            "0196F3A2B4C00123456789ABCDEF0123",
            "0196f3a2b4c00123456789abcdef012",
            "0196f3a2b4c00123456789abcdef01234",
            "+196f3a2b4c00123456789abcdef0123",
            "r1",
            "",
        ] {
            assert_eq!(RequestKey::of(other), RequestKey::Text(other.into()));
        }
        assert_ne!(
            RequestKey::of("00000000000000000000000000000001"),
            RequestKey::of("1")
        );
    }
}
