//! The admin API's HTTP server: the axum router behind hyper, with the bounds `axum::serve`
//! does not set: a client must send each request's headers in time (a slow or idle client
//! cannot hold a connection open for ever: the same limit closes keep-alive connections that
//! ask nothing), and only so many connections are open at once (more are closed as they arrive).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::Service as _;

/// How much the admin server lets clients hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A request's headers must arrive within this, and an idle connection closes after it.
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1_024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish
/// (3 s at most).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    bounds: Bounds,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(bounds.max_connections));
    let graceful = GracefulShutdown::new();
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(bounds.header_read_timeout))
        .keep_alive_timeout(bounds.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait a moment rather than spin.
                    tracing::warn!("admin API: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            crate::metrics::add(&crate::metrics::METRICS.admin_connections_refused, 1);
            drop(tcp);
            continue;
        };
        let Ok(service) = make.call(remote).await;
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_bytes = bounds.header_read_timeout;
        tokio::spawn(async move {
            // Until its first bytes arrive the server cannot tell HTTP/1 from HTTP/2, and
            // hyper's header timer has not started: a client that sends nothing goes here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(first_bytes, tcp.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(tcp),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            let _ = watcher.watch(connection).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(3), graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn start(bounds: Bounds) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route(
            "/healthz",
            axum::routing::get(
                |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| async move {
                    peer.ip().to_string()
                },
            ),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, bounds, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes the connection (or 5 s pass).
    async fn closed_within(stream: &mut tokio::net::TcpStream) -> Option<Duration> {
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
            .await
            .ok()
            .map(|_| started.elapsed())
    }

    #[tokio::test]
    async fn slow_headers_and_idle_connections_are_closed() {
        let (addr, _stop) = start(Bounds {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 8,
        })
        .await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        assert!(
            closed_within(&mut slow).await.is_some(),
            "headers never ended"
        );
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut idle).await.is_some(), "asked nothing");
        // A client that asks in time is answered, with its address.
        let mut fine = tokio::net::TcpStream::connect(addr).await.unwrap();
        fine.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        fine.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("127.0.0.1"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_while_the_others_work() {
        let (addr, _stop) = start(Bounds {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 2,
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut third).await.is_some(), "over the cap");
        held[0]
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        held[0].read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Its slot is free again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = tokio::net::TcpStream::connect(addr).await.unwrap();
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        again.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
