//! The limits' counters in Redis, shared by every control plane: each admission
//! is one Lua script (checked and counted at once), every key has a TTL, figures are clamped
//! to their bounds inside the scripts. Redis is optional at run time: the connection is made
//! on first use and again after a failure, with short timeouts, so a dead or hanging Redis
//! makes the service answer an error at once (Envoy then lets the request through).

use std::sync::LazyLock;

use futures::future::BoxFuture;
use redis::Script;

use super::counters::{Ask, Counters, End, Release, Verdict, WindowState};
use super::{Result, CHARGE_TTL_SECS, MAX_HOLDS_PER_USER, WINDOW_SECS};
use crate::redis_link::{RedisLink, Waits};

/// How long a user's balance is trusted before it is read from the store again (a change
/// that could not be written while Redis was away is picked up then).
const BALANCE_TTL_SECS: i64 = 60;
/// Time to live of a user's holds (refreshed on every change): longer than any one hold.
const HOLDS_TTL_SECS: i64 = 2 * CHARGE_TTL_SECS;
/// Expired holds dropped per script run at most (the rest on the next runs).
const EXPIRE_PER_RUN: i64 = 100;
/// Ledger reports settled per script run (each run well within [`Waits::RATE_LIMITS`]).
const SETTLE_PER_RUN: usize = 500;

/// Shared by the scripts: `take(key, n)` lowers a total by `n`, never below zero, keeping its
/// TTL; `drop_hold(held, holds, expiry, request)` forgets what `request` held.
const HOLD_FUNCTIONS: &str = r#"
local function take(key, n)
  local v = redis.call('DECRBY', key, n)
  if v < 0 then redis.call('INCRBY', key, -v) end
end
local function drop_hold(held, holds, expiry, request)
  local amount = redis.call('HGET', holds, request)
  if amount then
    redis.call('HDEL', holds, request)
    redis.call('ZREM', expiry, request)
    take(held, amount)
  end
  return amount
end
local function keep(held, holds, expiry, ttl)
  redis.call('EXPIRE', held, ttl)
  redis.call('EXPIRE', holds, ttl)
  redis.call('EXPIRE', expiry, ttl)
end
"#;

/// One admission, atomically. KEYS: balance, held, holds (hash), expiry (sorted set) of the
/// owner, then the spend totals of the caps, then the windows. ARGV: now, window seconds,
/// metered (0/1), request id ('' = hold nothing), reserve, hold expires at, holds TTL, most
/// holds, number of caps, expired holds dropped per run, then each cap, then (limit, hits) per
/// window, then partial (0/1) and upto (0/1) (see [`super::counters::Credit`]). Returns
/// {-1} no balance, {-2} no credits, {-3} too many holds, {-4, i} cap i reached, or {allowed
/// (0/1), requests counted, micro-USD held, least left of the caps (-1: none), then (used,
/// oldest second) per window}.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HOLD_FUNCTIONS}{}",
        r#"
local now = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local request = ARGV[4]
local ncaps = tonumber(ARGV[9])
local first_window = 5 + ncaps
local extra = 10 + ncaps + 2 * (#KEYS - first_window + 1)
local partial = ARGV[extra + 1] == '1'
local upto = ARGV[extra + 2] == '1'
local amount = tonumber(ARGV[5])
if ARGV[3] == '1' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[10]))
  for _, r in ipairs(old) do drop_hold(KEYS[2], KEYS[3], KEYS[4], r) end
  local balance = redis.call('GET', KEYS[1])
  if not balance then return {-1} end
  local held = tonumber(redis.call('GET', KEYS[2]) or '0')
  local spendable = tonumber(balance) - held
  if spendable <= 0 then return {-2} end
  if request ~= '' and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[8])
     and not redis.call('ZSCORE', KEYS[4], request) then
    return {-3}
  end
  if upto then amount = math.min(amount, spendable) end
end
local caps_left = -1
for i = 1, ncaps do
  local spent = tonumber(redis.call('GET', KEYS[4 + i]) or '0')
  if spent >= tonumber(ARGV[10 + i]) then return {-4, i} end
  local left = tonumber(ARGV[10 + i]) - spent
  if caps_left < 0 or left < caps_left then caps_left = left end
