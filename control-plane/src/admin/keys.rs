//! `/admin/v1/keys`: gateway API keys. The secret is returned once, at creation; the store keeps
//! only its SHA-256 digest and a short prefix for humans.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{publish, ApiError, ApiJson, AppState};
use crate::app::key_prefix;
use crate::crypto;
use crate::domain;
use crate::store::{ApiKeyRow, NewApiKey};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list).post(create))
        .route("/keys/{id}", get(read).delete(remove))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    name: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    rpm: Option<u32>,
    #[serde(default)]
    tpm: Option<u32>,
    #[serde(default)]
    credits: Option<f64>,
    #[serde(default)]
    expires_at: Option<i64>,
    /// Spend caps, micro-USD per UTC day and month.
    #[serde(default)]
    daily_budget_micros: Option<i64>,
    #[serde(default)]
    monthly_budget_micros: Option<i64>,
}

#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    key: String,
}

async fn list(State(app): State<AppState>) -> Result<Json<Vec<KeyView>>, ApiError> {
    let keys = app.store.list_api_keys().await?;
    Ok(Json(keys.into_iter().map(KeyView::from).collect()))
}

async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(app.store.get_api_key(&id).await?.into()))
}

async fn create(
    State(app): State<AppState>,
    ApiJson(input): ApiJson<KeyInput>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    domain::check_name("API key", &input.name).map_err(ApiError::BadRequest)?;
    let user = input.user.unwrap_or_else(|| input.name.clone());
    domain::check_name("user", &user).map_err(ApiError::BadRequest)?;
    let models = input.models.unwrap_or_else(|| vec!["*".into()]);
    for m in models.iter().filter(|m| m.as_str() != "*") {
        domain::check_model_name(m.trim_end_matches('*')).map_err(ApiError::BadRequest)?;
    }
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
    let id = app
        .store
        .put_api_key(
            &NewApiKey {
                name: input.name,
                user,
                prefix: key_prefix(&secret),
                digest: crypto::digest(&secret),
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
    let key = app.store.get_api_key(&id).await?;
    if let Some(amount) = starting_credits {
        app.store.open_account_with(&key.user, amount).await?;
        app.credits_changed(&key.user).await?;
    } else {
        publish(&app).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            view: key.into(),
            key: secret,
        }),
    ))
}

async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.store.delete_api_key(&id).await?;
    publish(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
