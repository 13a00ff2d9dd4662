//! `/admin/v1/keys`: gateway API keys. The secret is returned once, at creation; the store keeps
//! only its keyed digest (see `crypto::DigestKey`) and a short prefix for humans.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::usage::Credits;
use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Errors};
use crate::apply::key_prefix;
use crate::crypto;
use crate::domain;
use crate::reconcile::Publisher;
use crate::secrets::Secrets;
use crate::store::{ApiKeyRow, NewApiKey, Store};

/// What the gateway keys routes use: the store, the digest key, the publisher and the credit
/// accounts.
#[derive(Clone)]
pub(super) struct Keys {
    pub(super) store: Store,
    pub(super) secrets: Arc<Secrets>,
    pub(super) publisher: Publisher,
    pub(super) credits: Credits,
}

impl FromRef<AppState> for Keys {
    fn from_ref(app: &AppState) -> Keys {
        Keys {
            store: app.store.clone(),
            secrets: app.secrets.clone(),
            publisher: app.publisher.clone(),
            credits: Credits::from_ref(app),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, remove))
}

/// A new gateway key. Users create keys for themselves; admins for anyone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    /// The owner (admins only; users' keys are their own). Default: the key's name for the
    /// admin token, the caller for a user.
    #[serde(default)]
    user: Option<String>,
    /// Model patterns: exact names, `*`, or a prefix ending in `*`. A user's key may not go
    /// beyond the models an admin allows the user (403), and gets exactly those by default; an
    /// admin's default is `["*"]`. Either way the key serves only what its owner may.
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    rpm: Option<u32>,
    #[serde(default)]
    tpm: Option<u32>,
    /// Opens the owner's credit account with this many USD (admins only).
    #[serde(default)]
    credits: Option<f64>,
    /// Unix seconds after which the key is refused.
    #[serde(default)]
    expires_at: Option<i64>,
    /// Spend caps, micro-USD per UTC day and month.
    #[serde(default)]
    daily_budget_micros: Option<i64>,
    #[serde(default)]
    monthly_budget_micros: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct KeyView {
    id: String,
    name: String,
    user: String,
    prefix: String,
    models: Vec<String>,
    rpm: Option<u32>,
    tpm: Option<u32>,
    credits: Option<f64>,
    expires_at: Option<i64>,
    created_at: i64,
    daily_budget_micros: Option<i64>,
    monthly_budget_micros: Option<i64>,
}

impl From<ApiKeyRow> for KeyView {
    fn from(k: ApiKeyRow) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            user: k.user,
            prefix: k.prefix,
            models: k.models,
            rpm: k.rpm,
            tpm: k.tpm,
            credits: k.credits,
            expires_at: k.expires_at,
            created_at: k.created_at,
            daily_budget_micros: k.daily_budget_micros,
            monthly_budget_micros: k.monthly_budget_micros,
        }
    }
}

/// The creation answer: the view plus the secret, this one time.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    key: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only this user's keys (admins; a user always sees only their own).
    user: Option<String>,
}

/// Gateway keys (never their secrets): all of them for admins, their own for users.
#[utoipa::path(get, path = "/keys", tag = "keys", params(ListParams),
    responses((status = 200, body = [KeyView]), Errors))]
async fn list(
    Caller(p): Caller,
    State(state): State<Keys>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let only = if p.is_admin() {
        q.user
    } else {
        Some(p.name.clone())
    };
    let keys = state.store.list_api_keys().await?;
    Ok(Json(
        keys.into_iter()
            .filter(|k| only.as_ref().is_none_or(|u| *u == k.user))
            .map(KeyView::from)
            .collect(),
    ))
}

/// The key with this id, if the caller may see it.
async fn own_key(
    store: &Store,
    p: &crate::auth::Principal,
    id: &str,
) -> Result<ApiKeyRow, ApiError> {
    let key = store.get_api_key(id).await?;
    if !p.may_act_for(&key.user) {
        return Err(ApiError::NotFound("not found".into()));
    }
    Ok(key)
}