end
local used, oldest, ok, hits, counts = {}, {}, 1, 0, false
for i = first_window, #KEYS do
  local a = 10 + ncaps + 2 * (i - first_window)
  local limit, whits = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local all = redis.call('HGETALL', KEYS[i])
  local sum, first = 0, now
  for j = 1, #all, 2 do
    local s = tonumber(all[j])
    if s <= now - win then
      redis.call('HDEL', KEYS[i], all[j])
    else
      sum = sum + tonumber(all[j + 1])
      if s < first then first = s end
    end
  end
  used[i], oldest[i] = sum, first
  if whits > hits then hits = whits end
end
for i = first_window, #KEYS do
  local a = 10 + ncaps + 2 * (i - first_window)
  local limit, whits = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if whits > 0 then
    counts = true
    if partial then
      hits = math.min(hits, limit - used[i])
    elseif used[i] + whits > limit then
      ok = 0
    end
  elseif used[i] >= limit then
    ok = 0
  end
end
if counts and hits <= 0 then ok = 0 end
if hits < 0 then hits = 0 end
local out = {ok, hits, 0, caps_left}
for i = first_window, #KEYS do
  local a = 10 + ncaps + 2 * (i - first_window)
  local whits = tonumber(ARGV[a + 2])
  if ok == 1 and whits > 0 then
    redis.call('HINCRBY', KEYS[i], now, hits)
    redis.call('EXPIRE', KEYS[i], win + 1)
    used[i] = used[i] + hits
  end
  table.insert(out, used[i])
  table.insert(out, oldest[i])
end
if ok == 1 and ARGV[3] == '1' then
  out[3] = amount
  if request ~= '' then
    -- A lease's hold grows by what it was granted.
    local kept = 0
    if upto then kept = tonumber(redis.call('HGET', KEYS[3], request) or '0') end
    drop_hold(KEYS[2], KEYS[3], KEYS[4], request)
    redis.call('HSET', KEYS[3], request, kept + amount)
    redis.call('ZADD', KEYS[4], ARGV[6], request)
    redis.call('INCRBY', KEYS[2], kept + amount)
    keep(KEYS[2], KEYS[3], KEYS[4], ARGV[7])
  end
end
return out
"#
    ))
});

/// A lease's hold shrinks, and is kept until a time at least. KEYS: held, holds, expiry of
/// its owner. ARGV: the hold's id, micro-USD, expires at, holds TTL.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HOLD_FUNCTIONS}{}",
        r#"
local amount = redis.call('HGET', KEYS[2], ARGV[1])
if not amount then return 0 end
local left = tonumber(amount) - tonumber(ARGV[2])
if left <= 0 then
  drop_hold(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
  return 0
end
take(KEYS[1], tonumber(amount) - left)
redis.call('HSET', KEYS[2], ARGV[1], left)
if tonumber(redis.call('ZSCORE', KEYS[3], ARGV[1]) or '0') < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
keep(KEYS[1], KEYS[2], KEYS[3], ARGV[4])
return 1
"#
    ))
});

/// Unused requests of a lease leave their windows. KEYS: the windows. ARGV: the second they
/// were counted at, how many.
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 1, #KEYS do
  local v = redis.call('HGET', KEYS[i], ARGV[1])
  if v then
    local n = tonumber(v) - tonumber(ARGV[2])
    if n < 0 then n = 0 end
    redis.call('HSET', KEYS[i], ARGV[1], n)
  end
end
return 1
"#,
    )
});

/// A request's end, in one step: tokens added to their windows, the cost to the spend
/// totals, and (metered) the request's hold becomes its cost. KEYS: the request's marker, then
/// held, holds, expiry of its owner, then the windows, then the totals. ARGV: request id (''
/// = no hold), cost, hold expires at, marker TTL, holds TTL, most holds, now, tokens, window
/// TTL, number of windows, then each total's TTL. The marker says which of the end and the
/// ledger came first. (Called on its own, not in a pipeline: `EVALSHA` in a pipeline does not
/// load a script Redis lost, and the other commands would run twice on a retry.)
static END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HOLD_FUNCTIONS}{}",
        r#"
local request = ARGV[1]
local nwin = tonumber(ARGV[10])
if tonumber(ARGV[8]) > 0 then
  for i = 5, 4 + nwin do
    redis.call('HINCRBY', KEYS[i], ARGV[7], ARGV[8])
    redis.call('EXPIRE', KEYS[i], ARGV[9])
  end
end
if tonumber(ARGV[2]) > 0 then
  for i = 5 + nwin, #KEYS do
    redis.call('INCRBY', KEYS[i], ARGV[2])
    redis.call('EXPIRE', KEYS[i], ARGV[10 + i - 4 - nwin])
  end
