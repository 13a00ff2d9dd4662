//! Admin REST API under `/admin/v1`: one router per resource, JSON errors in the same
//! `{"error":{"message","type","code"}}` shape the gateway uses, and an OpenAPI document built
//! from the handlers themselves (`/admin/v1/openapi.json`), so that it lists every route.
//!
//! Who calls: the admin token (the operator), or a user with an access token from
//! `/auth/login` ([`crate::auth`]). Admin-only handlers take [`AdminOnly`]; the others take
//! [`Caller`] and show or change only what the caller may act for. Every change (any method
//! but GET) by an authenticated caller is written to the audit log with who, from where, and
//! the answer's status; sign-in events are written by their (throttled) handlers. Requests
//! that fail authentication write nothing: they are counted in `/metrics`, and per client
//! network, so that an address guessing tokens gets 429 before any work.
//!
//! The API as a whole is bounded: bodies up to [`MAX_BODY_BYTES`], requests up to
//! [`REQUEST_TIMEOUT`], every refusal a JSON error.

mod auth;
mod catalog;
mod keys;
mod models;
mod providers;
mod security;
pub mod server;
mod usage;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::auth::{Principal, Role};
use crate::store::StoreError;

pub type AppState = Arc<App>;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Switchyard admin API",
        description = "Providers, models, gateway keys, users, sessions, usage and credits. \
            Authenticate with the admin token or a user's access token: \
            `Authorization: Bearer <token>`.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes and their OpenAPI document, from the same handlers.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let protected = OpenApiRouter::new()
        .merge(providers::router())
        .merge(models::router())
        .merge(catalog::router())
        .merge(keys::router())
        .merge(usage::router())
        .merge(users::router())
        .merge(security::router())
        .merge(auth::protected_router())
        .routes(routes!(xds_nodes))
        .routes(routes!(health));
    let (protected, protected_doc) = protected.split_for_parts();
    let protected = protected.route_layer(middleware::from_fn(authenticate));
    let (open, open_doc) = auth::open_router().split_for_parts();
    let mut doc = ApiDoc::openapi();
    doc.merge(protected_doc);
    doc.merge(open_doc);
    // Every path is under /admin/v1.
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(p, item)| (format!("/admin/v1{p}"), item))
        .collect();
    (protected.merge(open), doc)
}

/// The largest request body the admin API reads (the largest real one, a service account key
/// file, is a few KiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Bound on one admin request, body included (a provider's model listing, the slowest
/// handler's work, has its own 30 s bound by default).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Window of the per-network count of bad credentials.
const BAD_CREDENTIAL_WINDOW_SECS: i64 = 60;

pub fn router(app: AppState) -> Router {
    bounded_router(app, REQUEST_TIMEOUT)
}

/// [`router`] with requests bounded by `timeout`.
pub fn bounded_router(app: AppState, timeout: std::time::Duration) -> Router {
    let (api, doc) = api();
    let doc = Arc::new(doc.to_json().unwrap_or_else(|_| "{}".into()));
    let api = api
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .layer(middleware::from_fn_with_state(app.clone(), audit))
        .layer(middleware::from_fn_with_state(app.clone(), principal));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/admin/v1/healthz", get(healthz))
        .nest("/admin/v1", api)
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(
            move |req: Request, next: Next| async move {
                // A slow client (a trickled body) or a stuck handler ends here, in JSON.
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(resp) => resp,
                    Err(_) => ApiError::Timeout.into_response(),
                }
            },
        ))
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
#[utoipa::path(get, path = "/xds/nodes", tag = "operations",
    responses((status = 200, description = "Snapshot serial, versions by type, and each node's ACK/NACK state", body = Object), Errors))]
async fn xds_nodes(_: AdminOnly, State(app): State<AppState>) -> Json<serde_json::Value> {
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
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Probe states and target figures", body = Object), Errors))]
async fn health(_: AdminOnly, State(app): State<AppState>) -> Json<serde_json::Value> {
    let figures = app.figures();
    Json(json!({
        "keys": app.probes.states(),
        "providers_down_until": figures.probes.down_until,
        "providers_up_since": figures.probes.up_since,
        "targets": figures.summary(),
    }))
}

// ---- who is calling ---------------------------------------------------------------------------

/// Where a request comes from: the peer's address, or the client a trusted proxy names.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

impl ClientInfo {
    fn of(app: &App, headers: &HeaderMap, peer: Option<SocketAddr>) -> ClientInfo {
        let mut ip = peer.map(|p| p.ip());
        // Walk X-Forwarded-For from the right while the hop is a trusted proxy.
        if let Some(forwarded) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            let trusted =
                |a: std::net::IpAddr| app.identity.trusted_proxies.iter().any(|n| n.contains(a));
            for hop in forwarded.rsplit(',') {
                match ip {
                    Some(current) if trusted(current) => {
                        match hop.trim().parse::<std::net::IpAddr>() {
                            Ok(next) => ip = Some(next),
                            Err(_) => break,
                        }
                    }
                    _ => break,
                }
            }
        }
        let user_agent: String = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        ClientInfo {
            ip: ip.map(|i| i.to_string()).unwrap_or_default(),
            user_agent,
        }
    }

    /// What throttles count against: the address, or its /64 for IPv6 (one host commonly holds
    /// a whole /64, and would otherwise have 2^64 allowances).
    pub fn network(&self) -> String {
        match self.ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Ok(std::net::IpAddr::V6(v6)) => v6.to_canonical().to_string(),
            _ => self.ip.clone(),
        }
    }

    fn of_request(app: &App, req: &Request) -> ClientInfo {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        ClientInfo::of(app, req.headers(), peer)
    }
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(ClientInfo::of(app, &parts.headers, peer))
    }
}

