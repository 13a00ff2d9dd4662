//! The admin API's errors: one [`ApiError`], turned into the gateway's JSON error shape in one
//! place; errors of the layers below are converted into it on purpose (database details are
//! logged, never returned).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::MAX_BODY_BYTES;
use crate::reconcile::PublishError;
use crate::secrets::SecretsError;
use crate::store::StoreError;

/// Errors of the admin API; database details are logged, never returned.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Unauthorized,
    /// A failed sign-in or refresh (401, with why).
    BadCredentials(String),
    MethodNotAllowed,
    Forbidden(String),
    TooManyRequests {
        message: String,
        retry_after: i64,
    },
    /// Every password hashing slot stayed busy (429, `retry-after: 1`).
    Busy,
    /// The session store (Redis) cannot be reached now (503, with `retry-after`).
    SessionsUnavailable,
    /// The body is larger than [`MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// The request took longer than its bound.
    Timeout,
    /// A provider the control plane asked did not give a usable answer (502).
    Upstream(String),
    Internal(String),
}

/// Seconds a client waits before trying again while the session store is unreachable.
const SESSIONS_RETRY_AFTER_SECS: i64 = 2;

/// The error body every gateway-made error has.
#[derive(utoipa::ToSchema, serde::Serialize)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema, serde::Serialize)]
#[allow(dead_code)]
struct ErrorDetail {
    message: String,
    #[schema(example = "invalid_request_error")]
    #[serde(rename = "type")]
    kind: String,
    param: Option<String>,
    #[schema(example = "invalid_request")]
    code: String,
}

/// The error answers every route may give.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Errors {
    /// Invalid input
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No valid admin or access token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller may not do this
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Not found, or not the caller's
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Too many wrong credentials from the caller's network (`retry-after`), or no password
    /// hashing slot free (`retry-after: 1`)
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// The session store (Redis) is unreachable: access tokens cannot be checked (`retry-after`)
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::auth::sessions::SessionError> for ApiError {
    fn from(e: crate::auth::sessions::SessionError) -> Self {
        use crate::auth::sessions::SessionError;
        match e {
            SessionError::Unavailable(detail) => {
                crate::metrics::add(&crate::metrics::METRICS.session_store_unavailable, 1);
                tracing::warn!("session store unavailable: {detail}");
                ApiError::SessionsUnavailable
            }
            SessionError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<crate::auth::Busy> for ApiError {
    fn from(_: crate::auth::Busy) -> Self {
        ApiError::Busy
    }
}

/// A state that was not published is the server's fault: the change itself is committed.
impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// A key that could not be sealed again or retired is the server's fault.
impl From<SecretsError> for ApiError {
    fn from(e: SecretsError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut retry = None;
        let (status, kind, code, message) = match self {
            ApiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                m,
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found_error", "not_found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "invalid_request_error", "conflict", m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_token",
                "A valid admin token or access token is required: `Authorization: Bearer <token>`."
                    .into(),
            ),
            ApiError::BadCredentials(m) => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_credentials",
                m,
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "permission_error", "forbidden", m),
            ApiError::Upstream(m) => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "provider_error",
                m,
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
                "This endpoint does not take this method.".into(),
            ),
            ApiError::TooManyRequests {
                message,
                retry_after,
            } => {
                retry = Some(retry_after);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "too_many_attempts",
                    message,
                )
            }
            ApiError::Busy => {
                retry = Some(1);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "too_many_requests",
                    "The server is busy checking other passwords; try again in a second.".into(),
                )
            }
            ApiError::SessionsUnavailable => {
                retry = Some(SESSIONS_RETRY_AFTER_SECS);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    "session_store_unavailable",
                    "The session store is unavailable: sign-ins and access tokens cannot be \
                     checked now. Try again shortly; the admin token still works."
                        .into(),
                )
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "payload_too_large",
                format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
            ),
            ApiError::Timeout => {
                retry = Some(1);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    "request_timeout",
                    "The request took too long and was abandoned.".into(),
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!("admin API internal error: {detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "internal",
                    "Internal error.".into(),
                )
            }
        };
        let mut resp = (
            status,
            Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}})),
        )
            .into_response();
        if let Some(secs) = retry {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs.max(1)),
            );
        }
        resp
    }
}
