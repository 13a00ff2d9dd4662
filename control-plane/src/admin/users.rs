//! `/admin/v1/users` and `/admin/v1/audit`: accounts (admins manage them; a user sees their
//! own), their sessions, and the audit log.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{devices, Device};
use super::registration::{check_email, create_user, RegisterInput};
use super::{AdminOnly, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Errors};
use crate::auth::{self, Principal, Role};
use crate::identity::Identity;
use crate::reconcile::Publisher;
use crate::store::{AuditEntry, AuditFilter, Store, UserLimitsRow, UserPatch, UserRow};

/// What the users routes use: the store, the sessions and password hashing, the publisher.
#[derive(Clone)]
pub(super) struct Users {
    pub(super) store: Store,
    pub(super) identity: Arc<Identity>,
    pub(super) publisher: Publisher,
}

impl FromRef<AppState> for Users {
    fn from_ref(app: &AppState) -> Users {
        Users {
            store: app.store.clone(),
            identity: app.identity.clone(),
            publisher: app.publisher.clone(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update))
        .routes(routes!(sessions, end_sessions))
        .routes(routes!(end_session))
        .routes(routes!(audit))
        .routes(routes!(limits, set_limits))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    #[schema(min_length = 10, max_length = 1024)]
    password: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<Role>,
}

/// Fields absent keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    #[serde(default)]
    role: Option<Role>,
    /// `active` or `disabled` (a disabled user cannot sign in, their sessions end, and their
    /// gateway keys stop working).
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// A new password (their sessions end).
    #[serde(default)]
    #[schema(min_length = 10, max_length = 1024)]
    password: Option<String>,
}

/// The user called `name`, if the caller may act for them (else 404, as if absent).
async fn visible_user(store: &Store, p: &Principal, name: &str) -> Result<UserRow, ApiError> {
    if !p.may_act_for(name) {
        return Err(ApiError::NotFound("not found".into()));
    }
    Ok(store.get_user(name).await?)
}

/// Every user.
#[utoipa::path(get, path = "/users", tag = "users", responses((status = 200, body = [UserRow]), Errors))]
async fn list(_: AdminOnly, State(state): State<Users>) -> Result<Json<Vec<UserRow>>, ApiError> {
    Ok(Json(state.store.list_users().await?))
}

/// Creates a user (any role).
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserRow), (status = 409, description = "Name or email taken", body = super::ErrorBody), Errors))]
async fn create(
    _: AdminOnly,
    State(state): State<Users>,
    ApiJson(input): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserRow>), ApiError> {
    let role = input.role.unwrap_or(Role::User);
    let user = create_user(
        &state.store,
        &state.identity.hashing,
        RegisterInput {
            name: input.name,
            password: input.password,
            email: input.email,
        },
        role,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// A user (admins: anyone; users: themselves).
#[utoipa::path(get, path = "/users/{name}", tag = "users",
    params(("name" = String, Path)), responses((status = 200, body = UserRow), Errors))]
async fn read(
    Caller(p): Caller,
    State(state): State<Users>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<UserRow>, ApiError> {
    Ok(Json(visible_user(&state.store, &p, &name).await?))
}

/// Changes a user's role, status, email or password. The last active admin who can sign in
/// cannot be demoted or disabled.
#[utoipa::path(patch, path = "/users/{name}", tag = "users", params(("name" = String, Path)),
    request_body = UpdateUser, responses((status = 200, body = UserRow), Errors))]
async fn update(
    _: AdminOnly,
    State(state): State<Users>,
    ApiPath(name): ApiPath<String>,
    ApiJson(input): ApiJson<UpdateUser>,
) -> Result<Json<UserRow>, ApiError> {
    let current = state.store.get_user(&name).await?;
    if let Some(s) = &input.status {
        if s != "active" && s != "disabled" {
            return Err(ApiError::BadRequest(
                "`status` is `active` or `disabled`".into(),
            ));
        }
    }
    if let Some(e) = &input.email {
        check_email(e)?;
    }
    let demoted = input.role.is_some_and(|r| r != Role::Admin);
    let disabled = input.status.as_deref() == Some("disabled");
    if current.role == Role::Admin
        && current.active()
        && current.has_password
        && (demoted || disabled)
        && state.store.active_admins().await? <= 1
    {
        return Err(ApiError::Conflict(
            "this is the last admin who can sign in; make another admin first".into(),
        ));
    }
    let password_hash = match input.password {
        Some(pw) => {
            auth::check_password(&pw).map_err(ApiError::BadRequest)?;
            Some(state.identity.hashing.hash(pw).await?)
        }
        None => None,
    };
    let ends_sessions = disabled || password_hash.is_some();
    let status_changed = input.status.as_deref().is_some_and(|s| s != current.status);
    let user = state
        .store
        .update_user(
            &name,
            &UserPatch {
                email: input.email.map(Some),
                role: input.role,
                status: input.status,
                password_hash,
            },
        )
        .await?;
    if ends_sessions {
        state
            .identity
            .sessions
            .revoke_all(&user.id, crate::store::now())
            .await?;
    }
    if status_changed {
        // A disabled user's gateway keys leave the configuration (and come back).
        state.publisher.publish().await?;
    }
    Ok(Json(user))
}

