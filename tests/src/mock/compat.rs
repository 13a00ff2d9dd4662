//! OpenAI-style providers that differ from OpenAI, as mock providers:
//!
//! - Azure OpenAI at `POST /openai/deployments/{deployment}/chat/completions?api-version=...`:
//!   `api-key` header, a supported `api-version`, a known deployment (the mock's chat models),
//!   Azure's error bodies; answers carry Azure's content filter annotations.
//! - Mistral at `POST /mistral/v1/chat/completions`: Mistral's own field list with unknown
//!   fields refused (422), `random_seed` rather than `seed`, no `stream_options`; the stream's
//!   usage rides on its last chunk.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{
    admit, chat_answer, fixture_error, streamed, wants_tool_call, Auth, MockState, CHAT_FIELDS,
};

pub(crate) const AZURE_ERROR_KEY: &str =
    include_str!("../../fixtures/azure/error_invalid_key.json");
const AZURE_NO_DEPLOYMENT: &str =
    include_str!("../../fixtures/azure/error_deployment_not_found.json");
pub(crate) const AZURE_NOT_FOUND: &str =
    include_str!("../../fixtures/azure/error_resource_not_found.json");
const AZURE_CHAT: &str = include_str!("../../fixtures/azure/chat_completion.json");
const AZURE_API_VERSIONS: &[&str] = &["2024-06-01", "2024-10-21", "2025-04-01-preview"];

const MISTRAL_STREAM: &str = include_str!("../../fixtures/mistral/chat_stream.sse");
const MISTRAL_EXTRA_FIELD: &str = include_str!("../../fixtures/mistral/error_extra_field.json");
const MISTRAL_FIELDS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "prediction",
    "parallel_tool_calls",
    "safe_prompt",
    "prompt_mode",
];

pub async fn azure_chat(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut obj = match admit(
        &state,
        (method, &uri, &headers, &body),
        CHAT_FIELDS,
        Auth::AzureKey,
    ) {
        Ok(obj) => obj,
        Err(r) => return *r,
    };
    let version = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("api-version=")));
    if !version.is_some_and(|v| AZURE_API_VERSIONS.contains(&v)) {
        return fixture_error(StatusCode::NOT_FOUND, AZURE_NOT_FOUND);
    }
    if !state.chat_models.contains(&deployment) {
        return fixture_error(StatusCode::NOT_FOUND, AZURE_NO_DEPLOYMENT);
    }
    // The deployment decides the model, whatever the body says.
    obj.insert("model".into(), Value::String(deployment));
    if obj.get("stream").and_then(Value::as_bool) == Some(true) || wants_tool_call(&obj) {
        return chat_answer(state, obj);
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        AZURE_CHAT,
    )
        .into_response()
}

pub async fn mistral_chat(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Mistral's own field list: what OpenAI takes and Mistral does not is refused below.
    let all: Vec<&str> = MISTRAL_FIELDS.iter().chain(CHAT_FIELDS).copied().collect();
    let obj = match admit(&state, (method, &uri, &headers, &body), &all, Auth::Bearer) {
        Ok(obj) => obj,
        Err(r) => return *r,
    };
    if let Some(extra) = obj.keys().find(|k| !MISTRAL_FIELDS.contains(&k.as_str())) {
        let text = MISTRAL_EXTRA_FIELD.replace("FIELD", extra);
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            [("content-type", "application/json")],
            text,
        )
            .into_response();
    }
    if obj.get("stream").and_then(Value::as_bool) != Some(true) {
        return chat_answer(state, obj);
    }
    streamed(
        "text/event-stream",
        MISTRAL_STREAM
            .split_inclusive("\n\n")
            .map(|e| Bytes::from(e.to_owned())),
    )
}
