//! `/admin/v1/auth/*` and `/admin/v1/me/*`: sign-in, refresh, registration, sign-out, and the
//! caller's own account and devices.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::registration::{create_user, RegisterInput};
use super::{ApiError, ApiJson, ApiPath, AppState, Caller, ClientInfo, Errors};
use crate::auth::attempts::Reserved;
use crate::auth::sessions::{Client, Refresh, Session, Sessions};
use crate::auth::{self, Principal, Role, TokenKey};
use crate::identity::Identity;
use crate::store::{AuditEntry, Store, UserPatch, UserRow};

/// What signing in uses: the users in the store, and the sessions and their policy.
#[derive(Clone)]
pub(super) struct SignIn {
    pub(super) store: Store,
    pub(super) identity: Arc<Identity>,
}

impl FromRef<AppState> for SignIn {
    fn from_ref(app: &AppState) -> SignIn {
        SignIn {
            store: app.store.clone(),
            identity: app.identity.clone(),
        }
    }
}

/// Routes anyone may call.
pub fn open_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(register))
}

/// Routes for signed-in callers.
pub fn protected_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(my_sessions, end_all_my_sessions))
        .routes(routes!(end_my_session))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginInput {
    /// The user's name or email.
    login: String,
    password: String,
    /// A name for this device, shown in the device list.
    #[serde(default)]
    device: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshInput {
    refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordInput {
    current_password: String,
    #[schema(min_length = 10, max_length = 1024)]
    new_password: String,
}

/// A sign-in's tokens: the access token for `Authorization: Bearer`, the refresh token to get
/// the next pair (each refresh token works once).
#[derive(Debug, Serialize, ToSchema)]
struct TokenPair {
    access_token: String,
    token_type: &'static str,
    /// Seconds the access token is valid.
    expires_in: i64,
    refresh_token: String,
    /// Seconds the session lives without being refreshed.
    refresh_expires_in: i64,
    session_id: String,
    user: UserRow,
}

#[derive(Debug, Serialize, ToSchema)]
struct Me {
    name: String,
    role: Role,
    /// `null` for the admin token.
    user: Option<UserRow>,
    session_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Device {
    #[serde(flatten)]
    pub session: Session,
    /// The session the caller's token belongs to.
    pub current: bool,
}

/// Writes an auth event to the audit log; a failure to write is logged, not returned.
pub(super) async fn audit_event(
    state: &SignIn,
    client: &ClientInfo,
    actor: &str,
    role: &str,
    action: &str,
    status: StatusCode,
    detail: serde_json::Value,
) {
    let entry = AuditEntry {
        id: 0,
        at_ms: crate::store::now_ms(),
        actor: actor.chars().take(128).collect(),
        role: role.into(),
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        action: action.into(),
        target: actor.chars().take(128).collect(),
        status: i64::from(status.as_u16()),
        detail: if detail.is_null() {
            String::new()
        } else {
            detail.to_string()
        },
    };
    if let Err(e) = state.store.add_audit(&entry).await {
        tracing::error!("audit entry not written: {e}");
    }
}

fn tokens(state: &SignIn, user: UserRow, session: &str, refresh_token: String) -> TokenPair {
    let now = crate::store::now();
    let ttl = state.identity.spec.access_token_ttl_secs;
    let claims = TokenKey::claims(&user.id, &user.name, session, now, ttl);
    TokenPair {
        access_token: state.identity.token_key.issue(&claims),
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token,
        refresh_expires_in: state.identity.sessions.ttl_secs(),
        session_id: session.into(),
        user,
    }
}

/// Sign in with a password: starts a session (a device in the list) and returns its tokens.
/// After `auth.max_failed_sign_ins` failures in 15 minutes for a name from one network (or ten
/// times as many from one network), sign-ins from there wait (429 with `retry-after`).
#[utoipa::path(post, path = "/auth/login", tag = "auth", security(()),
    request_body = LoginInput,
    responses((status = 200, body = TokenPair),
        (status = 401, description = "Wrong name or password, or a disabled account", body = super::ErrorBody),
        (status = 429, description = "Too many failed sign-ins, or no password hashing slot free", body = super::ErrorBody), Errors))]
async fn login(
    State(state): State<SignIn>,
    client: ClientInfo,
    ApiJson(input): ApiJson<LoginInput>,
) -> Result<Json<TokenPair>, ApiError> {
    let now = crate::store::now();
    let sessions = &state.identity.sessions;
    let login: String = input.login.trim().chars().take(256).collect();
    // Failures count per (name, network), so that nobody locks a user out from elsewhere, and
    // per network with ten times the allowance, against one network trying many names. Each
    // attempt is counted before anything is verified: N attempts at once then cost at most the
    // allowance in password hashes, where a check made before counting would let all N pass.
    let max = state.identity.spec.max_failed_sign_ins;
    let network = format!("ip:{}", client.network());
    let by_network = sessions.reserve_attempt(&network, now).await?;
    if by_network.count > max.saturating_mul(10) {
        return Err(
            sign_in_throttled(&state, &client, &login, by_network, max.saturating_mul(10)).await,
        );
    }
    let name = format!("user:{login}|{network}");
    let by_name = sessions.reserve_attempt(&name, now).await?;
    if by_name.count > max {
        // Refused without verifying: not a failure of the network's.
        sessions.give_back_attempt(&network).await?;
        return Err(sign_in_throttled(&state, &client, &login, by_name, max).await);
    }
    let attempts = [name.as_str(), network.as_str()];
    let found = if input.password.len() > auth::MAX_PASSWORD_BYTES {
        None
    } else {
        state.store.user_credentials(&login).await?
    };
    let hash = found.as_ref().and_then(|(_, h)| h.clone());
    let verified = match state.identity.hashing.verify(input.password, hash).await {
        Ok(v) => v,
        Err(busy) => {
            // Nothing was verified: the attempt does not count.
            give_back(&state, &attempts).await?;
            sign_in_metric("busy");
            return Err(busy.into());
        }
    };
    let user = match found {
        Some((user, _)) if verified && user.active() => user,
        Some((user, _)) if verified => {
            give_back(&state, &attempts).await?;
            audit_event(
                &state,
                &client,
                &user.name,
                user.role.as_str(),
                "auth.login_disabled",
                StatusCode::UNAUTHORIZED,
                serde_json::Value::Null,
            )
            .await;
            return Err(ApiError::BadCredentials("This account is disabled.".into()));
        }
        _ => {
            // The reservations stay: they are the failures.
            sign_in_metric("failed");
            audit_event(
                &state,
                &client,
                &login,
                "",
                "auth.login_failed",
                StatusCode::UNAUTHORIZED,
                serde_json::Value::Null,
            )
            .await;
            return Err(ApiError::BadCredentials(
                "Wrong user name or password.".into(),
            ));
        }
    };
    sessions.clear_attempts(&name).await?;
    sessions.give_back_attempt(&network).await?;
    let device: String = input
        .device
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    let (session, refresh_token) = sessions
        .create(
            &user.id,
            &Client {
                device,
                user_agent: client.user_agent.clone(),
                ip: client.ip.clone(),
            },
            now,
        )
        .await?;
    sign_in_metric("ok");
    audit_event(
        &state,
        &client,
        &user.name,
        user.role.as_str(),
        "auth.login",
        StatusCode::OK,
        serde_json::json!({"session": session.id}),
    )
    .await;
    Ok(Json(tokens(&state, user, &session.id, refresh_token)))
}

fn sign_in_metric(outcome: &str) {
    let m = &crate::metrics::METRICS;
    crate::metrics::count(&m.sign_ins, &crate::metrics::SIGN_INS, outcome);
}

async fn give_back(state: &SignIn, subjects: &[&str]) -> Result<(), ApiError> {
    for s in subjects {
        state.identity.sessions.give_back_attempt(s).await?;
    }
    Ok(())
}

/// The refusal of a sign-in beyond its allowance. Only the window's first refusal is written
/// to the audit log: a flood of refused attempts writes one row, not one each.
async fn sign_in_throttled(
    state: &SignIn,
    client: &ClientInfo,
    login: &str,
    reserved: Reserved,
    allowance: u32,
) -> ApiError {
    sign_in_metric("throttled");
    if reserved.count == allowance.saturating_add(1) {
        audit_event(
            state,
            client,
            login,
            "",
            "auth.login_throttled",
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::Value::Null,
        )
        .await;
    }
    ApiError::TooManyRequests {
        message: "Too many failed sign-ins; try again later.".into(),
        retry_after: reserved.retry_after,
    }
}

/// Trades a refresh token for a new pair. Each refresh token works once: presenting a used one
/// again revokes its whole session (whoever holds it must sign in again). A refresh from
/// another device or network than the sign-in's is recorded on the session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", security(()),
    request_body = RefreshInput,
    responses((status = 200, body = TokenPair),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token", body = super::ErrorBody), Errors))]
async fn refresh(
    State(state): State<SignIn>,
    client: ClientInfo,
    ApiJson(input): ApiJson<RefreshInput>,
) -> Result<Json<TokenPair>, ApiError> {
    let now = crate::store::now();
    let sessions = &state.identity.sessions;
    match sessions
        .refresh(&input.refresh_token, &client.ip, &client.user_agent, now)
        .await?
    {
        Refresh::Rotated {
            token,
            session,
            suspicious,
        } => {
            let user = match state.store.get_user_by_id(&session.user_id).await {
                Ok(u) if u.active() => u,
                Ok(_) | Err(crate::store::StoreError::NotFound) => {
                    sessions.revoke(&session.user_id, &session.id).await?;
                    return Err(ApiError::BadCredentials("This account is disabled.".into()));
                }
                Err(e) => return Err(e.into()),
            };
            if !suspicious.is_empty() {
                tracing::warn!(user = %user.name, session = %session.id, "refresh from another device or network");
                audit_event(
                    &state,
                    &client,
                    &user.name,
                    user.role.as_str(),
                    "session.suspicious_refresh",
                    StatusCode::OK,
                    serde_json::json!({"session": session.id, "events": suspicious}),
                )
                .await;
            }
            Ok(Json(tokens(&state, user, &session.id, token)))
        }
        Refresh::Replayed { user_id, session } => {
            let name = state
                .store
                .get_user_by_id(&user_id)
                .await
                .map(|u| u.name)
                .unwrap_or(user_id);
            tracing::warn!(user = %name, session = %session, "refresh token reused: session revoked");
            audit_event(
                &state,
                &client,
                &name,
                "",
                "session.replay_revoked",
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"session": session}),
            )
            .await;
            Err(ApiError::BadCredentials(
                "This refresh token was already used: the session is revoked. Sign in again."
                    .into(),
            ))
        }
        Refresh::Invalid => Err(ApiError::BadCredentials(
            "The refresh token is unknown, expired or revoked.".into(),
        )),
    }
}

