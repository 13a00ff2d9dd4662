//! The OpenAI side of the mock: Chat Completions (streamed or not, with the special models of
//! [`super`]), embeddings and image generation, each checked as OpenAI checks it (bearer key or
//! Azure's `api-key`, declared length, JSON body, known arguments only).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{compat, fixture_error, record, MockState};

/// A cookie the mock sets on its chat answers (the gateway must not pass it on).
pub const PROVIDER_COOKIE: &str = "__cf_bm=mock-provider-session; path=/; HttpOnly";
pub const CHAT_COMPLETION: &str = include_str!("../../fixtures/openai/chat_completion.json");
pub const CHAT_STREAM: &str = include_str!("../../fixtures/openai/chat_stream_usage.sse");
const CHAT_TOOL_CALL: &str = include_str!("../../fixtures/openai/chat_tool_call.json");
pub const EMBEDDINGS: &str = include_str!("../../fixtures/openai/embeddings.json");
pub(crate) const ERROR_INVALID_KEY: &str =
    include_str!("../../fixtures/openai/error_invalid_api_key.json");
const ERROR_MODEL_NOT_FOUND: &str =
    include_str!("../../fixtures/openai/error_model_not_found.json");
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

pub(crate) fn error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
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

pub(crate) async fn chat(
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

pub(crate) async fn images(
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

pub(crate) async fn embeddings(
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
