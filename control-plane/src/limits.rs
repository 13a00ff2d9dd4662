//! Global limits, held for every Envoy at once: the control plane is Envoy's rate limit service
//! (`envoy.service.ratelimit.v3`), with its counters in Redis (shared by every control plane)
//! or, without Redis, in memory.
//!
//! A request of a limited key (see the filter's `LIMITED_HEADER`) is asked about before it goes
//! upstream (descriptor `admit = "{key} {api}"`): credits, spend caps per day and month, then
//! requests and tokens per minute of the key and of its owner, in one atomic step (a refused
//! request counts nowhere). When its stream is done, Envoy reports it (`charge = "{key}
//! {request id} {tokens}"`, its cost in micro-USD as the descriptor's hits).
//!
//! Per-minute limits are sliding windows of one-second buckets: within any 60 seconds, at most
//! `rpm` requests are admitted. Tokens are counted when a response ends, so a request is
//! admitted while the tokens of the last minute are below `tpm`, and may pass it by its own.
//!
//! Credits: a user's spendable amount is the ledger balance less the cost of requests that
//! ended but are not yet in the ledger (reported at stream done, settled when their record is
//! stored; each request id counts once whichever comes first). A request is admitted while that
//! is above zero. So a balance is overshot by at most the cost of the requests admitted before
//! it ran out and not yet reported: those in flight at that moment.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

/// Seconds in a per-minute window.
const WINDOW_SECS: i64 = 60;
/// How long a request's charge is remembered (a record arrives well within it).
const CHARGE_TTL_SECS: i64 = 3_600;

/// One key's limits and owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub user: String,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub daily_micros: Option<i64>,
    pub monthly_micros: Option<i64>,
}

/// One user's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
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
                || self
                    .users
                    .get(&k.user)
                    .is_some_and(|u| u.rpm.is_some() || u.tpm.is_some() || u.metered)
        })
    }
}

/// A sliding window's state after a request: used, and seconds until the oldest use leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub used: i64,
    pub reset_secs: i64,
}

/// Where the counters live.
pub enum Counters {
    Memory(Box<Mutex<Memory>>),
    Redis {
        conn: crate::redis_link::RedisLink,
        prefix: String,
    },
}

/// The in-memory counters (one control plane, nothing shared, lost on restart).
#[derive(Default)]
pub struct Memory {
    /// Per window: (second, count), oldest first.
    windows: HashMap<String, Vec<(i64, i64)>>,
    /// Spend per key and day or month.
    /// Spend per key and day or month: (micro-USD, expires at); the names carry the period.
    totals: HashMap<String, (i64, i64)>,
    /// Request id -> (reported at stream done and not yet settled, expires at): the first of a
    /// request's two reports, until the second comes.
    charges: HashMap<String, (bool, i64)>,
    /// When expired charges are next swept.
    next_sweep: i64,
    unsettled: HashMap<String, i64>,
    balances: HashMap<String, i64>,
}

/// Admits atomically: every window checked, and counted only if all allow.
/// KEYS: windows. ARGV: now, window, then (limit, hits) per window (hits 0: only checked).
/// Returns allowed (0/1), then (used, oldest second) per window.
const ADMIT_LUA: &str = r#"
local now = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local used, oldest, ok = {}, {}, 1
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[1 + 2 * i])
  local hits = tonumber(ARGV[2 + 2 * i])
  local all = redis.call('HGETALL', key)
  local sum, first = 0, now
  for j = 1, #all, 2 do
    local s = tonumber(all[j])
    if s <= now - win then
      redis.call('HDEL', key, all[j])
    else
      sum = sum + tonumber(all[j + 1])
      if s < first then first = s end
    end
  end
  used[i], oldest[i] = sum, first
  if (hits > 0 and sum + hits > limit) or (hits == 0 and sum >= limit) then ok = 0 end
end
local out = {ok}
for i, key in ipairs(KEYS) do
  local hits = tonumber(ARGV[2 + 2 * i])
  if ok == 1 and hits > 0 then
    redis.call('HINCRBY', key, now, hits)
    redis.call('EXPIRE', key, win + 1)
    used[i] = used[i] + hits
  end
  table.insert(out, used[i])
  table.insert(out, oldest[i])