/// Creates a user (role `user`) when `auth.registration` is `open` (at most
/// `auth.max_failed_sign_ins` attempts per network in 15 minutes).
#[utoipa::path(post, path = "/auth/register", tag = "auth", security(()),
    request_body = RegisterInput,
    responses((status = 201, body = UserRow), (status = 409, description = "Name or email taken", body = super::ErrorBody), Errors))]
async fn register(
    State(state): State<SignIn>,
    client: ClientInfo,
    ApiJson(input): ApiJson<RegisterInput>,
) -> Result<(StatusCode, Json<UserRow>), ApiError> {
    if state.identity.spec.registration != crate::config::Registration::Open {
        return Err(ApiError::Forbidden(
            "Registration is closed: an admin creates users.".into(),
        ));
    }
    // Every attempt counts against the network, counted before any work: no mass
    // registration from one place, and no password hashes beyond the allowance.
    let now = crate::store::now();
    let subject = format!("register:{}", client.network());
    let sessions = &state.identity.sessions;
    let reserved = sessions.reserve_attempt(&subject, now).await?;
    if reserved.count > state.identity.spec.max_failed_sign_ins {
        return Err(ApiError::TooManyRequests {
            message: "Too many registrations from this network; try again later.".into(),
            retry_after: reserved.retry_after,
        });
    }
    let user = match create_user(&state.store, &state.identity.hashing, input, Role::User).await {
        Ok(user) => user,
        Err(ApiError::Busy) => {
            sessions.give_back_attempt(&subject).await?;
            return Err(ApiError::Busy);
        }
        Err(e) => return Err(e),
    };
    audit_event(
        &state,
        &client,
        &user.name,
        "user",
        "auth.register",
        StatusCode::CREATED,
        serde_json::Value::Null,
    )
    .await;
    Ok((StatusCode::CREATED, Json(user)))
}

