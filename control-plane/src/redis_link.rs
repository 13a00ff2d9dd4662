//! The control plane's link to Redis, used by the rate limit counters and the sessions: a
//! connection made on first use and remade after a loss, with bounded waits, so Redis down at
//! start-up or lost while running makes calls fail fast (callers answer "unavailable") instead
//! of keeping the control plane from starting or stalling it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

/// How long a link waits for Redis, and how long it stays away after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// Bound on one connection attempt (and on waiting for another caller's attempt).
    pub connect: Duration,
    /// Bound on one command's answer.
    pub response: Duration,
    /// After a failure, every call fails at once for this long instead of each trying (and
    /// waiting) again.
    pub retry_after: Duration,
}

impl Waits {
    /// The limits': a lease ask waits 500 ms for its answer (then the request goes
    /// through), so a connection and a command together stay well under it.
    pub const RATE_LIMITS: Waits = Waits {
        connect: Duration::from_millis(200),
        response: Duration::from_millis(200),
        retry_after: Duration::from_secs(1),
    };
    /// The admin API's (sessions, sign-in attempts). Redis sits next to the control plane: a
    /// connection that takes longer is one that will not come.
    pub const SESSIONS: Waits = Waits {
        connect: Duration::from_millis(1_000),
        response: Duration::from_millis(1_000),
        retry_after: Duration::from_millis(500),
    };
}

/// A cheap handle (clone it freely) usable wherever redis takes a connection. While Redis is
/// away every call fails at once, and connecting is tried again every [`Waits::retry_after`].
#[derive(Clone)]
pub struct RedisLink(Arc<Inner>);

struct Inner {
    client: redis::Client,
    config: AsyncConnectionConfig,
    waits: Waits,
    /// What the link serves, for its log lines.
    purpose: &'static str,
    state: Mutex<State>,
    /// One connection attempt at a time: callers arriving meanwhile wait for its outcome
    /// (within [`Waits::connect`]) rather than each connecting.
    connecting: tokio::sync::Mutex<()>,
}

enum State {
    /// Connected; the number tells this connection from the ones before it.
    Up(MultiplexedConnection, u64),
    /// Not connected: calls fail at once until `retry_at`, then one tries to connect.
    Down { retry_at: Instant, generation: u64 },
}

/// The error of a call made while Redis is away.
fn unavailable(why: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::NotConnected, why))
}

impl RedisLink {
    /// Checks the URL only: nothing is connected until the first command. `purpose` names what
    /// the link serves in its log lines.
    pub fn open(url: &str, waits: Waits, purpose: &'static str) -> redis::RedisResult<RedisLink> {
        Ok(RedisLink(Arc::new(Inner {
            client: redis::Client::open(url)?,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(waits.connect)
                .set_response_timeout(waits.response),
            waits,
            purpose,
            state: Mutex::new(State::Down {
                retry_at: Instant::now(),
                generation: 0,
            }),
            connecting: tokio::sync::Mutex::new(()),
        })))
    }

