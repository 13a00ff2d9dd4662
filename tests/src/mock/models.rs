//! The providers' model lists, in each provider's documented format, answered only once a test
//! gives the mock a list ([`super::MockOpenAi::list_models`]; until then 404, as before):
//!
//! - OpenAI `GET /v1/models` (bearer key): `{"object":"list","data":[{"id","object":"model",
//!   "created","owned_by"}]}`, one page.
//! - Anthropic `GET /v1/models` (with `anthropic-version`, `x-api-key`): `{"data":[{"type":
//!   "model","id","display_name","created_at"}],"has_more","first_id","last_id"}`, paged by
//!   `limit` (1-1000, default 20), `after_id`, `before_id`.
//! - Gemini `GET /v1beta/models` (`x-goog-api-key`): `{"models":[{"name":"models/..",
//!   "displayName","inputTokenLimit","outputTokenLimit","supportedGenerationMethods",
//!   "thinking"}],"nextPageToken"}`, paged by `pageSize` (default 50, at most 1000) and an
//!   opaque `pageToken`.
//! - Azure OpenAI `GET /openai/deployments?api-version=2022-12-01` (`api-key`): the deployments.
//! - Bedrock `GET /foundation-models` (SigV4 for `bedrock`, or a Bedrock API key):
//!   `{"modelSummaries":[...]}`, one page (Claude Sonnet 4.5 only through an inference
//!   profile, as on AWS); `GET /inference-profiles?maxResults=&nextToken=`: the profiles,
//!   listed as `profile=model`, paged by an opaque `nextToken`.
//!
//! The mock's page size caps every page ([`super::MockOpenAi::set_model_page_size`]), so that
//! tests see paging with a few models; [`super::MockOpenAi::fail_model_lists`] makes every list
//! answer 500.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};

use super::{anthropic_error, fixture_error, record, MockState, ERROR_INVALID_KEY};

/// The list formats, one list each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    OpenAi,
    Anthropic,
    Gemini,
    Azure,
    Bedrock,
    BedrockProfiles,
}

/// What the mock lists, per format (absent: the list endpoint answers 404).
#[derive(Default)]
pub(crate) struct Lists {
    pub lists: HashMap<Format, Vec<String>>,
    /// Most models in one page (0: as the client asks).
    pub page_size: usize,
    pub fail: bool,
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The list for `format` and the page size, or the answer when there is none to give.
fn listed(state: &MockState, format: Format) -> Result<(Vec<String>, usize), Box<Response>> {
    let lists = state
        .models
        .lock()
        .map_err(|_| Box::new(StatusCode::INTERNAL_SERVER_ERROR.into_response()))?;
    let Some(list) = lists.lists.get(&format) else {
        return Err(Box::new(
            (StatusCode::NOT_FOUND, "not found").into_response(),
        ));
    };
    if lists.fail {
        return Err(Box::new((
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/json")],
            json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}).to_string(),
        )
            .into_response()));
    }
    Ok((list.clone(), lists.page_size))
}

/// An opaque page token: base64 of `tag` and the next offset (with `+`, `/` or `=` in it).
fn page_token(tag: &str, offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{tag}>>?{offset}"))
}

/// The offset a token from [`page_token`] with `tag` stands for.
fn page_offset(tag: &str, token: &str) -> Option<usize> {
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()?,
    )
    .ok()?;
    text.strip_prefix(tag)?.strip_prefix(">>?")?.parse().ok()
}

fn page_len(asked: usize, cap: usize) -> usize {
    if cap == 0 {
        asked
    } else {
        asked.min(cap)
    }
}

/// `GET /v1/models`: Anthropic's list for Anthropic clients, else OpenAI's.
pub async fn list(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let format = if header("anthropic-version").is_some() {
        Format::Anthropic
    } else {
        Format::OpenAi
    };
    let (list, cap) = match listed(&state, format) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    record(&state, method, &uri, &headers, &Bytes::new());
    if format == Format::OpenAi {
        if header("authorization") != Some(&format!("Bearer {}", state.key)) {
            return fixture_error(StatusCode::UNAUTHORIZED, ERROR_INVALID_KEY);
        }
        let data: Vec<Value> = list
            .iter()
            .map(|id| json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"}))
            .collect();
        return axum::Json(json!({"object": "list", "data": data})).into_response();
    }
    if header("x-api-key") != Some(state.key.as_str()) {
        return anthropic_error(401, "authentication_error", "invalid x-api-key");
    }
    let q = query(&uri);
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return anthropic_error(
                400,
                "invalid_request_error",
                "limit: Input should be less than or equal to 1000",
            )
        }
    };
    let n = page_len(limit, cap);
    let position = |id: &str| list.iter().position(|m| m == id);
    let (start, end) = match (q.get("after_id"), q.get("before_id")) {
        (Some(after), _) => {
            let start = position(after).map_or(list.len(), |i| i + 1);
            (start, (start + n).min(list.len()))
        }
        (None, Some(before)) => {
            let end = position(before).unwrap_or(0);
            (end.saturating_sub(n), end)
        }
        (None, None) => (0, n.min(list.len())),
    };
    let page = &list[start..end];
    let data: Vec<Value> = page
        .iter()
        .map(|id| {
            json!({"type": "model", "id": id, "display_name": display(id),
                   "created_at": "2025-09-29T00:00:00Z"})
        })
        .collect();
    axum::Json(json!({
        "data": data,
        "has_more": end < list.len(),
        "first_id": page.first(),
        "last_id": page.last(),
    }))
    .into_response()
}

