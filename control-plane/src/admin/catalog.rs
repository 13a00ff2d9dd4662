//! The model catalog: `/admin/v1/providers/{name}/models` (each provider's models: static and
//! discovered, enabled or not, tags, context window, price), `/providers/{name}/discover` (list
//! the provider's models now) and `/admin/v1/aliases` (more names for models). Every change
//! reaches Envoy in the same publish.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::providers::{managed, visible};
use super::{AdminOnly, ApiError, ApiJson, ApiPath, AppState, Caller, Errors};
use crate::discovery::{Discoverer, Tag};
use crate::reconcile::Publisher;
use crate::store::{
    AliasRow, DiscoveryChange, ProviderModelPatch, ProviderModelRow, Store, StoreError,
};

/// What the catalog routes use: the store, the publisher and discovery.
#[derive(Clone)]
pub(super) struct Catalog {
    pub(super) store: Store,
    pub(super) publisher: Publisher,
    pub(super) discoverer: Discoverer,
}

impl FromRef<AppState> for Catalog {
    fn from_ref(app: &AppState) -> Catalog {
        Catalog {
            store: app.store.clone(),
            publisher: app.publisher.clone(),
            discoverer: app.discoverer.clone(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(provider_models))
        .routes(routes!(update_model))
        .routes(routes!(discover))
        .routes(routes!(list_aliases, create_alias))
        .routes(routes!(read_alias, put_alias, delete_alias))
}

/// A capability tag.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
enum TagName {
    Chat,
    Vision,
    FunctionCalling,
    ImageGeneration,
    Embeddings,
    Reasoning,
}

#[derive(Debug, Serialize, ToSchema)]
struct ProviderModelView {
    /// The provider's own name for the model.
    model: String,
    /// Whether clients may use it now: enabled, and static or listed by the latest discovery.
    served: bool,
    enabled: bool,
    /// In the provider's static list.
    #[serde(rename = "static")]
    static_listed: bool,
    /// Some discovery listed it.
    discovered: bool,
    /// When a discovery no longer listed it (Unix seconds); `null`: listed.
    vanished_at: Option<i64>,
    /// The config file's `model_settings` name it (applied at every start).
    configured: bool,
    /// What it can do: the admin's tags, else the detected ones.
    #[schema(value_type = Vec<TagName>)]
    tags: Vec<Tag>,
    #[schema(value_type = Vec<TagName>)]
    detected_tags: Vec<Tag>,
    /// The tags are an admin's.
    tags_overridden: bool,
    /// Whether routing relies on the tags (an admin's, or from the provider's metadata); a
    /// guess from the name does not keep requests from the model.
    tags_route: bool,
    /// Most input tokens: the admin's value, else the provider's.
    context_window: Option<i64>,
    detected_context_window: Option<i64>,
    display_name: Option<String>,
    /// Azure: the model behind the deployment.
    base_model: Option<String>,
    /// Unix seconds: when the provider made it, else when it was first seen.
    created: i64,
    first_seen: i64,
    /// The latest discovery that listed it.
    seen_at: Option<i64>,
    /// Its price (micro-USD and USD per million tokens; `PUT /prices/{provider}/{model}`
    /// sets it); `null`: unpriced.
    #[schema(value_type = Option<Object>)]
    price: Option<serde_json::Value>,
}

/// `discovers`: whether the provider's discovery is on (when off, only static models serve).
fn model_view(
    row: ProviderModelRow,
    prices: &[crate::store::PriceRow],
    discovers: bool,
) -> ProviderModelView {
    let price = prices
        .iter()
        .find(|p| p.provider == row.provider && p.model == row.model)
        .map(|p| super::usage::price_json(&p.provider, &p.model, &p.price, "table"))
        .or_else(|| {
            crate::pricing::default_price(&row.model)
                .map(|p| super::usage::price_json(&row.provider, &row.model, &p, "default"))
        });
    ProviderModelView {
        served: row.served() && (row.static_listed || discovers),
        tags: row.tags().to_vec(),
        tags_route: row.capabilities().is_some(),
        context_window: row.context_window(),
        tags_overridden: row.tags_override.is_some(),
        detected_context_window: row.context_window,
        model: row.model,
        enabled: row.enabled,
        static_listed: row.static_listed,
        discovered: row.discovered,
        vanished_at: row.vanished_at,
        configured: row.configured,
        detected_tags: row.detected_tags,
        display_name: row.display_name,
        base_model: row.base_model,
        created: row.created,
        first_seen: row.first_seen,
        seen_at: row.seen_at,
        price,
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct ProviderModels {
    provider: String,
    /// Whether discovery lists this provider's models.
    discovers: bool,
    /// The latest discovery since the control plane started (`null`: none yet).
    discovery: Option<crate::discovery::Status>,
    data: Vec<ProviderModelView>,
}

/// A provider's models: static and discovered, served or not, with what is known of them.
#[utoipa::path(get, path = "/providers/{name}/models", tag = "models", params(("name" = String, Path)),
    responses((status = 200, body = ProviderModels), Errors))]
async fn provider_models(
    Caller(p): Caller,
    State(state): State<Catalog>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProviderModels>, ApiError> {
    let provider = visible(&state.store, &p, &name).await?;
    let rows = state.store.provider_models(&name).await?;
    let prices = state.store.list_prices().await?;
    let discovers = crate::providers::discovers(provider.kind, &provider.settings);
    Ok(Json(ProviderModels {
        discovers,
        discovery: state.discoverer.runner.status(&name),
        provider: name,
        data: rows
            .into_iter()
            .map(|r| model_view(r, &prices, discovers))
            .collect(),
    }))
}

/// `null` given: `Some(None)`; absent: `None` (with `#[serde(default)]`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Absent fields stay as they are; `null` gives back the detected value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ModelPatch {
    #[serde(default)]
    enabled: Option<bool>,
    /// The model's tags, replacing the detected ones (`null`: the detected ones again).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<TagName>>)]
    tags: Option<Option<Vec<Tag>>>,
    /// Most input tokens (`null`: the provider's value again).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000000)]
    context_window: Option<Option<i64>>,
}

/// Enables or disables one of a provider's models, sets its tags or context window (its
/// owner or an admin). A model with a `/` in its name is written `%2F` in the path.
#[utoipa::path(patch, path = "/providers/{name}/models/{model}", tag = "models",
    params(("name" = String, Path), ("model" = String, Path)),
    request_body = ModelPatch, responses((status = 200, body = ProviderModelView), Errors))]