fn session_of(p: &Principal) -> Result<(&str, &str), ApiError> {
    match (&p.user_id, &p.session) {
        (Some(u), Some(s)) => Ok((u, s)),
        _ => Err(ApiError::BadRequest(
            "the admin token has no session; sign in as a user".into(),
        )),
    }
}

/// Ends the caller's session: its access and refresh tokens stop working at once.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out"), Errors))]
async fn logout(
    State(state): State<SignIn>,
    client: ClientInfo,
    Caller(p): Caller,
) -> Result<StatusCode, ApiError> {
    let (user_id, session) = session_of(&p)?;
    state.identity.sessions.revoke(user_id, session).await?;
    audit_event(
        &state,
        &client,
        &p.name,
        p.role.as_str(),
        "auth.logout",
        StatusCode::NO_CONTENT,
        serde_json::json!({"session": session}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller is.
#[utoipa::path(get, path = "/me", tag = "me", responses((status = 200, body = Me), Errors))]
async fn me(State(state): State<SignIn>, Caller(p): Caller) -> Result<Json<Me>, ApiError> {
    let user = match &p.user_id {
        Some(id) => Some(state.store.get_user_by_id(id).await?),
        None => None,
    };
    Ok(Json(Me {
        name: p.name,
        role: p.role,
        user,
        session_id: p.session,
    }))
}

/// Changes the caller's password; every other session of theirs ends.
#[utoipa::path(put, path = "/me/password", tag = "me", request_body = PasswordInput,
    responses((status = 204, description = "Changed"), Errors))]
async fn change_password(
    State(state): State<SignIn>,
    Caller(p): Caller,
    ApiJson(input): ApiJson<PasswordInput>,
) -> Result<StatusCode, ApiError> {
    let (user_id, current_session) = session_of(&p)?;
    auth::check_password(&input.new_password).map_err(ApiError::BadRequest)?;
    // A stolen access token must not become a way to guess the password: wrong current
    // passwords count like failed sign-ins, per user.
    let sessions = &state.identity.sessions;
    let subject = format!("password:{user_id}");
    let reserved = sessions
        .reserve_attempt(&subject, crate::store::now())
        .await?;
    if reserved.count > state.identity.spec.max_failed_sign_ins {
        return Err(ApiError::TooManyRequests {
            message: "Too many wrong current passwords; try again later.".into(),
            retry_after: reserved.retry_after,
        });
    }
    let stored = state
        .store
        .user_credentials(&p.name)
        .await?
        .and_then(|(_, h)| h);
    let verified = if input.current_password.len() > auth::MAX_PASSWORD_BYTES {
        false
    } else {
        match state
            .identity
            .hashing
            .verify(input.current_password, stored)
            .await
        {
            Ok(v) => v,
            Err(busy) => {
                sessions.give_back_attempt(&subject).await?;
                return Err(busy.into());
            }
        }
    };
    if !verified {
        return Err(ApiError::Forbidden("the current password is wrong".into()));
    }
    sessions.clear_attempts(&subject).await?;
    let hash = state.identity.hashing.hash(input.new_password).await?;
    state
        .store
        .update_user(
            &p.name,
            &UserPatch {
                password_hash: Some(hash),
                ..Default::default()
            },
        )
        .await?;
    let now = crate::store::now();
    for s in state.identity.sessions.list(user_id, now).await? {
        if s.id != current_session {
            state.identity.sessions.revoke(user_id, &s.id).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn devices(
    sessions: &Sessions,
    user_id: &str,
    current: Option<&str>,
) -> Result<Vec<Device>, ApiError> {
    let list = sessions.list(user_id, crate::store::now()).await?;
    Ok(list
        .into_iter()
        .map(|s| Device {
            current: current == Some(s.id.as_str()),
            session: s,
        })
        .collect())
}

/// The caller's signed-in devices, most recently seen first, with suspicious refreshes.
#[utoipa::path(get, path = "/me/sessions", tag = "me",
    responses((status = 200, body = [Device]), Errors))]
async fn my_sessions(
    State(state): State<SignIn>,
    Caller(p): Caller,
) -> Result<Json<Vec<Device>>, ApiError> {
    let (user_id, session) = session_of(&p)?;
    Ok(Json(
        devices(&state.identity.sessions, user_id, Some(session)).await?,
    ))
}

/// Signs the caller out everywhere (this session too).
#[utoipa::path(delete, path = "/me/sessions", tag = "me",
    responses((status = 204, description = "Every session ended"), Errors))]
async fn end_all_my_sessions(
    State(state): State<SignIn>,
    Caller(p): Caller,
) -> Result<StatusCode, ApiError> {
    let (user_id, _) = session_of(&p)?;
    state
        .identity
        .sessions
        .revoke_all(user_id, crate::store::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs one of the caller's devices out (remote logout): its tokens stop working at once.
#[utoipa::path(delete, path = "/me/sessions/{id}", tag = "me",
    params(("id" = String, Path, description = "Session id from the device list")),
    responses((status = 204, description = "Session ended"), Errors))]
async fn end_my_session(
    State(state): State<SignIn>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let (user_id, _) = session_of(&p)?;
    if state.identity.sessions.revoke(user_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such session".into()))
    }
}
