//! A mock OpenAI provider that checks requests the way the real API does (bearer key, path,
//! JSON body, `model`, `messages`, unknown arguments) and answers with the fixtures in
//! `tests/fixtures/openai/`. Every request is recorded for the tests to inspect.
//!
//! Special model names drive failure cases: `mock-gated` holds the stream after its first chunk
//! until [`MockOpenAi::open_gate`]; `mock-cut` drops the connection mid-stream; `mock-truncated`
//! ends the stream cleanly but without `[DONE]`; `mock-slow` answers after 300 ms; `mock-held`
//! holds the stream after its text (before the usage) until the gate opens; `mock-gzip` claims a
//! `content-encoding: gzip` answer. Chat answers carry a cookie and provider headers.
//!
//! The same server also speaks Anthropic Messages at `POST /v1/messages` (the Anthropic SDK's
//! base URL is the origin), checked as Anthropic checks it: `x-api-key`, `anthropic-version`,
//! required fields, no unknown fields; models `claude-sonnet-4-5` and `claude-overloaded` (529).
//! And Gemini at `POST /v1beta/models/{model}:generateContent` (and `:streamGenerateContent`),
//! see [`gemini`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::Notify;

mod anthropic;
pub mod bedrock;
mod compat;
pub mod connect_proxy;
pub mod faulty;
mod gemini;
pub mod models;
mod openai;
pub mod vertex;

pub(crate) use anthropic::{anthropic_error, messages_answer};
pub use anthropic::{ANTHROPIC_MESSAGE, ANTHROPIC_STREAM};
pub(crate) use openai::{
    admit, chat_answer, wants_tool_call, Auth, CHAT_FIELDS, ERROR_INVALID_KEY,
};
pub use openai::{CHAT_COMPLETION, CHAT_STREAM, EMBEDDINGS, PROVIDER_COOKIE};

/// One request as the provider received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub struct MockState {
    pub(crate) key: String,
    pub(crate) chat_models: Vec<String>,
    embedding_models: Vec<String>,
    requests: Mutex<Vec<Recorded>>,
    gate: Notify,
    /// Vertex AI access tokens issued by `/token`, and how long the next ones live.
    pub(crate) tokens: Mutex<Vec<String>>,
    pub(crate) token_count: std::sync::atomic::AtomicU64,
    pub(crate) token_lifetime: std::sync::atomic::AtomicU64,
    /// The model lists it serves (see [`models`]).
    pub(crate) models: Mutex<models::Lists>,
}

/// A running mock; stops when dropped.
pub struct MockOpenAi {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockOpenAi {
    /// Starts on an ephemeral loopback port, accepting `key` and the given models.
    pub async fn start(key: &str, chat_models: &[&str], embedding_models: &[&str]) -> MockOpenAi {
        Self::start_on(
            "127.0.0.1:0".parse().expect("addr"),
            key,
            chat_models,
            embedding_models,
        )
        .await
        .expect("mock binds")
    }

    pub async fn start_on(
        addr: SocketAddr,
        key: &str,
        chat_models: &[&str],
        embedding_models: &[&str],
    ) -> std::io::Result<MockOpenAi> {
        let state = Arc::new(MockState {
            key: key.to_owned(),
            chat_models: chat_models.iter().map(|m| (*m).to_owned()).collect(),
            embedding_models: embedding_models.iter().map(|m| (*m).to_owned()).collect(),
            requests: Mutex::new(Vec::new()),
            gate: Notify::new(),
            tokens: Mutex::new(Vec::new()),
            token_count: std::sync::atomic::AtomicU64::new(0),
            token_lifetime: std::sync::atomic::AtomicU64::new(3599),
            models: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/models", get(models::list))
            .route("/v1beta/models", get(models::gemini))
            .route("/openai/deployments", get(models::azure))
            .route("/foundation-models", get(models::bedrock))
            .route("/inference-profiles", get(models::bedrock_profiles))
            .route("/v1/chat/completions", post(openai::chat))
            .route("/v1/embeddings", post(openai::embeddings))
            .route("/v1/images/generations", post(openai::images))
            .route("/v1/messages", post(anthropic::messages))
            .route("/v1beta/models/{target}", post(gemini::generate))
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(compat::azure_chat),
            )
            .route("/mistral/v1/chat/completions", post(compat::mistral_chat))
            .route("/model/{model}/{action}", post(bedrock::converse))
            .route("/token", post(vertex::token))
            .route(
                "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}",
                post(vertex::predict),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(MockOpenAi {
            addr,
            state,
            stop: Some(stop),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL as the Anthropic SDK takes it (the origin).
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// How long the Vertex access tokens issued from now on live, in seconds.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state
            .token_lifetime
            .store(secs, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many Vertex access tokens the mock has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.state
            .token_count
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes the mock list `ids` in `format`'s model list (answered 404 until then).
    pub fn list_models(&self, format: models::Format, ids: &[&str]) {
        if let Ok(mut m) = self.state.models.lock() {
            m.lists
                .insert(format, ids.iter().map(|s| (*s).to_owned()).collect());
        }
    }

    /// Caps every model list page at `n` models (0: as many as the client asks).
    pub fn set_model_page_size(&self, n: usize) {
        if let Ok(mut m) = self.state.models.lock() {
            m.page_size = n;
        }
    }

    /// Makes every model list answer 500 (`true`) or work again.
    pub fn fail_model_lists(&self, fail: bool) {
        if let Ok(mut m) = self.state.models.lock() {
            m.fail = fail;
        }
    }

    /// Lets a `mock-gated` stream continue past its first chunk.
    pub fn open_gate(&self) {
        self.state.gate.notify_one();
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A 200 answer that sends `chunks` one by one as a streamed body.
pub(crate) fn streamed(content_type: &str, chunks: impl IntoIterator<Item = Bytes>) -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = chunks.into_iter().map(Ok).collect();
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(crate) fn fixture_error(status: StatusCode, fixture: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        fixture.to_owned(),
    )
        .into_response()
}

pub(crate) fn record(
    state: &MockState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) {
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(Recorded {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
    }
}
