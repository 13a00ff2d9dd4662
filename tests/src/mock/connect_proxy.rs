//! An HTTP proxy (what companies put between their servers and the internet): for
//! `CONNECT host:port HTTP/1.1` (HTTPS providers) it opens the tunnel, answers `200`, then copies
//! bytes both ways; a request in absolute form (`POST http://host:port/path`, how Envoy sends
//! plain HTTP through a proxy) goes to that host as it is, and the connection is spliced.
//! Counts the connections it passed on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops when dropped.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    tunnels: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tunnels = Arc::new(AtomicU64::new(0));
        let count = tunnels.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(tunnel(conn, count.clone()));
            }
        });
        ConnectProxy {
            addr,
            tunnels,
            task,
        }
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tunnel(conn: TcpStream, count: Arc<AtomicU64>) {
    let mut client = BufReader::new(conn);
    let mut request_line = String::new();
    if client.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return;
    }
    // The rest of the head.
    let mut head = request_line.clone();
    loop {
        let mut line = String::new();
        match client.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => {
                head.push_str(&line);
                break;
            }
            Ok(_) => head.push_str(&line),
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, uri) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let connect = method == "CONNECT";
    let target = if connect {
        uri.to_owned()
    } else if let Some(rest) = uri.strip_prefix("http://") {
        rest.split('/').next().unwrap_or("").to_owned()
    } else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    count.fetch_add(1, Ordering::SeqCst);
    let opened = if connect {
        client
            .get_mut()
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
    } else {
        // The origin server takes the request in absolute form as it is.
        upstream.write_all(head.as_bytes()).await
    };
    if opened.is_err() {
        return;
    }
    // Bytes the client sent after its head are in the reader's buffer: pass them on first.
    let buffered = client.buffer().to_vec();
    if !buffered.is_empty() && upstream.write_all(&buffered).await.is_err() {
        return;
    }
    let mut client = client.into_inner();
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
