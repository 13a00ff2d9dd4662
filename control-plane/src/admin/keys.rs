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
            },
            false,
        )
        .await?;
    publish(&app).await?;
    let view = app.store.get_api_key(&id).await?.into();
    Ok((StatusCode::CREATED, Json(CreatedKey { view, key: secret })))
}

async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.store.delete_api_key(&id).await?;
    publish(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