/// A display name as the providers write them: `claude-sonnet-4-5` -> `Claude Sonnet 4 5`.
fn display(id: &str) -> String {
    id.split(['-', '.'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /v1beta/models`.
pub async fn gemini(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (list, cap) = match listed(&state, Format::Gemini) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    record(&state, method, &uri, &headers, &Bytes::new());
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(state.key.as_str()) {
        return super::gemini::error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com"}]),
        );
    }
    let q = query(&uri);
    let size = q
        .get("pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(50)
        .min(1000);
    let start = match q.get("pageToken") {
        None => 0,
        Some(token) => match page_offset("offset", token) {
            Some(n) => n,
            None => {
                return super::gemini::error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid page token.",
                    json!([]),
                )
            }
        },
    };
    let end = (start + page_len(size, cap)).min(list.len());
    let models: Vec<Value> = list[start.min(end)..end]
        .iter()
        .map(|id| {
            let methods: &[&str] = if id.contains("embedding") {
                &[
                    "embedContent",
                    "countTextTokens",
                    "countTokens",
                    "asyncBatchEmbedContent",
                ]
            } else if id.contains("imagen") {
                &["predict"]
            } else {
                &[
                    "generateContent",
                    "countTokens",
                    "createCachedContent",
                    "batchGenerateContent",
                ]
            };
            json!({
                "name": format!("models/{id}"),
                "version": "001",
                "displayName": display(id),
                "description": format!("{} model", display(id)),
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 65_536,
                "supportedGenerationMethods": methods,
                "temperature": 1.0,
                "topP": 0.95,
                "topK": 64,
                "maxTemperature": 2.0,
                "thinking": id.contains("2.5"),
            })
        })
        .collect();
    let mut body = json!({ "models": models });
    if end < list.len() {
        body["nextPageToken"] = json!(page_token("offset", end));
    }
    axum::Json(body).into_response()
}

/// `GET /openai/deployments?api-version=2022-12-01` (listed as `deployment=model`, or the
/// name alone when both are the same).
pub async fn azure(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (list, _) = match listed(&state, Format::Azure) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    record(&state, method, &uri, &headers, &Bytes::new());
    if headers.get("api-key").and_then(|v| v.to_str().ok()) != Some(state.key.as_str()) {
        return fixture_error(StatusCode::UNAUTHORIZED, super::compat::AZURE_ERROR_KEY);
    }
    if query(&uri).get("api-version").map(String::as_str) != Some("2022-12-01") {
        return fixture_error(StatusCode::NOT_FOUND, super::compat::AZURE_NOT_FOUND);
    }
    let data: Vec<Value> = list
        .iter()
        .map(|entry| {
            let (id, model) = entry.split_once('=').unwrap_or((entry, entry));
            json!({"scale_settings": {"scale_type": "standard"}, "model": model,
                   "owner": "organization-owner", "id": id, "status": "succeeded",
                   "created_at": 1_646_126_127, "updated_at": 1_646_127_311, "object": "deployment"})
        })
        .collect();
    axum::Json(json!({"data": data, "object": "list"})).into_response()
}

/// `GET /foundation-models`.
pub async fn bedrock(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (list, _) = match listed(&state, Format::Bedrock) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    record(&state, method, &uri, &headers, &Bytes::new());
    if let Err(refusal) = super::bedrock::authenticate(&state, "GET", &headers, &uri, b"") {
        return *refusal;
    }
    let summaries: Vec<Value> = list
        .iter()
        .map(|id| {
            let embed = id.contains("embed");
            json!({
                "modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{id}"),
                "modelId": id,
                "modelName": display(id),
                "providerName": id.split('.').next().unwrap_or_default(),
                "inputModalities": if embed { json!(["TEXT"]) } else { json!(["TEXT", "IMAGE"]) },
                "outputModalities": if embed { json!(["EMBEDDING"]) } else { json!(["TEXT"]) },
                "responseStreamingSupported": !embed,
                "customizationsSupported": [],
                "inferenceTypesSupported": if id.contains("claude-sonnet-4-5") {
                    json!(["INFERENCE_PROFILE"])
                } else {
                    json!(["ON_DEMAND"])
                },
                "modelLifecycle": {"status": "ACTIVE"},
            })
        })
        .collect();
    axum::Json(json!({ "modelSummaries": summaries })).into_response()
}

/// `GET /inference-profiles`.
pub async fn bedrock_profiles(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (list, cap) = match listed(&state, Format::BedrockProfiles) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    record(&state, method, &uri, &headers, &Bytes::new());
    if let Err(refusal) = super::bedrock::authenticate(&state, "GET", &headers, &uri, b"") {
        return *refusal;
    }
    let q = query(&uri);
    let size = q
        .get("maxResults")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| (1..=1000).contains(n))
        .unwrap_or(1000);
    let start = match q.get("nextToken") {
        None => 0,
        Some(token) => match page_offset("after", token) {
            Some(n) => n,
            None => {
                return super::bedrock::error(
                    400,
                    "ValidationException",
                    "Invalid pagination token",
                )
            }
        },
    };
    let end = (start + page_len(size, cap)).min(list.len());
    let summaries: Vec<Value> = list[start.min(end)..end]
        .iter()
        .map(|entry| {
            let (id, model) = entry.split_once('=').unwrap_or((entry, entry));
            json!({
                "inferenceProfileName": format!("US {}", display(model)),
                "description": format!("Routes requests to {model}."),
                "createdAt": "2025-09-29T00:00:00Z",
                "updatedAt": "2025-09-29T00:00:00Z",
                "inferenceProfileArn": format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{id}"),
                "models": [{"modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{model}")}],
                "inferenceProfileId": id,
                "status": "ACTIVE",
                "type": "SYSTEM_DEFINED",
            })
        })
        .collect();
    let mut body = json!({ "inferenceProfileSummaries": summaries });
    if end < list.len() {
        body["nextToken"] = json!(page_token("after", end));
    }
    axum::Json(body).into_response()
}