    /// Whether Redis answers a `PING` now.
    pub async fn reachable(&self) -> bool {
        redis::cmd("PING")
            .query_async::<String>(&mut self.clone())
            .await
            .is_ok()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held: a poisoned state is whole.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection when up; an error at once while Redis is away; `None` when it is time
    /// to try connecting.
    fn ready(&self) -> redis::RedisResult<Option<(MultiplexedConnection, u64)>> {
        match &*self.state() {
            State::Up(conn, generation) => Ok(Some((conn.clone(), *generation))),
            State::Down { retry_at, .. } if Instant::now() < *retry_at => {
                Err(unavailable("Redis was unreachable moments ago"))
            }
            State::Down { .. } => Ok(None),
        }
    }

    /// The connection (and its number), connecting first if it is time to.
    async fn connection(&self) -> redis::RedisResult<(MultiplexedConnection, u64)> {
        if let Some(up) = self.ready()? {
            return Ok(up);
        }
        let inner = &self.0;
        let Ok(_turn) = tokio::time::timeout(inner.waits.connect, inner.connecting.lock()).await
        else {
            return Err(unavailable("Redis is being connected to"));
        };
        // Another caller may have connected, or failed to, while this one waited.
        if let Some(up) = self.ready()? {
            return Ok(up);
        }
        let made = tokio::time::timeout(
            inner.waits.connect,
            inner
                .client
                .get_multiplexed_async_connection_with_config(&inner.config),
        )
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "Redis did not answer in time",
            )))
        });
        let mut state = self.state();
        let generation = match &*state {
            State::Up(_, g) | State::Down { generation: g, .. } => g.wrapping_add(1),
        };
        match made {
            Ok(conn) => {
                tracing::info!("{}: connected to Redis", inner.purpose);
                *state = State::Up(conn.clone(), generation);
                Ok((conn, generation))
            }
            Err(e) => {
                tracing::warn!(
                    "{}: Redis unreachable ({e}); trying again in {:?}",
                    inner.purpose,
                    inner.waits.retry_after
                );
                *state = State::Down {
                    retry_at: Instant::now() + inner.waits.retry_after,
                    generation,
                };
                Err(e)
            }
        }
    }

    /// After a command on connection `generation` failed: a lost or hanging connection is
    /// dropped (the next call after [`Waits::retry_after`] connects again); other errors, and
    /// a connection already replaced, are left as they are.
    fn failed(&self, generation: u64, e: &RedisError) {
        if !(e.is_unrecoverable_error() || e.is_timeout() || e.is_io_error()) {
            return;
        }
        let mut state = self.state();
        if matches!(&*state, State::Up(_, g) if *g == generation) {
            tracing::warn!("{}: lost Redis ({e})", self.0.purpose);
            *state = State::Down {
                retry_at: Instant::now() + self.0.waits.retry_after,
                generation,
            };
        }
    }
}

/// Whether `e` means Redis cannot be reached or cannot serve now (as opposed to a command the
/// server refused or an answer of the wrong shape).
pub fn is_unavailable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly
        )
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let (mut conn, generation) = self.connection().await?;
            let answer = conn.send_packed_command(cmd).await;
            if let Err(e) = &answer {
                self.failed(generation, e);
            }
            answer
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let (mut conn, generation) = self.connection().await?;
            let answer = conn.send_packed_commands(cmd, offset, count).await;
            if let Err(e) = &answer {
                self.failed(generation, e);
            }
            answer
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.0.client.get_connection_info().redis.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::OwnRedis;

    #[tokio::test]
    async fn connects_on_first_use_fails_fast_while_down_and_comes_back() {
        let port = OwnRedis::free_port();
        let link = RedisLink::open(&OwnRedis::url(port), Waits::SESSIONS, "test").unwrap();
        let started = Instant::now();
        let err = redis::cmd("PING")
            .query_async::<String>(&mut link.clone())
            .await
            .unwrap_err();
        assert!(is_unavailable(&err), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Within the pause, calls do not even try.
        let started = Instant::now();
        assert!(!link.reachable().await);
        assert!(started.elapsed() < Duration::from_millis(50));

        let mut redis = OwnRedis::start(port);
        tokio::time::sleep(Waits::SESSIONS.retry_after).await;
        assert!(link.reachable().await);
        redis.kill();
        let err = redis::cmd("PING")
            .query_async::<String>(&mut link.clone())
            .await
            .unwrap_err();
        assert!(is_unavailable(&err), "{err}");
        let _redis = OwnRedis::start(port);
        // The first call after a restart may meet the old, dead connection.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !link.reachable().await {
            assert!(Instant::now() < deadline, "no reconnection");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Many callers at once on a link that is not connected: one connects, the others wait
    /// for it instead of each opening a connection (or failing while it is made).
    #[tokio::test]
    async fn concurrent_first_calls_share_one_connection_attempt() {
        let port = OwnRedis::free_port();
        let _redis = OwnRedis::start(port);
        let link = RedisLink::open(&OwnRedis::url(port), Waits::RATE_LIMITS, "test").unwrap();
        let answers = futures::future::join_all((0..20).map(|_| {
            let mut link = link.clone();
            async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut link)
                    .await
                    .is_ok()
            }
        }))
        .await;
        assert!(answers.iter().all(|ok| *ok), "{answers:?}");
        let mut direct = redis::Client::open(OwnRedis::url(port))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(
            clients.lines().count(),
            2,
            "the link's and this one: {clients}"
        );
    }

    #[test]
    fn malformed_urls_are_refused_at_once() {
        assert!(RedisLink::open("not a url", Waits::SESSIONS, "test").is_err());
    }
}
