//! Vertex AI as the mock provider, with Google's OAuth token endpoint:
//!
//! - `POST /token`: the JWT-bearer grant, checked as Google checks it (RS256 signature by the
//!   test service account's key, issuer, audience, cloud-platform scope, at most an hour), answered
//!   with an access token that lives [`MockOpenAi::set_token_lifetime`] seconds.
//! - `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{action}`:
//!   Gemini, as [`super::gemini`] answers it, for a current access token.
//! - `.../publishers/anthropic/models/{model}:rawPredict` and `:streamRawPredict`: Claude, as
//!   [`super::messages_answer`] answers it, with `anthropic_version: vertex-2023-10-16` in the body
//!   and the model only in the path.
//!
//! [`MockOpenAi::set_token_lifetime`]: super::MockOpenAi::set_token_lifetime

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use super::{anthropic_error, record, MockState};

pub const CLIENT_EMAIL: &str = "gateway@switchyard-test.iam.gserviceaccount.com";
const KEY_PEM: &str = include_str!("../../fixtures/vertex/service_account_key.pem");

/// A service account key file around the test-only key, whose tokens come from `token_uri`.
pub fn service_account_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "switchyard-test",
        "private_key_id": "0123456789abcdef",
        "private_key": KEY_PEM,
        "client_email": CLIENT_EMAIL,
        "token_uri": token_uri,
    })
    .to_string()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/json")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks a JWT-bearer assertion; the reason when it is refused.
fn check_assertion(jwt: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("Invalid JWT: not three parts");
    };
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "Invalid JWT encoding")
    };
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| "Invalid JWT header")?;
    if header["alg"] != "RS256" {
        return Err("Invalid JWT: alg must be RS256");
    }
    let der: String = KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(der).map_err(|_| "test key unreadable")?;
    let key = ring::rsa::KeyPair::from_pkcs8(&der).map_err(|_| "test key unreadable")?;
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        key.public().as_ref(),
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| "Invalid JWT Signature.")?;
    let c: Value = serde_json::from_slice(&decode(claims)?).map_err(|_| "Invalid JWT claims")?;
    let (iat, exp) = (
        c["iat"].as_u64().unwrap_or(0),
        c["exp"].as_u64().unwrap_or(0),
    );
    let t = now();
    if c["iss"] != CLIENT_EMAIL
        || !c["aud"].as_str().is_some_and(|a| a.ends_with("/token"))
        || !c["scope"].as_str().is_some_and(|s| {
            s.split(' ')
                .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
        })
        || exp <= t
        || iat > t + 60
        || exp.saturating_sub(iat) > 3600
    {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.");
    }
    Ok(())
}

/// `POST /token` (form-encoded JWT-bearer grant).
pub async fn token(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let form = String::from_utf8_lossy(&body).into_owned();
    let field = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    if field("grant_type").as_deref()
        != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
    {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = field("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    if let Err(why) = check_assertion(&assertion) {
        return oauth_error("invalid_grant", why);
    }
    let n = state.token_count.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("ya29.mock-access-token-{n}");
    if let Ok(mut tokens) = state.tokens.lock() {
        tokens.push(token.clone());
    }
    let lifetime = state.token_lifetime.load(Ordering::SeqCst);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}).to_string(),
    )
        .into_response()
}

fn google_error(code: u16, status: &str, message: &str) -> Response {
    super::gemini::error(code, status, message, json!([]))
}

/// `POST /v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}`.
pub async fn predict(
    State(state): State<Arc<MockState>>,
    Path((_project, _location, publisher, target)): Path<(String, String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, method, &uri, &headers, &body);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let known = token.is_some_and(|t| {
        state
            .tokens
            .lock()
            .map(|tokens| tokens.iter().any(|k| k == t))
            .unwrap_or(false)
    });
    if !known {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    match publisher.as_str() {
        "google" => super::gemini::answer(&target, &uri, &body),
        "anthropic" => claude(&target, &body),
        _ => google_error(404, "NOT_FOUND", "Publisher model not found."),
    }
}

/// Claude on Vertex: the Messages body, without `model`, with Vertex's `anthropic_version`.
fn claude(target: &str, body: &[u8]) -> Response {
    let (model, action) = target.split_once(':').unwrap_or((target, ""));
    let stream = match action {
        "rawPredict" => false,
        "streamRawPredict" => true,
        _ => return google_error(404, "NOT_FOUND", "Method not found."),
    };
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return anthropic_error(400, "invalid_request_error", "invalid JSON body");
    };
    if obj.remove("anthropic_version") != Some(json!("vertex-2023-10-16")) {
        return anthropic_error(
            400,
            "invalid_request_error",
            "anthropic_version: vertex-2023-10-16 is required",
        );
    }
    if obj.contains_key("model") {
        return anthropic_error(
            400,
            "invalid_request_error",
            "model: Extra inputs are not permitted",
        );
    }
    if obj.get("stream").and_then(Value::as_bool).unwrap_or(false) != stream {
        return anthropic_error(400, "invalid_request_error", "stream must match the method");
    }
    obj.insert("model".into(), Value::String(model.to_owned()));
    super::messages_answer(obj)
}
