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
mod config_status;
mod error;
mod extract;
mod gate;
mod keys;
mod models;
mod providers;
mod registration;
mod security;
pub mod server;
mod usage;
mod users;

use std::sync::Arc;

use axum::extract::{FromRef, Request, State};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody, Errors};
pub use extract::{ApiJson, ApiPath, ApiQuery};
use gate::{audit, authenticate, principal, Gate};
pub use gate::{AdminOnly, Caller, ClientInfo};

use crate::probe::Probes;
use crate::reconcile::Publisher;
pub use crate::state::AppState;
use crate::xds::cache::SnapshotCache;

/// What the operations routes show: the xDS snapshots and nodes, the probes and the figures.
#[derive(Clone)]
struct Operations {
    xds: Arc<SnapshotCache>,
    probes: Arc<Probes>,
    publisher: Publisher,
}

impl FromRef<AppState> for Operations {
    fn from_ref(app: &AppState) -> Operations {
        Operations {
            xds: app.reconciler.cache().clone(),
            probes: app.probes.clone(),
            publisher: app.publisher.clone(),
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Switchyard admin API",
        description = "Providers, models, gateway keys, users, sessions, usage and credits. \
            Authenticate with the admin token or a user's access token: \
            `Authorization: Bearer <token>`. \
            A write that changes Envoy's configuration answers once every connected Envoy \
            acknowledged the snapshot holding it, named in `x-switchyard-config-serial`; when one \
            has not within `gateway.ack_timeout_ms`, the answer is 202 with the same body, \
            `x-switchyard-config-status: pending` and a `Location` to poll \
            (`GET /admin/v1/config/status?serial=N`).",
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
        .merge(config_status::router())
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
        // Inside the audit: the log keeps the answer's final status (202 when not acknowledged).
        .layer(middleware::from_fn_with_state(
            Publisher::from_ref(&app),
            config_status::acknowledged,
        ))
        .layer(middleware::from_fn_with_state(Gate::from_ref(&app), audit))
        .layer(middleware::from_fn_with_state(
            Gate::from_ref(&app),
            principal,
        ));
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
async fn metrics(State(ops): State<Operations>) -> impl IntoResponse {
    let envoys = ops.xds.nodes().len() as u64;
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
async fn xds_nodes(_: AdminOnly, State(ops): State<Operations>) -> Json<serde_json::Value> {
    let snapshot = ops.xds.current();
    let versions: serde_json::Map<String, serde_json::Value> = snapshot
        .types
        .iter()
        .map(|(t, s)| ((*t).to_owned(), json!(s.version)))
        .collect();
    Json(json!({"serial": snapshot.serial, "versions": versions, "nodes": ops.xds.nodes()}))
}

/// What routing ranks by: each provider key's latest probe (refused keys are left out of the
/// configuration) and each target's figures over the recent window.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Probe states and target figures", body = Object), Errors))]
async fn health(_: AdminOnly, State(ops): State<Operations>) -> Json<serde_json::Value> {
    let figures = ops.publisher.figures();
    Json(json!({
        "keys": ops.probes.states(),
        "providers_down_until": figures.probes.down_until,
        "providers_up_since": figures.probes.up_since,
        "targets": figures.summary(),
    }))
}

#[cfg(test)]
mod abuse_tests;
#[cfg(test)]
mod ack_tests;
#[cfg(test)]
mod rbac_tests;
#[cfg(test)]
mod tests;