end
return out
"#;

/// A request's charge, once: KEYS charge, unsettled; ARGV cost, source (`end` | `ledger`), ttl.
/// The charge key remembers the first report until the second comes (then it goes).
const CHARGE_LUA: &str = r#"
local v = redis.call('GET', KEYS[1])
if ARGV[2] == 'end' then
  if not v then
    redis.call('SET', KEYS[1], 'end', 'EX', ARGV[3])
    redis.call('INCRBY', KEYS[2], ARGV[1])
  end
elseif v == 'end' then
  redis.call('DEL', KEYS[1])
  if redis.call('DECRBY', KEYS[2], ARGV[1]) < 0 then redis.call('SET', KEYS[2], 0) end
elseif not v then
  redis.call('SET', KEYS[1], 'settled', 'EX', ARGV[3])
end
return 1
"#;

/// Where a charge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Envoy reported the request's end.
    End,
    /// Its record reached the ledger.
    Ledger,
}

impl Memory {
    fn admit(&mut self, now: i64, windows: &[(String, i64, i64)]) -> (bool, Vec<WindowState>) {
        let mut states = Vec::with_capacity(windows.len());
        let mut ok = true;
        for (key, limit, hits) in windows {
            let buckets = self.windows.entry(key.clone()).or_default();
            buckets.retain(|(s, _)| *s > now - WINDOW_SECS);
            let used: i64 = buckets.iter().map(|(_, n)| n).sum();
            let oldest = buckets.first().map_or(now, |(s, _)| *s);
            if (*hits > 0 && used + hits > *limit) || (*hits == 0 && used >= *limit) {
                ok = false;
            }
            states.push(WindowState {
                used,
                reset_secs: oldest + WINDOW_SECS - now,
            });
        }
        if ok {
            for ((key, _, hits), state) in windows.iter().zip(&mut states) {
                if *hits > 0 {
                    self.add(key, now, *hits);
                    state.used += hits;
                }
            }
        }
        (ok, states)
    }

    fn add(&mut self, key: &str, now: i64, hits: i64) {
        let buckets = self.windows.entry(key.to_owned()).or_default();
        match buckets.last_mut() {
            Some((s, n)) if *s == now => *n += hits,
            _ => buckets.push((now, hits)),
        }
    }

    /// Forgets expired charges and totals of past periods, once a minute at most.
    fn sweep(&mut self, now: i64) {
        if now >= self.next_sweep {
            self.charges.retain(|_, (_, expires)| *expires > now);
            self.totals.retain(|_, (_, expires)| *expires > now);
            self.next_sweep = now + 60;
        }
    }

    fn charge(&mut self, request: &str, user: &str, cost: i64, source: Source, now: i64) {
        self.sweep(now);
        let expires = now + CHARGE_TTL_SECS;
        let state = self.charges.get(request).map(|(reported, _)| *reported);
        match (source, state) {
            (Source::End, None) => {
                self.charges.insert(request.to_owned(), (true, expires));
                *self.unsettled.entry(user.to_owned()).or_default() += cost;
            }
            (Source::Ledger, Some(true)) => {
                self.charges.remove(request);
                let n = self.unsettled.entry(user.to_owned()).or_default();
                *n = (*n - cost).max(0);
            }
            (Source::Ledger, None) => {
                self.charges.insert(request.to_owned(), (false, expires));
            }
            (Source::End, Some(false)) => {
                self.charges.remove(request);
            }
            _ => {}
        }
    }
}

/// The in-memory counters, locked.
fn lock(m: &Mutex<Memory>) -> anyhow::Result<std::sync::MutexGuard<'_, Memory>> {
    m.lock()
        .map_err(|_| anyhow::anyhow!("counters lock poisoned"))
}

