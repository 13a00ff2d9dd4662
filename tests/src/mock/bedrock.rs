//! Amazon Bedrock Converse as the mock provider: `POST /model/{modelId}/converse` and
//! `/converse-stream`, checked the way Bedrock checks them: a SigV4 signature (recomputed with
//! the mock's secret over the request as it arrived, within five minutes of now) or a Bedrock
//! API key as a bearer token; known models; no unknown fields; one member per content block;
//! `toolConfig` whenever tool blocks appear. Streams are AWS event streams.
//!
//! Answers come from `tests/fixtures/openai_bedrock/`: a request with tools whose last turn holds
//! no tool result gets a tool call, any other a text. Model `bedrock-throttled` answers 429.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use switchyard_aws::{eventstream, sigv4};

use super::{record, streamed, MockState};

/// The access key id the mock accepts; its secret access key is the mock's key.
pub const ACCESS_KEY_ID: &str = "AKIAMOCKEXAMPLE";
pub const MODELS: &[&str] = &[
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "bedrock-throttled",
];
const TEXT: &str = include_str!("../../fixtures/openai_bedrock/simple/upstream_response.json");
const CALL: &str = include_str!("../../fixtures/openai_bedrock/tools/upstream_response.json");
const TEXT_STREAM: &str =
    include_str!("../../fixtures/openai_bedrock/stream/upstream_response.events.json");
const CALL_STREAM: &str =
    include_str!("../../fixtures/openai_bedrock/stream_tools/upstream_response.events.json");

const FIELDS: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "guardrailConfig",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
];
const BLOCKS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "toolUse",
    "toolResult",
    "guardContent",
    "reasoningContent",
    "cachePoint",
];

/// Bedrock's error: `{"message"}` with the type in `x-amzn-errortype`.
pub(crate) fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", kind),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether an `x-amz-date` value is within five minutes of now (the format sorts as text).
fn current(amz_date: &str) -> bool {
    let t = now();
    amz_date.len() == 16
        && sigv4::amz_date(t.saturating_sub(300)).as_str() <= amz_date
        && amz_date <= sigv4::amz_date(t + 300).as_str()
}