end
if request == '' then return 0 end
drop_hold(KEYS[2], KEYS[3], KEYS[4], request)
if redis.call('GET', KEYS[1]) == 'settled' then
  redis.call('DEL', KEYS[1])
  return 0
end
if tonumber(ARGV[2]) <= 0 then return 0 end
if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then
  local first = redis.call('ZRANGE', KEYS[4], 0, 0)
  if first[1] then drop_hold(KEYS[2], KEYS[3], KEYS[4], first[1]) end
end
redis.call('HSET', KEYS[3], request, ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], request)
redis.call('INCRBY', KEYS[2], ARGV[2])
keep(KEYS[2], KEYS[3], KEYS[4], ARGV[5])
redis.call('SET', KEYS[1], 'end', 'EX', ARGV[4])
return 1
"#
    ))
});

/// Requests whose cost reached the ledger: what they held goes. KEYS: per request its marker,
/// then held, holds, expiry of its owner. ARGV: marker TTL, then the request ids.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HOLD_FUNCTIONS}{}",
        r#"
for n = 2, #ARGV do
  local k = 4 * (n - 2)
  drop_hold(KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[n])
  if redis.call('GET', KEYS[k + 1]) == 'end' then
    redis.call('DEL', KEYS[k + 1])
  else
    redis.call('SET', KEYS[k + 1], 'settled', 'EX', ARGV[1])
  end
end
return 1
"#
    ))
});

/// The counters in Redis, keys under a prefix.
pub struct RedisCounters {
    link: RedisLink,
    prefix: String,
}

impl RedisCounters {
    /// Checks the URL only: Redis is connected on first use (see [`RedisLink`]).
    pub fn new(url: &str, prefix: &str) -> Result<RedisCounters> {
        Ok(RedisCounters {
            link: RedisLink::open(url, Waits::RATE_LIMITS, "limits")?,
            prefix: prefix.into(),
        })
    }

    /// The keys of a user's credits: balance, held, holds, expiry.
    fn credit_keys(&self, user: &str) -> [String; 4] {
        ["balance", "held", "holds", "expiry"].map(|kind| self.name(&[kind, user]))
    }

    async fn admit(&self, ask: &Ask<'_>) -> Result<Verdict> {
        let mut call = ADMIT.prepare_invoke();
        let user = ask.credit.as_ref().map_or("", |c| c.user);
        for key in self.credit_keys(user) {
            call.key(key);
        }
        for cap in &ask.caps {
            call.key(&cap.total);
        }
        for w in &ask.windows {
            call.key(&w.counter);
        }
        let (metered, request, reserve, expires, upto) =
            ask.credit.as_ref().map_or((0, "", 0, 0, 0), |c| {
                (1, c.request, c.reserve, c.expires, i32::from(c.upto))
            });
        call.arg(ask.now)
            .arg(WINDOW_SECS)
            .arg(metered)
            .arg(request)
            .arg(reserve)
            .arg(expires)
            .arg(HOLDS_TTL_SECS)
            .arg(MAX_HOLDS_PER_USER)
            .arg(ask.caps.len())
            .arg(EXPIRE_PER_RUN);
        for cap in &ask.caps {
            call.arg(cap.cap);
        }
        for w in &ask.windows {
            call.arg(w.limit).arg(w.hits);
        }
        call.arg(i32::from(ask.partial)).arg(upto);
        let out: Vec<i64> = call.invoke_async(&mut self.link.clone()).await?;
        Ok(match out.as_slice() {
            [-1] => Verdict::NoBalance,
            [-2] => Verdict::NoCredits,
            [-3] => Verdict::TooManyHolds,
            [-4, i] => Verdict::OverCap(usize::try_from(*i - 1).unwrap_or(0)),
            [ok, hits, held, caps_left, rest @ ..] => Verdict::Windows {
                ok: *ok == 1,
                hits: *hits,
                held: *held,
                caps_left: (*caps_left >= 0).then_some(*caps_left),
                states: rest
                    .chunks(2)
                    .map(|c| WindowState {
                        used: c[0],
                        reset_secs: c.get(1).copied().unwrap_or(ask.now) + WINDOW_SECS - ask.now,
                    })
                    .collect(),
            },
            _ => Verdict::Windows {
                ok: false,
                states: Vec::new(),
                hits: 0,
                held: 0,
                caps_left: None,
            },
        })
    }

