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
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

pub mod bedrock;
mod compat;
pub mod connect_proxy;
pub mod faulty;
mod gemini;
pub mod models;
pub mod vertex;

/// A cookie the mock sets on its chat answers (the gateway must not pass it on).
pub const PROVIDER_COOKIE: &str = "__cf_bm=mock-provider-session; path=/; HttpOnly";
pub const CHAT_COMPLETION: &str = include_str!("../../fixtures/openai/chat_completion.json");
pub const CHAT_STREAM: &str = include_str!("../../fixtures/openai/chat_stream_usage.sse");
const CHAT_TOOL_CALL: &str = include_str!("../../fixtures/openai/chat_tool_call.json");
pub const EMBEDDINGS: &str = include_str!("../../fixtures/openai/embeddings.json");
const ERROR_INVALID_KEY: &str = include_str!("../../fixtures/openai/error_invalid_api_key.json");
const ERROR_MODEL_NOT_FOUND: &str =
    include_str!("../../fixtures/openai/error_model_not_found.json");
pub const ANTHROPIC_MESSAGE: &str =
    include_str!("../../fixtures/openai_anthropic/simple/upstream_response.json");
pub const ANTHROPIC_STREAM: &str =
    include_str!("../../fixtures/openai_anthropic/stream/upstream_response.sse");
const ANTHROPIC_TOOL_USE: &str =
    include_str!("../../fixtures/openai_anthropic/tools/upstream_response.json");
const ANTHROPIC_MODELS: &[&str] = &[
    "claude-sonnet-4-5",
    "claude-overloaded",
    "claude-rate-limited",
    "claude-gated",
    "claude-opus-4-1@20250805",
    "claude-huge",
];

/// Request fields of the Messages API; anything else is refused.
const ANTHROPIC_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
];

/// Request arguments of Chat Completions (OpenAI API reference); anything else is refused the
/// way OpenAI refuses it.
pub(crate) const CHAT_FIELDS: &[&str] = &[
    "messages",
    "model",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];
const EMBEDDING_FIELDS: &[&str] = &["input", "model", "dimensions", "encoding_format", "user"];
const IMAGE_FIELDS: &[&str] = &[
    "prompt",
    "model",
    "background",
    "moderation",
    "n",
    "output_compression",
    "output_format",
    "partial_images",
    "quality",
    "response_format",
    "size",
    "stream",
    "style",
    "user",
];
const IMAGE_GENERATION: &str = include_str!("../../fixtures/openai/image_generation.json");

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
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/images/generations", post(images))
            .route("/v1/messages", post(messages))
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

fn error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
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

/// How a provider wants its key.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI and the compatible family).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    AzureKey,
}

/// Records the request and checks what every OpenAI endpoint checks; returns the JSON body.
pub(crate) fn admit(
    state: &MockState,
    (method, uri, headers, body): (Method, &Uri, &HeaderMap, &Bytes),
    fields: &[&str],
    auth: Auth,
) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    record(state, method, uri, headers, body);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorised = match auth {
        Auth::Bearer => header("authorization") == Some(&format!("Bearer {}", state.key)),
        Auth::AzureKey => header("api-key") == Some(state.key.as_str()),
    };
    if !authorised {
        return Err(Box::new(match auth {
            Auth::Bearer => fixture_error(StatusCode::UNAUTHORIZED, ERROR_INVALID_KEY),
            Auth::AzureKey => fixture_error(StatusCode::UNAUTHORIZED, compat::AZURE_ERROR_KEY),
        }));
    }
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n != body.len()) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "content-length does not match the body",
            None,
        )));
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            None,
        )));
    };
    if let Some(unknown) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("Unrecognized request argument supplied: {unknown}"),
            None,
        )));
    }
    Ok(obj)
}