impl Counters {
    fn key(&self, parts: &[&str]) -> String {
        let prefix = match self {
            Counters::Memory(_) => "",
            Counters::Redis { prefix, .. } => prefix.as_str(),
        };
        let mut k = String::from(prefix);
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    async fn admit(
        &self,
        now: i64,
        windows: &[(String, i64, i64)],
    ) -> anyhow::Result<(bool, Vec<WindowState>)> {
        match self {
            Counters::Memory(m) => Ok(lock(m)?.admit(now, windows)),
            Counters::Redis { conn, .. } => {
                let script = redis::Script::new(ADMIT_LUA);
                let mut call = script.prepare_invoke();
                for (key, _, _) in windows {
                    call.key(key);
                }
                call.arg(now).arg(WINDOW_SECS);
                for (_, limit, hits) in windows {
                    call.arg(*limit).arg(*hits);
                }
                let out: Vec<i64> = call.invoke_async(&mut conn.clone()).await?;
                let states = out[1..]
                    .chunks(2)
                    .map(|c| WindowState {
                        used: c[0],
                        reset_secs: c[1] + WINDOW_SECS - now,
                    })
                    .collect();
                Ok((out.first() == Some(&1), states))
            }
        }
    }

    /// Adds to windows without a limit (tokens counted when a response ends).
    async fn add(&self, now: i64, keys: &[String], hits: i64) -> anyhow::Result<()> {
        match self {
            Counters::Memory(m) => {
                let mut m = lock(m)?;
                for k in keys {
                    m.add(k, now, hits);
                }
                Ok(())
            }
            Counters::Redis { conn, .. } => {
                let mut pipe = redis::pipe();
                for k in keys {
                    pipe.hincr(k, now, hits)
                        .ignore()
                        .expire(k, WINDOW_SECS + 1)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn.clone()).await?;
                Ok(())
            }
        }
    }

    async fn get_totals(&self, keys: &[String]) -> anyhow::Result<Vec<i64>> {
        match self {
            Counters::Memory(m) => {
                let m = lock(m)?;
                Ok(keys
                    .iter()
                    .map(|k| m.totals.get(k).map_or(0, |(v, _)| *v))
                    .collect())
            }
            Counters::Redis { conn, .. } => {
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let values: Vec<Option<i64>> = redis::cmd("MGET")
                    .arg(keys)
                    .query_async(&mut conn.clone())
                    .await?;
                Ok(values.into_iter().map(Option::unwrap_or_default).collect())
            }
        }
    }

    /// Adds `delta` to each total, which lives `ttl` seconds from `now`: (name, ttl).
    async fn add_totals(
        &self,
        entries: &[(String, i64)],
        delta: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        match self {
            Counters::Memory(m) => {
                let mut m = lock(m)?;
                m.sweep(now);
                for (k, ttl) in entries {
                    let total = m.totals.entry(k.clone()).or_insert((0, now + ttl));
                    total.0 += delta;
                }
                Ok(())
            }
            Counters::Redis { conn, .. } => {
                let mut pipe = redis::pipe();
                for (k, ttl) in entries {
                    pipe.incr(k, delta).ignore().expire(k, *ttl).ignore();
                }
                pipe.query_async::<()>(&mut conn.clone()).await?;
                Ok(())
            }
        }
    }

    async fn charge(
        &self,
        request: &str,
        user: &str,
        cost: i64,
        source: Source,
        now: i64,
    ) -> anyhow::Result<()> {
        match self {
            Counters::Memory(m) => {
                lock(m)?.charge(request, user, cost, source, now);
                Ok(())
            }
            Counters::Redis { conn, .. } => {
                let source = match source {
                    Source::End => "end",
                    Source::Ledger => "ledger",
                };
                redis::Script::new(CHARGE_LUA)
                    .key(self.key(&["charge", request]))
                    .key(self.key(&["unsettled", user]))
                    .arg(cost)
                    .arg(source)
                    .arg(CHARGE_TTL_SECS)
                    .invoke_async::<i64>(&mut conn.clone())
                    .await?;
                Ok(())
            }
        }
    }

    /// Many ledger reports at once (one round trip to Redis).
    async fn settle_all(&self, charges: &[(String, String, i64)], now: i64) -> anyhow::Result<()> {
        match self {
            Counters::Memory(m) => {
                let mut m = lock(m)?;
                for (request, user, cost) in charges {
                    m.charge(request, user, *cost, Source::Ledger, now);
                }
                Ok(())
            }
            Counters::Redis { conn, .. } => {
                if charges.is_empty() {
                    return Ok(());
                }
                let script = redis::Script::new(CHARGE_LUA);
                let mut pipe = redis::pipe();
                for (request, user, cost) in charges {
                    pipe.invoke_script(
                        script
                            .key(self.key(&["charge", request]))
                            .key(self.key(&["unsettled", user]))
                            .arg(*cost)
                            .arg("ledger")
                            .arg(CHARGE_TTL_SECS),
                    )
                    .ignore();
                }
                pipe.query_async::<()>(&mut conn.clone()).await?;
                Ok(())
            }
        }
    }

    /// (ledger balance, unsettled) of a user; the balance `None` if unknown.
    async fn spendable(&self, user: &str) -> anyhow::Result<(Option<i64>, i64)> {
        match self {
            Counters::Memory(m) => {
                let m = lock(m)?;
                Ok((
                    m.balances.get(user).copied(),
                    m.unsettled.get(user).copied().unwrap_or(0),
                ))
            }
            Counters::Redis { conn, .. } => {
                let (balance, unsettled): (Option<i64>, Option<i64>) = redis::cmd("MGET")
                    .arg(self.key(&["balance", user]))
                    .arg(self.key(&["unsettled", user]))
                    .query_async(&mut conn.clone())
                    .await?;
                Ok((balance, unsettled.unwrap_or(0)))
            }
        }
    }

    async fn set_balances(&self, balances: &[(String, i64)]) -> anyhow::Result<()> {
        match self {
            Counters::Memory(m) => {
                let mut m = lock(m)?;
                for (user, b) in balances {
                    m.balances.insert(user.clone(), *b);
                }
                Ok(())
            }
            Counters::Redis { conn, .. } => {
                if balances.is_empty() {
                    return Ok(());
                }
                let mut pipe = redis::pipe();
                for (user, b) in balances {
                    pipe.set(self.key(&["balance", user]), *b).ignore();
                }
                pipe.query_async::<()>(&mut conn.clone()).await?;
                Ok(())
            }
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

/// The limits service.
pub struct Limits {
    counters: Counters,
    table: RwLock<Table>,
    /// Where a balance the counters do not know (Redis emptied) is read from.
    store: Option<crate::store::Store>,
}

/// Seconds until the next UTC day and month begin, and their names (`20261126`, `202611`).
fn calendar(now: i64) -> (String, i64, String, i64) {
    let days = now.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let next_day = (days + 1) * 86_400 - now;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next_month = days_from_civil(ny, nm, 1) * 86_400 - now;
    (
        format!("{y:04}{m:02}{d:02}"),
        next_day,
        format!("{y:04}{m:02}"),
        next_month,
    )
}

/// A day count since 1970-01-01 as `YYYY-MM-DD`.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// When the current UTC day and month began (Unix seconds).
pub fn period_starts(now: i64) -> (i64, i64) {
    let days = now.div_euclid(86_400);
    let (y, m, _) = civil_from_days(days);
    (days * 86_400, days_from_civil(y, m, 1) * 86_400)
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What admission found: a refusal, or the windows for the `x-ratelimit-*` headers.
#[derive(Debug, Default)]
pub struct Admission {
    pub refusal: Option<Refusal>,
    /// (limit, state) of the tightest request and token windows.
    pub requests: Option<(i64, WindowState)>,
    pub tokens: Option<(i64, WindowState)>,
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
        }
    }

    /// Limits from Redis at `url` (keys under `prefix`), or in memory without one.
    pub async fn connect(redis_url: Option<&str>, prefix: &str) -> anyhow::Result<Limits> {
        let counters = match redis_url {
            None => Counters::Memory(Box::default()),
            Some(url) => {
                // Connected on first use: Redis down at start-up does not stop the control plane.
                let conn = crate::redis_link::RedisLink::open(url)?;
                Counters::Redis {
                    conn,
                    prefix: prefix.into(),
                }
            }
        };
        Ok(Limits::new(counters))
    }

    /// Reads balances the counters lack from `store`.
    pub fn with_store(mut self, store: crate::store::Store) -> Limits {
        self.store = Some(store);
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
            tracing::error!("credit balances not shared: {e:#}");
        }
    }

    /// Requests whose cost reached the ledger: (request id, user, cost).
    pub async fn settled(&self, charges: &[(String, String, i64)], now: i64) {
        if let Err(e) = self.counters.settle_all(charges, now).await {
            tracing::error!("charges not settled: {e:#}");
        }
    }

    /// A key's limits and its owner's (`None`: a key without any).
    fn lookup(&self, key: &str) -> anyhow::Result<Option<(KeyLimits, UserLimits)>> {
        let table = self
            .table
            .read()
            .map_err(|_| anyhow::anyhow!("table lock poisoned"))?;
        Ok(table.keys.get(key).map(|k| {
            let user = table.users.get(&k.user).cloned().unwrap_or_default();
            (k.clone(), user)
        }))
    }

    /// Whether a request of `key` may go now; counts it if so.
    pub async fn admit(&self, key: &str, now: i64) -> anyhow::Result<Admission> {
        let Some((limits, user)) = self.lookup(key)? else {
            return Ok(Admission::default());
        };
        let c = &self.counters;
        if user.metered {
            let (balance, unsettled) = c.spendable(&limits.user).await?;
            let balance = match (balance, &self.store) {
                (Some(b), _) => b,
                (None, Some(store)) => {
                    let b = match store.get_account(&limits.user).await {
                        Ok(a) => a.balance_micros,
                        Err(crate::store::StoreError::NotFound) => 0,
                        Err(e) => return Err(e.into()),
                    };
                    c.set_balances(&[(limits.user.clone(), b)]).await?;
                    b
                }
                (None, None) => 0,
            };
            let spendable = balance - unsettled;
            if spendable <= 0 {
                return Ok(Admission {
                    refusal: Some(Refusal {
                        code: "insufficient_credits",
                        message: "The credit balance of this key's owner is used up; add credits to continue.".into(),
                        retry_after: None,
                    }),
                    ..Admission::default()
                });
            }
        }
        let (day, day_left, month, month_left) = calendar(now);
        let caps = [
            (
                limits.daily_micros,
                c.key(&["spend", key, &day]),
                day_left,
                "day",
            ),
            (
                limits.monthly_micros,
                c.key(&["spend", key, &month]),
                month_left,
                "month",
            ),
        ];
        let wanted: Vec<String> = caps
            .iter()
            .filter(|(cap, ..)| cap.is_some())
            .map(|(_, k, ..)| k.clone())
            .collect();
        let spent = c.get_totals(&wanted).await?;
        let mut spent = spent.into_iter();
        for (cap, _, left, period) in &caps {
            if let Some(cap) = cap {
                if spent.next().unwrap_or(0) >= *cap {
                    return Ok(Admission {
                        refusal: Some(Refusal {
                            code: "budget_exceeded",
                            message: format!(
                                "This key has spent its budget for the {period} ({} USD).",
                                crate::domain::micros_to_usd(*cap)
                            ),
                            retry_after: Some(*left),
                        }),
                        ..Admission::default()
                    });
                }
            }
        }
        // Windows: (counter, limit, hits), requests counted now, tokens only checked.
        let mut windows = Vec::new();
        let mut kinds = Vec::new();
        for (who, id, rpm, tpm) in [
            ("key", key, limits.rpm, limits.tpm),
            ("user", limits.user.as_str(), user.rpm, user.tpm),
        ] {
            if let Some(rpm) = rpm {
                windows.push((c.key(&["rpm", who, id]), rpm, 1));
                kinds.push(true);
            }
            if let Some(tpm) = tpm {
                windows.push((c.key(&["tpm", who, id]), tpm, 0));
                kinds.push(false);
            }
        }
        let mut admission = Admission::default();
        if windows.is_empty() {
            return Ok(admission);
        }
        let (ok, states) = c.admit(now, &windows).await?;
        // The tightest window of each kind: the one with the least left.
        for ((_, limit, _), (requests, state)) in windows.iter().zip(kinds.iter().zip(&states)) {
            let slot = if *requests {
                &mut admission.requests
            } else {
                &mut admission.tokens
            };
            let left = limit - state.used;
            if slot.is_none_or(|(l, s)| l - s.used > left) {
                *slot = Some((*limit, *state));
            }
        }
        if !ok {
            // The first window that is full says why.
            let full = windows.iter().zip(kinds.iter().zip(&states)).find(
                |((_, limit, hits), (_, state))| {
                    if *hits > 0 {
                        state.used + hits > *limit
                    } else {
                        state.used >= *limit
                    }
                },
            );
            let (requests, reset) = full.map_or((true, 1), |(_, (r, s))| (*r, s.reset_secs));
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
        Ok(admission)
    }

    /// A request ended: its tokens count against per-minute limits, its cost against spend
    /// caps and credits.
    pub async fn ended(
        &self,
        key: &str,
        request: &str,
        tokens: i64,
        cost: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        let Some((limits, user)) = self.lookup(key)? else {
            return Ok(());
        };
        let c = &self.counters;
        if tokens > 0 {
            let mut windows = Vec::new();
            if limits.tpm.is_some() {
                windows.push(c.key(&["tpm", "key", key]));
            }
            if user.tpm.is_some() {
                windows.push(c.key(&["tpm", "user", &limits.user]));
            }
            if !windows.is_empty() {
                c.add(now, &windows, tokens).await?;
            }
        }
        if cost > 0 {
            let (day, day_left, month, month_left) = calendar(now);
            let mut totals = Vec::new();
            if limits.daily_micros.is_some() {
                totals.push((c.key(&["spend", key, &day]), day_left + 3_600));
            }
            if limits.monthly_micros.is_some() {
                totals.push((c.key(&["spend", key, &month]), month_left + 3_600));
            }
            if !totals.is_empty() {
                c.add_totals(&totals, cost, now).await?;
            }
            if user.metered {
                c.charge(request, &limits.user, cost, Source::End, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// Spend so far today and this month of each key with a cap, from the request log (the
    /// in-memory counters start empty).
    pub async fn restore_spend(
        &self,
        spend: &[(String, i64, i64)],
        now: i64,
    ) -> anyhow::Result<()> {
        let (day, day_left, month, month_left) = calendar(now);
        let c = &self.counters;
        for (key, today, this_month) in spend {
            if *today > 0 {
                let k = c.key(&["spend", key, &day]);
                c.add_totals(&[(k, day_left + 3_600)], *today, now).await?;
            }
            if *this_month > 0 {
                let k = c.key(&["spend", key, &month]);
                c.add_totals(&[(k, month_left + 3_600)], *this_month, now)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The descriptors' entries as (key, value) pairs.
fn entries(d: &RateLimitDescriptor) -> impl Iterator<Item = (&str, &str)> {
    d.entries.iter().map(|e| (e.key.as_str(), e.value.as_str()))
}

fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// The error body of a refusal in the client API's shape.
fn error_body(refusal: &Refusal, anthropic: bool) -> Vec<u8> {
    let kind = if refusal.code == "insufficient_credits" {
        "insufficient_quota"
    } else {
        "rate_limit_error"
    };
    let body = if anthropic {
        serde_json::json!({"type": "error", "error": {"type": "rate_limit_error", "message": refusal.message}})
    } else {
        serde_json::json!({"error": {"message": refusal.message, "type": kind, "param": null, "code": refusal.code}})
    };
    body.to_string().into_bytes()
}

/// `x-ratelimit-*` headers in OpenAI's names.
fn window_headers(admission: &Admission, out: &mut Vec<HeaderValue>) {
    for (kind, window) in [
        ("requests", admission.requests),
        ("tokens", admission.tokens),
    ] {
        if let Some((limit, state)) = window {
            out.push(header(
                &format!("x-ratelimit-limit-{kind}"),
                limit.to_string(),
            ));
            out.push(header(
                &format!("x-ratelimit-remaining-{kind}"),
                (limit - state.used).max(0).to_string(),
            ));
            out.push(header(
                &format!("x-ratelimit-reset-{kind}"),
                format!("{}s", state.reset_secs.max(0)),
            ));
        }
    }
}

/// The gRPC rate limit service over [`Limits`].
pub struct Service(pub std::sync::Arc<Limits>);

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let req = request.into_inner();
        let now = crate::store::now();
        let mut response = RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..Default::default()
        };
        for d in &req.descriptors {
            tracing::debug!(descriptor = ?d, "rate limit descriptor");
            let hits = d
                .hits_addend
                .as_ref()
                .map_or(i64::from(req.hits_addend), |h| {
                    i64::try_from(h.value).unwrap_or(i64::MAX)
                });
            for (name, value) in entries(d) {
                match name {
                    "admit" => {
                        let (key, api) = value.split_once(' ').unwrap_or((value, "openai"));
                        let admission = self.0.admit(key, now).await.map_err(|e| {
                            crate::metrics::add(&crate::metrics::METRICS.limits_errors, 1);
                            tracing::error!("limits not checked: {e:#}");
                            Status::unavailable("limits unavailable")
                        })?;
                        let mut headers = Vec::new();
                        window_headers(&admission, &mut headers);
                        match &admission.refusal {
                            Some(r) => crate::metrics::refused(r.code),
                            None => {
                                crate::metrics::add(&crate::metrics::METRICS.limits_admitted, 1)
                            }
                        }
                        if let Some(refusal) = &admission.refusal {
                            response.overall_code = Code::OverLimit as i32;
                            response.raw_body = error_body(refusal, api == "anthropic");
                            headers.push(header("content-type", "application/json".into()));
                            headers.push(header(
                                switchyard_filter::config::REFUSAL_HEADER,
                                refusal.code.into(),
                            ));
                            if let Some(secs) = refusal.retry_after {
                                headers.push(header("retry-after", secs.max(1).to_string()));
                            }
                        }
                        response.response_headers_to_add = headers;
                    }
                    "charge" => {
                        let mut parts = value.split(' ');
                        let (key, request) =
                            (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                        let tokens = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                        let charged = self.0.ended(key, request, tokens, hits, now).await;
                        crate::metrics::add(&crate::metrics::METRICS.limits_charges, 1);
                        if let Err(e) = charged {
                            tracing::error!("request end not counted: {e:#}");
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(table: Table) -> Limits {
        let l = Limits::in_memory();
        l.set_table(table);
        l
    }

    fn key(user: &str, rpm: Option<i64>, tpm: Option<i64>) -> KeyLimits {
        KeyLimits {
            user: user.into(),
            rpm,
            tpm,
            ..KeyLimits::default()
        }
    }

    #[test]
    fn calendar_boundaries() {
        // 2026-11-26T15:00:00Z
        let now = 1_795_705_200;
        let (day, day_left, month, month_left) = calendar(now);
        assert_eq!((day.as_str(), month.as_str()), ("20261126", "202611"));
        assert_eq!(day_left, 9 * 3_600);
        assert_eq!(month_left, 4 * 86_400 + 9 * 3_600);
        let (day, _, month, left) = calendar(days_from_civil(2026, 12, 31) * 86_400);
        assert_eq!(
            (day.as_str(), month.as_str(), left),
            ("20261231", "202612", 86_400)
        );
    }

    #[tokio::test]
    async fn requests_per_minute_slide() {
        let l = limits(Table {
            keys: [("k".to_string(), key("u", Some(3), None))].into(),
            ..Table::default()
        });
        for t in 0..3 {
            let a = l.admit("k", 1_000 + t).await.unwrap();
            assert!(a.refusal.is_none());
            assert_eq!(a.requests.unwrap().1.used, t + 1);
        }
        let refused = l.admit("k", 1_010).await.unwrap();
        let r = refused.refusal.unwrap();
        assert_eq!(r.code, "rate_limit_exceeded");
        assert_eq!(
            r.retry_after,
            Some(50),
            "the first request leaves the window at 1,060"
        );
        assert_eq!(
            refused.requests.unwrap().1.used,
            3,
            "a refusal counts nowhere"
        );
        assert!(l.admit("k", 1_059).await.unwrap().refusal.is_some());
        assert!(l.admit("k", 1_060).await.unwrap().refusal.is_none());
        assert!(l.admit("unknown", 1_060).await.unwrap().refusal.is_none());
    }

    #[tokio::test]
    async fn tokens_count_when_responses_end_and_users_share_their_limits() {
        let l = limits(Table {
            keys: [
                ("a".to_string(), key("u", None, Some(100))),
                ("b".to_string(), key("u", None, None)),
            ]
            .into(),
            users: [(
                "u".to_string(),
                UserLimits {
                    rpm: Some(2),
                    ..UserLimits::default()
                },
            )]
            .into(),
        });
        assert!(l.admit("a", 10).await.unwrap().refusal.is_none());
        l.ended("a", "r1", 120, 0, 11).await.unwrap();
        let refused = l.admit("a", 12).await.unwrap().refusal.unwrap();
        assert_eq!(refused.code, "tokens_per_minute_exceeded");
        assert!(
            l.admit("b", 12).await.unwrap().refusal.is_none(),
            "second of the user's two"
        );
        let r = l.admit("b", 13).await.unwrap().refusal.unwrap();
        assert_eq!(
            r.code, "rate_limit_exceeded",
            "the owner's limit covers all its keys"
        );
    }

    #[tokio::test]
    async fn credits_count_each_request_once_whichever_report_comes_first() {
        let l = limits(Table {
            keys: [("k".to_string(), key("u", None, None))].into(),
            users: [(
                "u".to_string(),
                UserLimits {
                    metered: true,
                    ..UserLimits::default()
                },
            )]
            .into(),
        });
        assert!(l.table().limited("k"));
        l.balances_changed(&[("u".into(), 100)]).await;
        l.ended("k", "r1", 5, 60, 1).await.unwrap();
        assert!(l.admit("k", 1).await.unwrap().refusal.is_none(), "40 left");
        // r1 reaches the ledger (balance 40): settled, not counted twice.
        l.balances_changed(&[("u".into(), 40)]).await;
        l.settled(&[("r1".into(), "u".into(), 60)], 2).await;
        assert!(l.admit("k", 2).await.unwrap().refusal.is_none(), "still 40");
        // r2's record comes first, then its end: counted once.
        l.balances_changed(&[("u".into(), 0)]).await;
        l.settled(&[("r2".into(), "u".into(), 40)], 3).await;
        l.ended("k", "r2", 5, 40, 3).await.unwrap();
        let r = l.admit("k", 3).await.unwrap().refusal.unwrap();
        assert_eq!(r.code, "insufficient_credits");
        l.balances_changed(&[("u".into(), 10)]).await;
        assert!(
            l.admit("k", 4).await.unwrap().refusal.is_none(),
            "topped up"
        );
    }

    #[tokio::test]
    async fn spend_caps_per_day() {
        let l = limits(Table {
            keys: [(
                "k".to_string(),
                KeyLimits {
                    user: "u".into(),
                    daily_micros: Some(1_000),
                    ..KeyLimits::default()
                },
            )]
            .into(),
            ..Table::default()
        });
        let now = 1_795_705_200;
        l.ended("k", "r1", 10, 999, now).await.unwrap();
        assert!(l.admit("k", now).await.unwrap().refusal.is_none());
        l.ended("k", "r2", 10, 1, now).await.unwrap();
        let r = l.admit("k", now).await.unwrap().refusal.unwrap();
        assert_eq!(
            (r.code, r.retry_after),
            ("budget_exceeded", Some(9 * 3_600))
        );
        assert!(
            l.admit("k", now + 9 * 3_600)
                .await
                .unwrap()
                .refusal
                .is_none(),
            "a new day"
        );
        // The past day's total is forgotten once it expired.
        l.ended("k", "r3", 10, 1, now + 11 * 3_600).await.unwrap();
        let Counters::Memory(m) = &l.counters else {
            unreachable!("in memory")
        };
        assert_eq!(
            lock(m).unwrap().totals.len(),
            1,
            "only the new day's (no monthly cap)"
        );
    }
}
