//! Gemini API (AI Studio) as the mock provider: `POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent` (SSE with `?alt=sse`, a JSON array without), checked the way
//! Google checks it: `x-goog-api-key`, known models, JSON with no unknown fields, roles `user`
//! and `model`, one datum per part, function responses as objects.
//!
//! Answers come from `tests/fixtures/openai_gemini/`: a request with tools whose last turn holds
//! no function response gets a function call, any other a text. Model `gemini-overloaded`
//! answers 503 UNAVAILABLE.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{record, streamed, MockState};

pub const MODELS: &[&str] = &[
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-overloaded",
    "gemini-rate-limited",
];
const TEXT: &str = include_str!("../../fixtures/openai_gemini/simple/upstream_response.json");
const CALL: &str = include_str!("../../fixtures/openai_gemini/tools/upstream_response.json");
const TEXT_STREAM: &str = include_str!("../../fixtures/openai_gemini/stream/upstream_response.sse");
const CALL_STREAM: &str =
    include_str!("../../fixtures/openai_gemini/stream_tools/upstream_response.sse");
const FIXTURE_MODEL: &str = "gemini-2.5-flash";

const REQUEST_FIELDS: &[&str] = &[
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
];
const GENERATION_FIELDS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "mediaResolution",
];
const PART_DATA: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
];
const PART_FIELDS: &[&str] = &["thought", "thoughtSignature"];

pub const EMBEDDING_MODEL: &str = "gemini-embedding-001";
pub const IMAGE_MODEL: &str = "imagen-4.0-generate-001";

/// `batchEmbedContents`: every request names the model and holds text parts; vectors of
/// `outputDimensionality` (default 3) whose first value is the request's position.
fn embed(model: &str, body: &[u8]) -> Response {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid JSON payload received.".into());
    };
    if let Some(k) = obj.keys().find(|k| *k != "requests") {
        return invalid(unknown_field(k));
    }
    let Some(requests) = obj
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
    else {
        return invalid("* BatchEmbedContentsRequest.requests: requests must not be empty".into());
    };
    let mut embeddings = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if r["model"] != format!("models/{model}") {
            return invalid(
                "* BatchEmbedContentsRequest.requests[].model: model must match the batch model"
                    .into(),
            );
        }
        let text_only = r["content"]["parts"]
            .as_array()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["text"].is_string()));
        if !text_only {
            return invalid("* content.parts: text parts are required".into());
        }
        let dims = r["outputDimensionality"].as_u64().unwrap_or(3) as usize;
        let values: Vec<f64> = (0..dims).map(|d| i as f64 + d as f64 / 10.0).collect();
        embeddings.push(json!({ "values": values }));
    }
    let body = json!({ "embeddings": embeddings }).to_string();
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