/// Whether the request carries a valid signature (or API key); the refusal otherwise.
pub(crate) fn authenticate(
    state: &MockState,
    method: &str,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<(), Box<Response>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = header("authorization").unwrap_or_default();
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return if token == state.key {
            Ok(())
        } else {
            Err(Box::new(error(
                403,
                "AccessDeniedException",
                "Invalid API Key format: Must start with pre-defined prefix",
            )))
        };
    }
    let invalid = || {
        Box::new(error(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ))
    };
    let scope = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .and_then(|rest| rest.split(',').next())
        .ok_or_else(|| {
            Box::new(error(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ))
        })?;
    let parts: Vec<&str> = scope.split('/').collect();
    if parts.len() != 5 || parts[0] != ACCESS_KEY_ID || parts[3] != "bedrock" {
        return Err(Box::new(error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )));
    }
    let amz_date = header("x-amz-date").ok_or_else(invalid)?;
    if !current(amz_date) {
        return Err(Box::new(error(
            403,
            "InvalidSignatureException",
            "Signature expired or not yet current.",
        )));
    }
    let expected = sigv4::sign(
        &sigv4::Request {
            method,
            host: header("host").unwrap_or_default(),
            path: uri.path(),
            query: uri.query().unwrap_or_default(),
            content_type: header("content-type").unwrap_or_default(),
            body,
        },
        &sigv4::Credentials {
            access_key_id: ACCESS_KEY_ID,
            secret_access_key: &state.key,
            session_token: header("x-amz-security-token"),
        },
        parts[2],
        "bedrock",
        amz_date,
    );
    if expected.authorization == auth {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// `InvokeModel` for the embedding models: Titan Text Embeddings v2 (one `inputText`) and
/// Cohere Embed (`texts` with a required `input_type`), each checked against its own fields.
fn invoke(model: &str, body: &[u8]) -> Response {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return error(
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        );
    };
    let (fields, ok): (&[&str], bool) = match model {
        "amazon.titan-embed-text-v2:0" => (
            &["inputText", "dimensions", "normalize", "embeddingTypes"],
            obj.get("inputText").is_some_and(Value::is_string),
        ),
        "cohere.embed-english-v3" => (
            &[
                "texts",
                "input_type",
                "truncate",
                "embedding_types",
                "images",
            ],
            obj.get("texts").is_some_and(Value::is_array)
                && obj.get("input_type").is_some_and(Value::is_string),
        ),
        _ => {
            return error(
                400,
                "ValidationException",
                "The provided model identifier is invalid.",
            )
        }
    };
    if let Some(k) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return error(400, "ValidationException", &format!("Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again."));
    }
    if !ok {
        return error(400, "ValidationException", "Malformed input request: required key missing, please reformat your input and try again.");
    }
    let answer = if model.starts_with("amazon.titan") {
        let dims = obj.get("dimensions").and_then(Value::as_u64).unwrap_or(4) as usize;
        json!({"embedding": vec![0.5; dims], "inputTextTokenCount": 5})
    } else {
        let n = obj["texts"].as_array().map_or(0, Vec::len);
        let texts = obj["texts"].clone();
        json!({"id": "emb-1", "embeddings": {"float": vec![vec![0.25; 4]; n]}, "texts": texts,
               "response_type": "embeddings_by_type"})
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

fn check(obj: &Map<String, Value>) -> Result<(), String> {
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again."));
    }
    let messages = obj.get("messages").and_then(Value::as_array);
    let Some(messages) = messages.filter(|m| !m.is_empty()) else {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    };
    let mut tool_blocks = false;
    for m in messages {
        if !matches!(
            m.get("role").and_then(Value::as_str),
            Some("user" | "assistant")
        ) {
            return Err("1 validation error detected: Value at 'messages.role' failed to satisfy constraint".into());
        }
        let blocks = m.get("content").and_then(Value::as_array);
        let Some(blocks) = blocks.filter(|b| !b.is_empty()) else {
            return Err("The content field in the Message object is empty.".into());
        };
        for b in blocks {
            let Some(b) = b.as_object().filter(|b| b.len() == 1) else {
                return Err("A content block must have exactly one member.".into());
            };
            let (k, _) = b.iter().next().ok_or("empty block")?;
            if !BLOCKS.contains(&k.as_str()) {
                return Err(format!(
                    "Malformed input request: extraneous key [{k}] is not permitted"
                ));
            }
            tool_blocks |= k == "toolUse" || k == "toolResult";
        }
    }
    if tool_blocks && !obj.contains_key("toolConfig") {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    Ok(())
}

fn wants_call(obj: &Map<String, Value>) -> bool {
    let answered = obj
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolResult").is_some()));
    obj.get("toolConfig")
        .is_some_and(|c| c.get("tools").is_some())
        && !answered
}

/// The events of a fixture as one AWS event stream.
fn frames(events: &str) -> Vec<Bytes> {
    let events: Vec<Value> = serde_json::from_str(events).unwrap_or_default();
    events
        .iter()
        .map(|e| {
            let headers: Vec<(&str, &str)> = e["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                        .collect()
                })
                .unwrap_or_default();
            Bytes::from(eventstream::encode(
                &headers,
                e["payload"].to_string().as_bytes(),
            ))
        })
        .collect()
}

pub async fn converse(
    State(state): State<Arc<MockState>>,
    Path((model, action)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, method, &uri, &headers, &body);
    if let Err(refusal) = authenticate(&state, "POST", &headers, &uri, &body) {
        return *refusal;
    }
    let stream = match action.as_str() {
        "converse" => false,
        "converse-stream" => true,
        "invoke" => return invoke(&model, &body),
        _ => return error(404, "UnknownOperationException", "Unknown operation"),
    };
    if !MODELS.contains(&model.as_str()) {
        return error(
            400,
            "ValidationException",
            "The provided model identifier is invalid.",
        );
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        );
    };
    if let Err(message) = check(&obj) {
        return error(400, "ValidationException", &message);
    }
    if model == "bedrock-throttled" {
        return error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        );
    }
    let call = wants_call(&obj);
    if !stream {
        let text = if call { CALL } else { TEXT };
        return (StatusCode::OK, [("content-type", "application/json")], text).into_response();
    }
    streamed(
        "application/vnd.amazon.eventstream",
        frames(if call { CALL_STREAM } else { TEXT_STREAM }),
    )
}