async fn chat(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match admit(
        &state,
        (method, &uri, &headers, &body),
        CHAT_FIELDS,
        Auth::Bearer,
    ) {
        Ok(obj) => {
            if obj.get("model").and_then(Value::as_str) == Some("mock-slow") {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            chat_answer(state, obj)
        }
        Err(r) => *r,
    }
}

/// Whether a (non-streamed) chat request should be answered with a tool call: tools are offered
/// and the conversation does not end with a tool's result.
pub(crate) fn wants_tool_call(obj: &serde_json::Map<String, Value>) -> bool {
    let last_role = obj
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str);
    obj.get("tools")
        .is_some_and(|t| t.as_array().is_some_and(|t| !t.is_empty()))
        && last_role != Some("tool")
}

/// The answer to an admitted chat request, streamed or not (see the module's special models).
pub(crate) fn chat_answer(state: Arc<MockState>, obj: serde_json::Map<String, Value>) -> Response {
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !state.chat_models.contains(&model) {
        return fixture_error(StatusCode::NOT_FOUND, ERROR_MODEL_NOT_FOUND);
    }
    let messages_ok = obj
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m.get("role").is_some()));
    if !messages_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "'messages' must be a non-empty array of messages with a role.",
            None,
        );
    }
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let fixture = if wants_tool_call(&obj) {
            CHAT_TOOL_CALL
        } else {
            CHAT_COMPLETION
        };
        let text = fixture.replace("gpt-4o-mini-2024-07-18", &model);
        // What OpenAI sends besides: none of it is the client's business.
        let mut headers = vec![
            ("content-type", "application/json"),
            ("set-cookie", PROVIDER_COOKIE),
            ("openai-organization", "org-mock-provider"),
            ("x-ratelimit-remaining-requests", "4999"),
        ];
        if model == "mock-gzip" {
            // A provider that compresses although nobody asked it to.
            headers.push(("content-encoding", "gzip"));
        }
        let mut response = text.into_response();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                axum::http::HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        return response;
    }
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut events: Vec<String> = CHAT_STREAM
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| format!("{}\n\n", e.replace("gpt-4o-mini-2024-07-18", &model)))
        .collect();
    if !include_usage {
        events.retain(|e| !e.contains("\"choices\":[]"));
        for e in &mut events {
            *e = e.replace(",\"usage\":null", "");
        }
    }
    let state = state.clone();
    let body = async_stream::stream! {
        let last = events.len();
        for (i, event) in events.into_iter().enumerate() {
            match model.as_str() {
                "mock-gated" if i == 1 => state.gate.notified().await,
                // Text has been sent; the rest (the usage included) waits.
                "mock-held" if i == 3 => state.gate.notified().await,
                "mock-cut" if i == 2 => {
                    yield Err(std::io::Error::other("connection cut by the mock"));
                    return;
                }
                "mock-truncated" if i == last - 1 => return,
                _ => {}
            }
            yield Ok::<_, std::io::Error>(Bytes::from(event));
            tokio::task::yield_now().await;
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("set-cookie", PROVIDER_COOKIE)
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn images(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let obj = match admit(
        &state,
        (method, &uri, &headers, &body),
        IMAGE_FIELDS,
        Auth::Bearer,
    ) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if obj.get("model").and_then(Value::as_str) != Some("gpt-image-1") {
        return fixture_error(StatusCode::NOT_FOUND, ERROR_MODEL_NOT_FOUND);
    }
    if !obj.get("prompt").is_some_and(Value::is_string) {
        return error(
            StatusCode::BAD_REQUEST,
            "'prompt' is a required property",
            None,
        );
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        IMAGE_GENERATION,
    )
        .into_response()
}

async fn embeddings(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let obj = match admit(
        &state,
        (method, &uri, &headers, &body),
        EMBEDDING_FIELDS,
        Auth::Bearer,
    ) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let model = obj.get("model").and_then(Value::as_str).unwrap_or_default();
    if !state.embedding_models.iter().any(|m| m == model) {
        return fixture_error(StatusCode::NOT_FOUND, ERROR_MODEL_NOT_FOUND);
    }
    match obj.get("input") {
        Some(Value::String(_)) | Some(Value::Array(_)) => {}
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "'input' is a required property",
                None,
            )
        }
    }
    // One vector per input (the fixture's), as floats or, when asked, base64 of f32 LE.
    let inputs = match obj.get("input") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    let mut answer: Value = serde_json::from_str(EMBEDDINGS).unwrap_or_default();
    let vector = answer["data"][0]["embedding"].clone();
    let base64 = obj.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let embedding = if base64 {
        use base64::Engine as _;
        let bytes: Vec<u8> = vector
            .as_array()
            .map(|v| {
                v.iter()
                    .flat_map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
                    .collect()
            })
            .unwrap_or_default();
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        vector
    };
    answer["data"] = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": embedding}))
        .collect();
    answer["model"] = json!(model);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

/// An Anthropic error: `{"type":"error","error":{"type","message"}}`.
pub(crate) fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `POST /v1/messages`, checked the way the Anthropic API checks it.
async fn messages(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, method, &uri, &headers, &body);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("x-api-key") != Some(state.key.as_str()) {
        return anthropic_error(401, "authentication_error", "invalid x-api-key");
    }
    if header("anthropic-version") != Some("2023-06-01") {
        return anthropic_error(
            400,
            "invalid_request_error",
            "anthropic-version header is required",
        );
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&body) else {
        return anthropic_error(400, "invalid_request_error", "invalid JSON body");
    };
    messages_answer_gated(obj, Some(state))
}

