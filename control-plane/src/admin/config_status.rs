//! Read-your-writes: an admin request that publishes a new configuration answers once every
//! connected Envoy runs it ([`acknowledged`], a middleware over the whole API), and
//! `/admin/v1/config/status` tells a client that got 202 when its write has arrived.
//!
//! The answer to such a write carries `x-switchyard-config-serial: N` (the snapshot its change
//! is in). When some Envoy has not acknowledged N within `gateway.ack_timeout_ms`, the answer
//! is 202 with the body the write would otherwise have had (a new key's secret included: it is
//! shown this once), `x-switchyard-config-status: pending` and a `location` to poll.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiQuery, AppState, Caller, Errors};
use crate::reconcile::{tracking_writes, Publisher};
use crate::xds::acks::{AckState, NodeState};

/// The header naming the snapshot serial a write's change is in.
pub const SERIAL_HEADER: &str = "x-switchyard-config-serial";
/// `acknowledged` (every connected Envoy runs it) or `pending`.
pub const STATUS_HEADER: &str = "x-switchyard-config-status";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status))
}

/// Runs the request; if it published, waits (bounded) until every connected Envoy runs what it
/// published, and says so in the answer's headers, or answers 202 when one does not yet.
pub(super) async fn acknowledged(
    State(publisher): State<Publisher>,
    req: Request,
    next: Next,
) -> Response {
    let (mut resp, serial) = tracking_writes(next.run(req)).await;
    let Some(serial) = serial else {
        return resp;
    };
    if !resp.status().is_success() {
        resp.headers_mut()
            .insert(SERIAL_HEADER, HeaderValue::from(serial));
        return resp;
    }
    let state = publisher.wait_acked(serial).await;
    if !state.acknowledged {
        let lagging: Vec<(&String, NodeState)> = state
            .nodes
            .iter()
            .filter(|(_, n)| n.state != NodeState::Acked)
            .map(|(id, n)| (id, n.state))
            .collect();
        tracing::warn!(
            serial,
            ?lagging,
            "a write answered before every Envoy acknowledged it"
        );
        *resp.status_mut() = StatusCode::ACCEPTED;
        if let Ok(location) =
            HeaderValue::from_str(&format!("/admin/v1/config/status?serial={serial}"))
        {
            resp.headers_mut().insert(header::LOCATION, location);
        }
    }
    let headers = resp.headers_mut();
    headers.insert(SERIAL_HEADER, HeaderValue::from(serial));
    let status = if state.acknowledged {
        "acknowledged"
    } else {
        "pending"
    };
    headers.insert(STATUS_HEADER, HeaderValue::from_static(status));
    resp
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusParams {
    /// The serial a write's `x-switchyard-config-serial` header named.
    serial: u64,
}

/// Whether every connected Envoy runs configuration snapshot `serial` (or a later one). Admins
/// also see each node: its state, the serial it runs, the types it lags on and its refusals.
#[utoipa::path(get, path = "/config/status", tag = "operations", params(StatusParams),
    responses((status = 200, body = AckState), Errors))]
async fn status(
    Caller(p): Caller,
    State(publisher): State<Publisher>,
    ApiQuery(q): ApiQuery<StatusParams>,
) -> Result<Json<AckState>, ApiError> {
    if q.serial == 0 {
        return Err(ApiError::BadRequest("serial starts at 1".into()));
    }
    if q.serial > publisher.serial() {
        return Err(ApiError::NotFound(
            "no configuration with this serial was published".into(),
        ));
    }
    let mut state = publisher.ack_state(q.serial);
    if !p.is_admin() {
        // Node ids and their refusals are the operator's business.
        state.nodes.clear();
    }
    Ok(Json(state))
}