/// Who the bearer token names, if anyone: the admin token, or a live session's access token
/// of an active user (role read from the store, so a change of role or status counts at once).
async fn identify(app: &App, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    if !crate::auth::looks_like_jwt(token) {
        return if app.admin_token_ok(token) {
            Ok(Principal::admin_token())
        } else {
            Err(ApiError::Unauthorized)
        };
    }
    let now = crate::store::now();
    let claims = app
        .identity
        .token_key
        .verify(token, now)
        .map_err(|_| ApiError::Unauthorized)?;
    if !app
        .identity
        .sessions
        .alive(&claims.sid, &claims.sub, now)
        .await?
    {
        return Err(ApiError::Unauthorized);
    }
    let user = match app.store.get_user_by_id(&claims.sub).await {
        Ok(u) if u.active() => u,
        Ok(_) | Err(StoreError::NotFound) => return Err(ApiError::Unauthorized),
        Err(e) => return Err(e.into()),
    };
    Ok(Principal {
        user_id: Some(user.id),
        name: user.name,
        role: user.role,
        session: Some(claims.sid),
    })
}

/// Outermost layer: who is calling (if anyone), for the handlers and the audit log. A request
/// with a bearer token from a network that sent too many bad ones recently is refused before
/// the token is looked at, the right token included: were it let through, a guesser would
/// learn which guess was right. The refusal ends with the window (a minute), and other
/// networks are not affected, so an operator is never locked out for long.
async fn principal(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION);
    let now = crate::store::now();
    let network = if presented {
        let network = ClientInfo::of_request(&app, &req).network();
        let seen = app.identity.bad_credentials.count(&network, now);
        if seen.count >= app.identity.spec.max_bad_credentials_per_minute {
            refused_metric("throttled");
            return ApiError::TooManyRequests {
                message:
                    "Too many requests with wrong credentials from this network; try again later."
                        .into(),
                retry_after: seen.retry_after,
            }
            .into_response();
        }
        Some(network)
    } else {
        None
    };
    // Checked above and counted below without a wait in between for the tokens a guesser can
    // try (a wrong admin token, a JWT with a bad signature or expired: refused before any
    // store is asked), so concurrent guesses overshoot the allowance by at most one per
    // worker thread.
    match identify(&app, req.headers()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
        }
        Err(ApiError::Unauthorized) => {
            if let Some(network) = network {
                refused_metric("bad_credentials");
                app.identity
                    .bad_credentials
                    .reserve(&network, now, BAD_CREDENTIAL_WINDOW_SECS);
            }
        }
        Err(e) => return e.into_response(),
    }
    next.run(req).await
}

fn refused_metric(reason: &str) {
    let m = &crate::metrics::METRICS;
    crate::metrics::count(&m.admin_refused, &crate::metrics::ADMIN_REFUSALS, reason);
}

/// Protected routes refuse anonymous calls.
async fn authenticate(req: Request, next: Next) -> Response {
    if req.extensions().get::<Principal>().is_none() {
        refused_metric("unauthenticated");
        return ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}

/// Writes every change (any method but GET/HEAD) of an authenticated caller to the audit log.
/// Anonymous requests write nothing (they are counted in `/metrics`): rows anyone can cause
/// would let anyone fill the database. Sign-ins are written by their handlers, with what they
/// know (the name tried, the session), and are throttled.
async fn audit(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return next.run(req).await;
    }
    let Some(who) = req.extensions().get::<Principal>().cloned() else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    if route.starts_with("/admin/v1/auth/") {
        return next.run(req).await;
    }
    let target: String = req.uri().path().chars().take(512).collect();
    let client = ClientInfo::of_request(&app, &req);
    let resp = next.run(req).await;
    let entry = crate::store::AuditEntry {
        id: 0,
        at_ms: crate::store::now_ms(),
        actor: who.name,
        role: who.role.as_str().to_owned(),
        ip: client.ip,
        user_agent: client.user_agent,
        action: format!("{method} {route}"),
        target,
        status: i64::from(resp.status().as_u16()),
        detail: String::new(),
    };
    if let Err(e) = app.store.add_audit(&entry).await {
        tracing::error!("audit entry not written: {e}");
    }
    resp
}

/// The caller of a protected route.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or(ApiError::Unauthorized)
    }
}

/// The caller of an admin-only route: anyone else gets 403.
pub struct AdminOnly(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for AdminOnly {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Caller(p) = Caller::from_request_parts(parts, state).await?;
        if p.role != Role::Admin {
            return Err(ApiError::Forbidden("this needs an admin".into()));
        }
        Ok(AdminOnly(p))
    }
}

// ---- errors -----------------------------------------------------------------------------------

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

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(format!("{e:#}"))
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
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::BadRequest(e.body_text()),
            })
    }
}

/// `Path` whose rejections are `ApiError`s.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// `Query` whose rejections are `ApiError`s.
pub struct ApiQuery<T>(pub T);

impl<T> std::ops::Deref for ApiQuery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Publishes the store's new state; the change itself is already committed.
pub(crate) async fn publish(app: &App) -> Result<(), ApiError> {
    app.publish().await.map(|_| ()).map_err(ApiError::from)
}

#[cfg(test)]
mod abuse_tests;
#[cfg(test)]
mod rbac_tests;
#[cfg(test)]
mod tests;
