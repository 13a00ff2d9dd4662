//! `/admin/v1/providers`: create, list, get, update, delete. Keys go in, never come out.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{publish, ApiError, ApiJson, AppState};
use crate::domain::{self, ProviderDef, ProviderKind, ProviderSettings};
use crate::store::{NewProviderKey, ProviderKeyRow, ProviderRow};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/providers", get(list).post(create))
        .route("/providers/{name}", get(read).put(update).delete(remove))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    secret: String,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    qps: Option<u32>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProvider {
    name: String,
    kind: ProviderKind,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    keys: Vec<KeyInput>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    proxies: Option<Vec<String>>,
}

/// Fields absent from an update keep their value; `keys`, when present, replaces the key set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProvider {
    #[serde(default)]
    kind: Option<ProviderKind>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    keys: Option<Vec<KeyInput>>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    proxies: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct KeyView {
    id: String,
    weight: u32,
    qps: Option<u32>,
}

#[derive(Debug, Serialize)]
struct ProviderView {
    id: String,
    name: String,
    kind: ProviderKind,
    base_url: String,
    models: Vec<String>,
    #[serde(flatten)]
    settings: ProviderSettings,
    enabled: bool,
    keys: Vec<KeyView>,
}

fn view(p: ProviderRow, keys: &[ProviderKeyRow]) -> ProviderView {
    ProviderView {
        keys: keys
            .iter()
            .filter(|k| k.provider_id == p.id)
            .map(|k| KeyView {
                id: k.id.clone(),
                weight: k.weight,
                qps: k.qps,
            })
            .collect(),
        id: p.id,
        name: p.name,
        kind: p.kind,
        base_url: p.base_url,
        models: p.models,
        settings: p.settings,
        enabled: p.enabled,
    }
}

fn seal_keys(
    app: &crate::app::App,
    kind: ProviderKind,
    keys: &[KeyInput],
) -> Result<Vec<NewProviderKey>, ApiError> {
    keys.iter()
        .map(|k| NewProviderKey::seal(&app.master, kind, &k.secret, k.weight, k.qps))
        .collect::<Result<_, _>>()
        .map_err(ApiError::BadRequest)
}

async fn list(State(app): State<AppState>) -> Result<Json<Vec<ProviderView>>, ApiError> {
    let keys = app.store.list_provider_keys().await?;
    let providers = app.store.list_providers().await?;
    Ok(Json(
        providers.into_iter().map(|p| view(p, &keys)).collect(),
    ))
}

async fn read(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ProviderView>, ApiError> {
    let p = app.store.get_provider(&name).await?;
    let keys = app.store.list_provider_keys().await?;
    Ok(Json(view(p, &keys)))
}

async fn create(
    State(app): State<AppState>,
    ApiJson(input): ApiJson<CreateProvider>,
) -> Result<(StatusCode, Json<ProviderView>), ApiError> {
    domain::check_name("provider", &input.name).map_err(ApiError::BadRequest)?;
    let def = ProviderDef::resolve(
        input.kind,
        input.base_url.as_deref(),
        input.models,
        ProviderSettings {
            preset: input.preset,
            api_version: input.api_version,
            region: input.region,
            project: input.project,
            location: input.location,
            proxies: input.proxies.unwrap_or_default(),
        },
    )
    .map_err(ApiError::BadRequest)?;
    let keys = seal_keys(&app, def.kind, &input.keys)?;
    let id = app.store.insert_provider(&input.name, &def).await?;
    app.store.replace_provider_keys(&id, &keys).await?;
    publish(&app).await?;
    let p = app.store.get_provider(&input.name).await?;
    let all_keys = app.store.list_provider_keys().await?;
    Ok((StatusCode::CREATED, Json(view(p, &all_keys))))
}

async fn update(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<UpdateProvider>,
) -> Result<Json<ProviderView>, ApiError> {
    let current = app.store.get_provider(&name).await?;
    let def = ProviderDef::resolve(
        input.kind.unwrap_or(current.kind),
        Some(input.base_url.as_deref().unwrap_or(&current.base_url)),
        input.models.unwrap_or(current.models),
        ProviderSettings {
            preset: input.preset.or(current.settings.preset),
            api_version: input.api_version.or(current.settings.api_version),
            region: input.region.or(current.settings.region),
            project: input.project.or(current.settings.project),
            location: input.location.or(current.settings.location),
            proxies: input.proxies.unwrap_or(current.settings.proxies),
        },
    )
    .map_err(ApiError::BadRequest)?;
    let keys = input
        .keys
        .map(|k| seal_keys(&app, def.kind, &k))
        .transpose()?;
    app.store
        .update_provider(&name, &def, input.enabled.unwrap_or(current.enabled))
        .await?;
    if let Some(keys) = keys {
        app.store.replace_provider_keys(&current.id, &keys).await?;
    }
    publish(&app).await?;
    read(State(app), Path(name)).await
}

async fn remove(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.store.delete_provider(&name).await?;
    publish(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
