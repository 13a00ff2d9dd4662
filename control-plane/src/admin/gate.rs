//! Who is calling: the bearer token (the admin token, or a user's access token of a live
//! session), bad credentials counted per client network and refused for a while beyond the
//! allowance, every change written to the audit log, and the [`Caller`] / [`AdminOnly`]
//! extractors of protected routes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::identity::{AdminToken, Identity};
use crate::store::{Store, StoreError};

/// Window of the per-network count of bad credentials.
const BAD_CREDENTIAL_WINDOW_SECS: i64 = 60;

/// What the gate in front of every route uses: who may call, and where changes are logged.
#[derive(Clone)]
pub(super) struct Gate {
    store: Store,
    identity: Arc<Identity>,
    admin_token: AdminToken,
}

impl FromRef<AppState> for Gate {
    fn from_ref(app: &AppState) -> Gate {
        Gate {
            store: app.store.clone(),
            identity: app.identity.clone(),
            admin_token: app.admin_token.clone(),
        }
    }
}

/// Where a request comes from: the peer's address, or the client a trusted proxy names.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

impl ClientInfo {
    fn of(identity: &Identity, headers: &HeaderMap, peer: Option<SocketAddr>) -> ClientInfo {
        let mut ip = peer.map(|p| p.ip());
        // Walk X-Forwarded-For from the right while the hop is a trusted proxy.
        if let Some(forwarded) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            let trusted =
                |a: std::net::IpAddr| identity.trusted_proxies.iter().any(|n| n.contains(a));
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

    fn of_request(identity: &Identity, req: &Request) -> ClientInfo {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        ClientInfo::of(identity, req.headers(), peer)
    }
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(ClientInfo::of(&app.identity, &parts.headers, peer))
    }
}

/// Who the bearer token names, if anyone: the admin token, or a live session's access token
/// of an active user (role read from the store, so a change of role or status counts at once).
async fn identify(gate: &Gate, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    if !crate::auth::looks_like_jwt(token) {
        return if gate.admin_token.matches(token) {
            Ok(Principal::admin_token())
        } else {
            Err(ApiError::Unauthorized)
        };
    }
    let now = crate::store::now();
    let claims = gate
        .identity
        .token_key
        .verify(token, now)
        .map_err(|_| ApiError::Unauthorized)?;
    if !gate
        .identity
        .sessions
        .alive(&claims.sid, &claims.sub, now)
        .await?
    {
        return Err(ApiError::Unauthorized);
    }
    let user = match gate.store.get_user_by_id(&claims.sub).await {
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
pub(super) async fn principal(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION);
    let now = crate::store::now();
    let network = if presented {
        let network = ClientInfo::of_request(&gate.identity, &req).network();
        let seen = gate.identity.bad_credentials.count(&network, now);
        if seen.count >= gate.identity.spec.max_bad_credentials_per_minute {
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
    match identify(&gate, req.headers()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
        }
        Err(ApiError::Unauthorized) => {
            if let Some(network) = network {
                refused_metric("bad_credentials");
                gate.identity
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
pub(super) async fn authenticate(req: Request, next: Next) -> Response {
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
pub(super) async fn audit(State(gate): State<Gate>, req: Request, next: Next) -> Response {
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
    let client = ClientInfo::of_request(&gate.identity, &req);
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
    if let Err(e) = gate.store.add_audit(&entry).await {
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