/// One key.
#[utoipa::path(get, path = "/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyView), Errors))]
async fn read(
    Caller(p): Caller,
    State(state): State<Keys>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(own_key(&state.store, &p, &id).await?.into()))
}

/// Creates a key; its secret is in this answer only.
#[utoipa::path(post, path = "/keys", tag = "keys", request_body = KeyInput,
    responses((status = 201, body = CreatedKey), (status = 409, description = "Name taken", body = super::ErrorBody), Errors))]
async fn create(
    Caller(p): Caller,
    State(state): State<Keys>,
    ApiJson(input): ApiJson<KeyInput>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    domain::check_name("API key", &input.name).map_err(ApiError::BadRequest)?;
    let user = match (&input.user, p.is_admin()) {
        (Some(u), true) => u.clone(),
        (None, true) if p.user_id.is_none() => input.name.clone(),
        (None, _) => p.name.clone(),
        (Some(u), false) if *u == p.name => u.clone(),
        (Some(_), false) => {
            return Err(ApiError::Forbidden(
                "users create keys for themselves only".into(),
            ))
        }
    };
    if input.credits.is_some() && !p.is_admin() {
        return Err(ApiError::Forbidden("only admins give credits".into()));
    }
    domain::check_name("user", &user).map_err(ApiError::BadRequest)?;
    let models = if p.is_admin() {
        input.models.unwrap_or_else(|| vec!["*".into()])
    } else {
        // What an admin allows the caller bounds what they give their own keys.
        let allowed = match state.store.get_user_limits(&user).await {
            Ok(limits) => limits.models,
            Err(crate::store::StoreError::NotFound) => vec!["*".into()],
            Err(e) => return Err(e.into()),
        };
        let models = input.models.unwrap_or_else(|| allowed.clone());
        if let Some(outside) = crate::scope::beyond(&models, &allowed) {
            return Err(ApiError::Forbidden(format!(
                "`models` goes beyond the models your account may use: {outside:?} is not within {allowed:?}"
            )));
        }
        models
    };
    crate::scope::check(&models).map_err(ApiError::BadRequest)?;
    if input.credits.is_some_and(|c| !c.is_finite() || c < 0.0) {
        return Err(ApiError::BadRequest(
            "credits must be a non-negative number".into(),
        ));
    }
    if [input.daily_budget_micros, input.monthly_budget_micros]
        .iter()
        .any(|b| b.is_some_and(|b| b <= 0))
    {
        return Err(ApiError::BadRequest("budgets must be positive".into()));
    }
    let starting_credits = input
        .credits
        .map(|c| {
            crate::domain::usd_to_micros(c)
                .ok_or_else(|| ApiError::BadRequest("credits must be at most a billion USD".into()))
        })
        .transpose()?;
    let secret = crypto::token("sk-sy-");
    let id = state
        .store
        .put_api_key(
            &NewApiKey {
                name: input.name,
                user,
                prefix: key_prefix(&secret),
                digest: state.secrets.digest_key.digest(&secret),
                models,
                rpm: input.rpm,
                tpm: input.tpm,
                credits: input.credits,
                expires_at: input.expires_at,
                daily_budget_micros: input.daily_budget_micros,
                monthly_budget_micros: input.monthly_budget_micros,
            },
            false,
        )
        .await?;
    let key = state.store.get_api_key(&id).await?;
    if let Some(amount) = starting_credits {
        state.store.open_account_with(&key.user, amount).await?;
        state.credits.changed(&key.user).await?;
    } else {
        state.publisher.publish().await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            view: key.into(),
            key: secret,
        }),
    ))
}

/// Revokes a key: it stops working within a second.
#[utoipa::path(delete, path = "/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"), Errors))]
async fn remove(
    Caller(p): Caller,
    State(state): State<Keys>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    own_key(&state.store, &p, &id).await?;
    state.store.delete_api_key(&id).await?;
    state.publisher.publish().await?;
    Ok(StatusCode::NO_CONTENT)
}