/// A user's signed-in devices (admins: anyone's; users: their own).
#[utoipa::path(get, path = "/users/{name}/sessions", tag = "users",
    params(("name" = String, Path)), responses((status = 200, body = [Device]), Errors))]
async fn sessions(
    Caller(p): Caller,
    State(state): State<Users>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let user = visible_user(&state.store, &p, &name).await?;
    Ok(Json(
        devices(&state.identity.sessions, &user.id, p.session.as_deref()).await?,
    ))
}

/// Signs a user out everywhere.
#[utoipa::path(delete, path = "/users/{name}/sessions", tag = "users",
    params(("name" = String, Path)), responses((status = 204, description = "Every session ended"), Errors))]
async fn end_sessions(
    Caller(p): Caller,
    State(state): State<Users>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let user = visible_user(&state.store, &p, &name).await?;
    state
        .identity
        .sessions
        .revoke_all(&user.id, crate::store::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs one device of a user out.
#[utoipa::path(delete, path = "/users/{name}/sessions/{id}", tag = "users",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "Session ended"), Errors))]
async fn end_session(
    Caller(p): Caller,
    State(state): State<Users>,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = visible_user(&state.store, &p, &name).await?;
    if state.identity.sessions.revoke(&user.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such session".into()))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only this actor (a user name, `admin-token`, or a name a failed sign-in tried).
    actor: Option<String>,
    /// Actions starting with this (`auth.`, `session.`, `POST /admin/v1/keys`).
    action: Option<String>,
    /// Unix milliseconds.
    from: Option<i64>,
    to: Option<i64>,
    /// 1 to 1000 (100).
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<i64>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
struct AuditPage {
    data: Vec<AuditEntry>,
    next_cursor: Option<i64>,
}

/// The audit log, newest first: every change through this API, sign-ins, sign-in failures,
/// refresh token replays and suspicious refreshes.
#[utoipa::path(get, path = "/audit", tag = "users", params(AuditParams),
    responses((status = 200, body = AuditPage), Errors))]
async fn audit(
    _: AdminOnly,
    State(state): State<Users>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("`limit` must be 1 to 1000".into()));
    }
    let data = state
        .store
        .list_audit(&AuditFilter {
            actor: q.actor,
            action: q.action,
            since_ms: q.from,
            until_ms: q.to,
            before: q.cursor,
            limit,
        })
        .await?;
    let next_cursor = (data.len() as i64 == limit)
        .then(|| data.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage { data, next_cursor }))
}

/// What an admin allows a user over all of its keys; absent or `null`: no limit (`models`:
/// every model).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserLimitsInput {
    #[serde(default)]
    rpm: Option<u32>,
    #[serde(default)]
    tpm: Option<u32>,
    /// Model patterns the user's keys may use: exact names, `*`, or a prefix ending in `*`
    /// (default `["*"]`). Each key serves what its own `models` and these both allow.
    #[serde(default)]
    models: Option<Vec<String>>,
    /// Spend caps, micro-USD per UTC day and month, over all of the user's keys.
    #[serde(default)]
    daily_budget_micros: Option<i64>,
    #[serde(default)]
    monthly_budget_micros: Option<i64>,
}

/// What a user is allowed over all of its keys (admins: anyone's; users: their own).
#[utoipa::path(get, path = "/users/{user}/limits", tag = "users", params(("user" = String, Path)),
    responses((status = 200, body = UserLimitsRow), Errors))]
async fn limits(
    Caller(p): Caller,
    State(state): State<Users>,
    ApiPath(user): ApiPath<String>,
) -> Result<Json<UserLimitsRow>, ApiError> {
    if !p.may_act_for(&user) {
        return Err(ApiError::NotFound("not found".into()));
    }
    Ok(Json(state.store.get_user_limits(&user).await?))
}

/// Sets everything a user is allowed over all of its keys, at once (fields left out: no
/// limit): requests and tokens per minute, the models their keys may use, spend caps. Their
/// keys follow within a second; the user cannot change any of it.
#[utoipa::path(put, path = "/users/{user}/limits", tag = "users", params(("user" = String, Path)),
    request_body = UserLimitsInput, responses((status = 200, body = UserLimitsRow), Errors))]
async fn set_limits(
    _: AdminOnly,
    State(state): State<Users>,
    ApiPath(user): ApiPath<String>,
    ApiJson(input): ApiJson<UserLimitsInput>,
) -> Result<Json<UserLimitsRow>, ApiError> {
    let models = input.models.unwrap_or_else(|| vec!["*".into()]);
    crate::scope::check(&models).map_err(ApiError::BadRequest)?;
    if [input.daily_budget_micros, input.monthly_budget_micros]
        .iter()
        .any(|b| b.is_some_and(|b| !(1..=crate::limits::MAX_CHARGE_MICROS).contains(&b)))
    {
        return Err(ApiError::BadRequest(
            "budgets must be positive and at most 1,000,000 USD".into(),
        ));
    }
    let limits = UserLimitsRow {
        user,
        rpm: input.rpm.map(i64::from),
        tpm: input.tpm.map(i64::from),
        models,
        daily_budget_micros: input.daily_budget_micros,
        monthly_budget_micros: input.monthly_budget_micros,
    };
    state.store.set_user_limits(&limits).await?;
    state.publisher.publish().await?;
    Ok(Json(limits))
}
