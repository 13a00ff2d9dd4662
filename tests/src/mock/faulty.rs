//! A fault-injecting OpenAI-compatible provider, written at the HTTP/1.1 level so that it can
//! fail the ways real providers do: a status (500, 429 with `retry-after`), a connection reset
//! before any answer, silence before the first byte, a stream cut off mid-way, an error event
//! mid-stream. When healthy it answers Chat Completions (plain or streamed) with the OpenAI
//! fixtures. The fault is read per request, so a test (or the chaos run) can change it while
//! Envoy keeps its connections open.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{CHAT_COMPLETION, CHAT_STREAM};

/// How the provider answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Healthy,
    /// An OpenAI-style error with this status (`retry-after` on 429 when given).
    Status(u16, Option<u64>),
    /// The connection is reset once the request has arrived, before any answer.
    Reset,
    /// Nothing is sent back, ever.
    Stall,
    /// A streamed answer whose connection is reset after its first events.
    CutStream,
    /// A streamed answer that carries an error event after its first events.
    ErrorEvent,
}

const MODELS: &str = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"}]}"#;

struct Shared {
    key: String,
    fault: Mutex<Fault>,
    requests: AtomicU64,
}

/// A running faulty provider; stops when dropped.
pub struct Faulty {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Faulty {
    pub async fn start(key: &str) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            key: key.to_owned(),
            fault: Mutex::new(Fault::Healthy),
            requests: AtomicU64::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = conn.set_nodelay(true);
                tokio::spawn(serve(conn, s.clone()));
            }
        });
        Faulty { addr, shared, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        if let Ok(mut f) = self.shared.fault.lock() {
            *f = fault;
        }
    }

    /// Chat requests received so far (whatever was answered; model-list probes not counted).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: requests in turn (keep-alive) until a fault ends it.
async fn serve(conn: TcpStream, shared: Arc<Shared>) {
    let mut conn = BufReader::new(conn);
    loop {
        let Some((head, body)) = read_request(&mut conn).await else {
            return;
        };
        let fault = shared.fault.lock().map_or(Fault::Healthy, |f| *f);
        let authorized = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {}", shared.key)));
        let first_line = head.lines().next().unwrap_or_default();
        let stream = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| b["stream"].as_bool())
            .unwrap_or(false);
        let out = conn.get_mut();
        // The model list (what health probes ask for) fails the way requests do.
        if first_line.starts_with("GET /v1/models ") {
            let done = match fault {
                Fault::Reset => {
                    reset(conn).await;
                    return;
                }
                Fault::Stall => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                Fault::Status(status, retry_after) => {
                    respond(
                        out,
                        status,
                        retry_after,
                        &error_body("Injected fault", "server_error"),
                    )
                    .await
                }
                _ if !authorized => {
                    respond(
                        out,
                        401,
                        None,
                        &error_body("Incorrect API key provided.", "invalid_request_error"),
                    )
                    .await
                }
                _ => respond(out, 200, None, MODELS).await,
            };
            if done.is_err() {
                return;
            }
            continue;
        }
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let done = if !first_line.starts_with("POST /v1/chat/completions ") {
            respond(
                out,
                404,
                None,
                &error_body("Not found", "invalid_request_error"),
            )
            .await
        } else if !authorized {
            respond(
                out,
                401,
                None,
                &error_body("Incorrect API key provided.", "invalid_request_error"),
            )
            .await
        } else {
            match fault {
                Fault::Healthy if stream => stream_events(out, usize::MAX, None).await,
                Fault::Healthy => respond(out, 200, None, CHAT_COMPLETION).await,
                Fault::Status(status, retry_after) => {
                    let kind = if status == 429 {
                        "rate_limit_exceeded"
                    } else {
                        "server_error"
                    };
                    respond(
                        out,
                        status,
                        retry_after,
                        &error_body("Injected fault", kind),
                    )
                    .await
                }
                Fault::Reset => {
                    reset(conn).await;
                    return;
                }
                Fault::Stall => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                Fault::CutStream => {
                    let _ = stream_events(out, 2, None).await;
                    reset(conn).await;
                    return;
                }
                Fault::ErrorEvent => {
                    let error = error_body(
                        "The server had an error while processing your request.",
                        "server_error",
                    );
                    stream_events(out, 2, Some(&error)).await
                }
            }
        };
        if done.is_err() {
            return;
        }
    }
}

/// The request head (as text) and body, or `None` when the connection ends.
async fn read_request(conn: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(line.trim_end_matches(['\r', '\n']));
        head.push('\n');
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

fn error_body(message: &str, kind: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        .to_string()
}

async fn respond(
    out: &mut TcpStream,
    status: u16,
    retry_after: Option<u64>,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(secs) = retry_after {
        head.push_str(&format!("retry-after: {secs}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes()).await?;
    out.write_all(body.as_bytes()).await?;
    out.flush().await
}

/// A streamed answer: the fixture's first `events` events (all of them by default), then
/// `error` as an event if given, then the end of the body.
async fn stream_events(
    out: &mut TcpStream,
    events: usize,
    error: Option<&str>,
) -> std::io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await?;
    let error_event = error.map(|e| format!("data: {e}\n\n"));
    let chosen = CHAT_STREAM
        .split_inclusive("\n\n")
        .take(events)
        .chain(error_event.as_deref());
    for event in chosen {
        out.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
            .await?;
        out.flush().await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if events == usize::MAX || error.is_some() {
        out.write_all(b"0\r\n\r\n").await?;
    }
    out.flush().await
}

/// Ends the connection with a TCP reset (no FIN): what a crashed provider or proxy looks like.
async fn reset(conn: BufReader<TcpStream>) {
    let conn = conn.into_inner();
    // SO_LINGER with a zero timeout makes close() send RST.
    #[allow(deprecated)]
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}