async fn update_model(
    Caller(p): Caller,
    State(state): State<Catalog>,
    ApiPath((name, model)): ApiPath<(String, String)>,
    ApiJson(input): ApiJson<ModelPatch>,
) -> Result<Json<ProviderModelView>, ApiError> {
    let provider = managed(&state.store, &p, &name).await?;
    let patch = ProviderModelPatch::checked(input.enabled, input.tags, input.context_window)
        .map_err(ApiError::BadRequest)?;
    let row = match state
        .store
        .update_provider_model(&name, &model, &patch)
        .await
    {
        Err(StoreError::NotFound) => {
            return Err(ApiError::NotFound(format!(
                "provider {name:?} has no model {model:?}"
            )))
        }
        other => other?,
    };
    state.publisher.publish().await?;
    let prices = state.store.list_prices().await?;
    let discovers = crate::providers::discovers(provider.kind, &provider.settings);
    Ok(Json(model_view(row, &prices, discovers)))
}

/// Lists the provider's models now (its owner or an admin): new ones are added (enabled or
/// not, as the provider's `new_models` says), vanished ones marked. 409 when it cannot be
/// tried (discovery off, no key); 502 when the provider gives no usable list.
#[utoipa::path(post, path = "/providers/{name}/discover", tag = "models", params(("name" = String, Path)),
    responses((status = 200, body = DiscoveryChange),
        (status = 409, description = "Discovery is off, or the provider has no key", body = super::ErrorBody),
        (status = 502, description = "The provider gave no usable list", body = super::ErrorBody), Errors))]