/// Imagen `predict`: one prompt, `sampleCount` images (tiny PNGs, base64).
fn predict(body: &[u8]) -> Response {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid JSON payload received.".into());
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["instances", "parameters"].contains(&k.as_str()))
    {
        return invalid(unknown_field(k));
    }
    if !obj["instances"][0]["prompt"].is_string() {
        return invalid("* instances[0].prompt is required".into());
    }
    let params = obj.get("parameters").and_then(Value::as_object);
    const PARAMS: &[&str] = &[
        "sampleCount",
        "aspectRatio",
        "personGeneration",
        "imageSize",
        "outputOptions",
    ];
    if let Some(k) = params.and_then(|p| p.keys().find(|k| !PARAMS.contains(&k.as_str()))) {
        return invalid(unknown_field(k));
    }
    let n = params
        .and_then(|p| p.get("sampleCount"))
        .and_then(Value::as_u64)
        .unwrap_or(4);
    let predictions: Vec<Value> = (0..n)
        .map(|_| json!({"mimeType": "image/png", "bytesBase64Encoded": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="}))
        .collect();
    let body = json!({ "predictions": predictions }).to_string();
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

/// Google's error body.
pub fn error(code: u16, status: &str, message: &str, details: Value) -> Response {
    let body =
        json!({"error": {"code": code, "message": message, "status": status, "details": details}});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn invalid(message: String) -> Response {
    error(400, "INVALID_ARGUMENT", &message, json!([]))
}

fn unknown_field(name: &str) -> String {
    format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
}

/// Every refusal is a 400 INVALID_ARGUMENT with this message.
fn check_part(part: &Value) -> Result<(), String> {
    let Some(obj) = part.as_object() else {
        return Err("parts must be objects".into());
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !PART_DATA.contains(&k.as_str()) && !PART_FIELDS.contains(&k.as_str()))
    {
        return Err(unknown_field(k));
    }
    if obj
        .keys()
        .filter(|k| PART_DATA.contains(&k.as_str()))
        .count()
        != 1
    {
        return Err(
            "* GenerateContentRequest.contents.parts: a part must hold exactly one datum".into(),
        );
    }
    if let Some(r) = obj.get("functionResponse") {
        if !r.get("name").is_some_and(Value::is_string)
            || !r.get("response").is_some_and(Value::is_object)
        {
            return Err("* functionResponse needs a name and a response object".into());
        }
    }
    if let Some(c) = obj.get("functionCall") {
        if !c.get("name").is_some_and(Value::is_string) {
            return Err("* functionCall needs a name".into());
        }
    }
    Ok(())
}

fn check(obj: &Map<String, Value>) -> Result<(), String> {
    if let Some(k) = obj.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(unknown_field(k));
    }
    if let Some(config) = obj.get("generationConfig").and_then(Value::as_object) {
        if let Some(k) = config
            .keys()
            .find(|k| !GENERATION_FIELDS.contains(&k.as_str()))
        {
            return Err(unknown_field(&format!("generation_config.{k}")));
        }
    }
    let contents = obj.get("contents").and_then(Value::as_array);
    let Some(contents) = contents.filter(|c| !c.is_empty()) else {
        return Err("* GenerateContentRequest.contents: contents is not specified".into());
    };
    for content in contents {
        if !matches!(
            content.get("role").and_then(Value::as_str),
            Some("user" | "model")
        ) {
            return Err("Please use a valid role: user, model.".into());
        }
        let parts = content.get("parts").and_then(Value::as_array);
        let Some(parts) = parts.filter(|p| !p.is_empty()) else {
            return Err(
                "* GenerateContentRequest.contents.parts: contents.parts must not be empty.".into(),
            );
        };
        parts.iter().try_for_each(check_part)?;
    }
    if let Some(system) = obj.get("systemInstruction") {
        system
            .get("parts")
            .and_then(Value::as_array)
            .ok_or_else(|| String::from("systemInstruction needs parts"))?
            .iter()
            .try_for_each(check_part)?;
    }
    if let Some(tools) = obj.get("tools") {
        let named = tools.as_array().is_some_and(|tools| {
            tools.iter().all(|t| {
                t.get("functionDeclarations")
                    .and_then(Value::as_array)
                    .is_some_and(|d| {
                        d.iter()
                            .all(|d| d.get("name").is_some_and(Value::is_string))
                    })
            })
        });
        if !named {
            return Err("* tools: every function declaration needs a name".into());
        }
    }
    Ok(())
}

/// Whether the model should call a tool: tools are offered and the last turn answers none.
fn wants_call(obj: &Map<String, Value>) -> bool {
    let answered = obj
        .get("contents")
        .and_then(Value::as_array)
        .and_then(|c| c.last())
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .is_some_and(|p| p.iter().any(|p| p.get("functionResponse").is_some()));
    obj.contains_key("tools") && !answered
}

pub async fn generate(
    State(state): State<Arc<MockState>>,
    Path(target): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, method, &uri, &headers, &body);
    let key = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok());
    if key != Some(state.key.as_str()) {
        return error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com"}]),
        );
    }
    answer(&target, &uri, &body)
}

/// The answer to a `{model}:{action}` request whose credentials were accepted (also Gemini on
/// Vertex AI).
pub(crate) fn answer(target: &str, uri: &Uri, body: &[u8]) -> Response {
    let (model, action) = target.split_once(':').unwrap_or((target, ""));
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        "batchEmbedContents" if model == EMBEDDING_MODEL => return embed(model, body),
        "predict" if model == IMAGE_MODEL => return predict(body),
        _ => return error(404, "NOT_FOUND", "Method not found.", json!([])),
    };
    if !MODELS.contains(&model) {
        return error(
            404,
            "NOT_FOUND",
            &format!("models/{model} is not found for API version v1beta, or is not supported for generateContent."),
            json!([]),
        );
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid JSON payload received.".into());
    };
    if let Err(message) = check(&obj) {
        return invalid(message);
    }
    if model == "gemini-rate-limited" {
        // Google says when to come back in the body (RetryInfo), not in a header.
        return error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]),
        );
    }
    if model == "gemini-overloaded" {
        return error(
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            json!([]),
        );
    }
    let call = wants_call(&obj);
    if !stream {
        let text = if call { CALL } else { TEXT }.replace(FIXTURE_MODEL, model);
        return (
            StatusCode::OK,
            [("content-type", "application/json; charset=UTF-8")],
            text,
        )
            .into_response();
    }
    let events = if call { CALL_STREAM } else { TEXT_STREAM }.replace(FIXTURE_MODEL, model);
    if uri.query() != Some("alt=sse") {
        // Without alt=sse the stream is one JSON array of responses.
        let items: Vec<&str> = events
            .split("\r\n\r\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        let body = format!("[{}]", items.join(",\r\n"));
        return (
            StatusCode::OK,
            [("content-type", "application/json; charset=UTF-8")],
            body,
        )
            .into_response();
    }
    streamed(
        "text/event-stream",
        events
            .split_inclusive("\r\n\r\n")
            .map(|e| Bytes::from(e.to_owned())),
    )
}