/// The answer to a Messages request whose credentials were accepted (also Claude on Vertex).
pub(crate) fn messages_answer(obj: serde_json::Map<String, Value>) -> Response {
    messages_answer_gated(obj, None)
}

/// As [`messages_answer`]; model `claude-gated` holds its stream after the first two events
/// until the gate opens.
fn messages_answer_gated(
    obj: serde_json::Map<String, Value>,
    state: Option<Arc<MockState>>,
) -> Response {
    if let Some(extra) = obj.keys().find(|k| !ANTHROPIC_FIELDS.contains(&k.as_str())) {
        return anthropic_error(
            400,
            "invalid_request_error",
            &format!("{extra}: Extra inputs are not permitted"),
        );
    }
    if !obj.get("max_tokens").is_some_and(Value::is_u64) {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    let messages_ok = obj
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|m| {
            !m.is_empty()
                && m.iter().all(|m| {
                    matches!(
                        m.get("role").and_then(Value::as_str),
                        Some("user" | "assistant")
                    ) && m.get("content").is_some()
                })
        });
    if !messages_ok {
        return anthropic_error(400, "invalid_request_error", "messages: invalid");
    }
    let model = obj.get("model").and_then(Value::as_str).unwrap_or_default();
    if !ANTHROPIC_MODELS.contains(&model) {
        return anthropic_error(404, "not_found_error", &format!("model: {model}"));
    }
    if model == "claude-huge" {
        // An answer far over any sane size: 2 MiB of text.
        let mut answer: Value = serde_json::from_str(ANTHROPIC_MESSAGE).unwrap_or_default();
        answer["content"][0]["text"] = Value::String("x".repeat(2 << 20));
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            answer.to_string(),
        )
            .into_response();
    }
    if model == "claude-overloaded" {
        return anthropic_error(529, "overloaded_error", "Overloaded");
    }
    if model == "claude-rate-limited" {
        // Anthropic's 429 says when to come back, in `retry-after` (seconds).
        let mut r = anthropic_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit.",
        );
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("17"));
        return r;
    }
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        let gate = state.filter(|_| model == "claude-gated");
        let events: Vec<String> = ANTHROPIC_STREAM
            .split_inclusive("\n\n")
            .map(str::to_owned)
            .collect();
        let body = async_stream::stream! {
            for (i, event) in events.into_iter().enumerate() {
                if i == 2 {
                    if let Some(state) = &gate {
                        state.gate.notified().await;
                    }
                }
                yield Ok::<_, std::io::Error>(Bytes::from(event));
            }
        };
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/event-stream; charset=utf-8")
            .body(Body::from_stream(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    // Tools offered and no tool result in the last turn: the model calls one.
    let answered = obj
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    let answer = if obj.contains_key("tools") && !answered {
        ANTHROPIC_TOOL_USE
    } else {
        ANTHROPIC_MESSAGE
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        answer,
    )
        .into_response()
}
