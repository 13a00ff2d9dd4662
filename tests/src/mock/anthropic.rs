//! The Anthropic side of the mock: `POST /v1/messages` checked the way the Anthropic API checks
//! it (`x-api-key`, `anthropic-version`, required fields, no unknown fields) and answered from
//! the fixtures; models `claude-overloaded` (529), `claude-rate-limited` (429 with
//! `retry-after`), `claude-gated` (a held stream) and `claude-huge` (2 MiB of text).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{record, MockState};

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
pub(crate) async fn messages(
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
