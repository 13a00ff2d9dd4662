//! Admin REST API under `/admin/v1`: one router per resource, bearer admin token, JSON errors in
//! the same `{"error":{"message","type","code"}}` shape the gateway uses.

mod keys;
mod models;
mod providers;
mod usage;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::App;
use crate::store::StoreError;

pub type AppState = Arc<App>;

pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .merge(providers::router())
        .merge(models::router())
        .merge(keys::router())
        .merge(usage::router())
        .route("/xds/nodes", get(xds_nodes))
        .route("/health", get(health))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_admin));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/admin/v1/healthz", get(healthz))
        .nest("/admin/v1", api)
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(app)
}

/// The control plane's own metrics (Prometheus text; open, like `/healthz`: counts only).
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let envoys = app.cache.nodes().len() as u64;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&[(
            "switchyard_cp_envoy_nodes",
            "Envoy nodes that have subscribed over ADS since the control plane started.",
            envoys,
        )]),
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// What each connected Envoy has accepted (ACK) or refused (NACK), by resource type.
async fn xds_nodes(State(app): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = app.cache.current();
    let versions: serde_json::Map<String, serde_json::Value> = snapshot
        .types
        .iter()
        .map(|(t, s)| ((*t).to_owned(), json!(s.version)))
        .collect();
    Json(json!({"serial": snapshot.serial, "versions": versions, "nodes": app.cache.nodes()}))
}

/// What routing ranks by: each provider key's latest probe (refused keys are left out of the
/// configuration) and each target's figures over the recent window.
async fn health(State(app): State<AppState>) -> Json<serde_json::Value> {
    let figures = app.figures();
    Json(json!({
        "keys": app.probes.states(),
        "providers_down_until": figures.probes.down_until,
        "providers_up_since": figures.probes.up_since,
        "targets": figures.summary(),
    }))
}

async fn require_admin(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(t) if app.admin_token_ok(t) => next.run(req).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// Errors of the admin API; database details are logged, never returned.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Unauthorized,
    Internal(String),
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

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
                "invalid_admin_token",
                "A valid admin token is required: `Authorization: Bearer <token>`.".into(),
            ),
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
        (
            status,
            Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}})),
        )
            .into_response()
    }
}

/// `Json` whose rejections are `ApiError`s (axum's default answers in plain text).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Publishes the store's new state; the change itself is already committed.
pub(crate) async fn publish(app: &App) -> Result<(), ApiError> {
    app.publish().await.map(|_| ()).map_err(ApiError::from)
}

#[cfg(test)]
mod tests;