    /// Tokens, spend and the hold of a request's end: one script.
    async fn ended(&self, end: &End<'_>) -> Result<()> {
        let mut call = END.prepare_invoke();
        let (user, request) = end.hold.as_ref().map_or(("", ""), |h| (h.user, h.request));
        let [_, held, holds, expiry] = self.credit_keys(user);
        call.key(self.name(&["charge", request]))
            .key(held)
            .key(holds)
            .key(expiry);
        for w in &end.windows {
            call.key(w);
        }
        for (total, _) in &end.totals {
            call.key(total);
        }
        call.arg(request)
            .arg(end.cost)
            .arg(end.now.saturating_add(CHARGE_TTL_SECS))
            .arg(CHARGE_TTL_SECS)
            .arg(HOLDS_TTL_SECS)
            .arg(MAX_HOLDS_PER_USER)
            .arg(end.now)
            .arg(end.tokens)
            .arg(WINDOW_SECS + 1)
            .arg(end.windows.len());
        for (_, ttl) in &end.totals {
            call.arg(*ttl);
        }
        call.invoke_async::<i64>(&mut self.link.clone()).await?;
        Ok(())
    }

    /// Many ledger reports at once (one script per [`SETTLE_PER_RUN`]).
    async fn settle(&self, settled: &[(&str, &str)]) -> Result<()> {
        for chunk in settled.chunks(SETTLE_PER_RUN) {
            let mut call = SETTLE.prepare_invoke();
            call.arg(CHARGE_TTL_SECS);
            for (request, user) in chunk {
                let [_, held, holds, expiry] = self.credit_keys(user);
                call.key(self.name(&["charge", request]))
                    .key(held)
                    .key(holds)
                    .key(expiry)
                    .arg(*request);
            }
            call.invoke_async::<i64>(&mut self.link.clone()).await?;
        }
        Ok(())
    }

    async fn set_balances(&self, balances: &[(String, i64)]) -> Result<()> {
        if balances.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (user, b) in balances {
            pipe.set_ex(self.name(&["balance", user]), *b, BALANCE_TTL_SECS as u64)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.link.clone()).await?;
        Ok(())
    }

    /// Adds `delta` to each total, which lives `ttl` seconds: (name, ttl).
    async fn add_totals(&self, totals: &[(String, i64)], delta: i64) -> Result<()> {
        if totals.is_empty() || delta <= 0 {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (name, ttl) in totals {
            pipe.incr(name, delta).ignore().expire(name, *ttl).ignore();
        }
        pipe.query_async::<()>(&mut self.link.clone()).await?;
        Ok(())
    }
}

impl Counters for RedisCounters {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn admit<'a>(&'a self, ask: &'a Ask<'_>) -> BoxFuture<'a, Result<Verdict>> {
        Box::pin(RedisCounters::admit(self, ask))
    }

    fn ended<'a>(&'a self, end: &'a End<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(RedisCounters::ended(self, end))
    }

    fn settle<'a>(
        &'a self,
        settled: &'a [(&'a str, &'a str)],
        _now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(RedisCounters::settle(self, settled))
    }

    fn set_balances<'a>(&'a self, balances: &'a [(String, i64)]) -> BoxFuture<'a, Result<()>> {
        Box::pin(RedisCounters::set_balances(self, balances))
    }

    fn add_totals<'a>(
        &'a self,
        totals: &'a [(String, i64)],
        delta: i64,
        _now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(RedisCounters::add_totals(self, totals, delta))
    }

    fn give_back<'a>(
        &'a self,
        windows: &'a [String],
        second: i64,
        requests: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if windows.is_empty() || requests <= 0 || second <= now - WINDOW_SECS {
                return Ok(());
            }
            let mut call = GIVE_BACK.prepare_invoke();
            for w in windows {
                call.key(w);
            }
            call.arg(second).arg(requests);
            call.invoke_async::<i64>(&mut self.link.clone()).await?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, r: &'a Release<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let [_, held, holds, expiry] = self.credit_keys(r.user);
            let mut call = RELEASE.prepare_invoke();
            call.key(held).key(holds).key(expiry);
            call.arg(r.hold)
                .arg(r.micros.max(0))
                .arg(r.expires)
                .arg(HOLDS_TTL_SECS);
            call.invoke_async::<i64>(&mut self.link.clone()).await?;
            Ok(())
        })
    }

    fn reachable(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.link.reachable())
    }
}
