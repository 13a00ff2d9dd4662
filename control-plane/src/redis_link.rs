//! A Redis connection made on first use and remade after a loss, with short timeouts: Redis
//! down at start-up or lost while running makes calls fail fast (callers answer "unavailable")
//! instead of keeping the control plane from starting or stalling it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// Bound on one connection attempt. Redis sits next to the control plane: a connection that
/// takes longer is one that will not come.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Bound on one command's answer (the rate limit service's own deadline is 500 ms).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// After a failed first connection, calls fail at once for this long instead of each trying
/// (and waiting) again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A cheap handle (clone it freely) usable wherever redis takes a connection.
#[derive(Clone)]
pub struct RedisLink(Arc<Inner>);

struct Inner {
    client: redis::Client,
    /// Set once the first connection is made; the manager itself reconnects after a loss.
    manager: tokio::sync::OnceCell<ConnectionManager>,
    /// When the last first-connection attempt failed.
    failed_at: std::sync::Mutex<Option<Instant>>,
}

impl RedisLink {
    /// Checks the URL only: nothing is connected until the first command.
    pub fn open(url: &str) -> RedisResult<RedisLink> {
        Ok(RedisLink(Arc::new(Inner {
            client: redis::Client::open(url)?,
            manager: tokio::sync::OnceCell::new(),
            failed_at: std::sync::Mutex::new(None),
        })))
    }

    /// Whether Redis answers a `PING` now.
    pub async fn reachable(&self) -> bool {
        redis::cmd("PING")
            .query_async::<String>(&mut self.clone())
            .await
            .is_ok()
    }

    async fn manager(&self) -> RedisResult<ConnectionManager> {
        if let Some(m) = self.0.manager.get() {
            return Ok(m.clone());
        }
        let paused = self
            .0
            .failed_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < RETRY_PAUSE);
        if paused {
            return Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "Redis was unreachable moments ago",
            )));
        }
        // One attempt at a time: concurrent callers wait for it rather than each connecting.
        let made = self
            .0
            .manager
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT)
                    // Each call tries once; the next call tries again. Retries inside a call
                    // would hold the caller for the whole backoff.
                    .set_number_of_retries(0);
                ConnectionManager::new_with_config(self.0.client.clone(), config)
            })
            .await;
        match made {
            Ok(m) => Ok(m.clone()),
            Err(e) => {
                if let Ok(mut at) = self.0.failed_at.lock() {
                    *at = Some(Instant::now());
                }
                Err(e)
            }
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
        async move { self.manager().await?.send_packed_command(cmd).await }.boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            self.manager()
                .await?
                .send_packed_commands(cmd, offset, count)
                .await
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
        let link = RedisLink::open(&OwnRedis::url(port)).unwrap();
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
        tokio::time::sleep(RETRY_PAUSE).await;
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

    #[test]
    fn malformed_urls_are_refused_at_once() {
        assert!(RedisLink::open("not a url").is_err());
    }
}