async fn discover(
    Caller(p): Caller,
    State(state): State<Catalog>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<DiscoveryChange>, ApiError> {
    let provider = managed(&state.store, &p, &name).await?;
    crate::discovery::discover(&state.discoverer, &provider)
        .await
        .map(Json)
        .map_err(|f| match f {
            crate::discovery::Failure::NotPossible(m) => ApiError::Conflict(m),
            crate::discovery::Failure::Provider(m) => ApiError::Upstream(m),
            crate::discovery::Failure::Internal(m) => ApiError::Internal(m),
        })
}

// ---- aliases -------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Alias {
    /// The name clients send; with `*`, a glob over a provider's model names (`claude-*`).
    name: String,
    /// What it stands for: a model name (logical, `provider/model`, or plain); for a glob, the
    /// provider whose models of matching names it gives.
    target: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AliasTarget {
    target: String,
}

/// Refuses an alias whose name is taken by a logical model or whose target does not exist.
async fn check_alias(store: &Store, alias: &AliasRow) -> Result<(), ApiError> {
    let logical = store.list_models().await?;
    crate::apply::check_alias(alias, logical.iter().map(|m| m.name.as_str()))
        .map_err(ApiError::BadRequest)?;
    if alias.is_glob() {
        return match store.get_provider(&alias.target).await {
            Err(StoreError::NotFound) => Err(ApiError::BadRequest(format!(
                "unknown provider {:?}",
                alias.target
            ))),
            other => other.map(|_| ()).map_err(ApiError::from),
        };
    }
    if logical.iter().any(|m| m.name == alias.target) {
        return Ok(());
    }
    if store.get_alias(&alias.target).await.is_ok() {
        return Err(ApiError::BadRequest(
            "an alias names a model, not another alias".into(),
        ));
    }
    let catalog = store.list_provider_models().await?;
    let known = catalog.iter().any(|r| {
        r.model == alias.target
            || alias
                .target
                .strip_prefix(r.provider.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(r.model.as_str())
    });
    if known {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{:?} is no logical model and no model of any provider",
            alias.target
        )))
    }
}

/// Aliases.
#[utoipa::path(get, path = "/aliases", tag = "models", responses((status = 200, body = [Alias]), Errors))]
async fn list_aliases(
    _: Caller,
    State(state): State<Catalog>,
) -> Result<Json<Vec<Alias>>, ApiError> {
    let rows = state.store.list_aliases().await?;
    Ok(Json(
        rows.into_iter()
            .map(|a| Alias {
                name: a.name,
                target: a.target,
            })
            .collect(),
    ))
}

/// One alias.
#[utoipa::path(get, path = "/aliases/{name}", tag = "models", params(("name" = String, Path)),
    responses((status = 200, body = Alias), Errors))]
async fn read_alias(
    _: Caller,
    State(state): State<Catalog>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Alias>, ApiError> {
    let a = state.store.get_alias(&name).await?;
    Ok(Json(Alias {
        name: a.name,
        target: a.target,
    }))
}

/// Adds an alias (admins).
#[utoipa::path(post, path = "/aliases", tag = "models", request_body = Alias,
    responses((status = 201, body = Alias), (status = 409, description = "Name taken", body = super::ErrorBody), Errors))]
async fn create_alias(
    _: AdminOnly,
    State(state): State<Catalog>,
    ApiJson(input): ApiJson<Alias>,
) -> Result<(StatusCode, Json<Alias>), ApiError> {
    let row = AliasRow {
        name: input.name,
        target: input.target,
    };
    check_alias(&state.store, &row).await?;
    match state.store.get_alias(&row.name).await {
        Ok(_) => {
            return Err(ApiError::Conflict(format!(
                "alias {:?} already exists",
                row.name
            )))
        }
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    state.store.put_alias(&row).await?;
    state.publisher.publish().await?;
    Ok((
        StatusCode::CREATED,
        Json(Alias {
            name: row.name,
            target: row.target,
        }),
    ))
}

/// Creates or changes the alias called `name` (admins).
#[utoipa::path(put, path = "/aliases/{name}", tag = "models", params(("name" = String, Path)),
    request_body = AliasTarget, responses((status = 200, body = Alias), Errors))]
async fn put_alias(
    _: AdminOnly,
    State(state): State<Catalog>,
    ApiPath(name): ApiPath<String>,
    ApiJson(input): ApiJson<AliasTarget>,
) -> Result<Json<Alias>, ApiError> {
    let row = AliasRow {
        name,
        target: input.target,
    };
    check_alias(&state.store, &row).await?;
    state.store.put_alias(&row).await?;
    state.publisher.publish().await?;
    Ok(Json(Alias {
        name: row.name,
        target: row.target,
    }))
}

/// Deletes an alias (admins).
#[utoipa::path(delete, path = "/aliases/{name}", tag = "models", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), Errors))]
async fn delete_alias(
    _: AdminOnly,
    State(state): State<Catalog>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_alias(&name).await?;
    state.publisher.publish().await?;
    Ok(StatusCode::NO_CONTENT)
}
