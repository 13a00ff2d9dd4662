//! `/admin/v1/models`: logical models, the names clients send, and their targets.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminOnly, ApiError, ApiJson, ApiPath, AppState, Caller, Errors};
use crate::config::TargetSpec;
use crate::domain::{self, Strategy};
use crate::reconcile::Publisher;
use crate::store::{ModelRow, Store, StoreError};

/// What the logical models routes use: the store and the publisher.
#[derive(Clone)]
pub(super) struct Models {
    pub(super) store: Store,
    pub(super) publisher: Publisher,
}

impl FromRef<AppState> for Models {
    fn from_ref(app: &AppState) -> Models {
        Models {
            store: app.store.clone(),
            publisher: app.publisher.clone(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ModelInput {
    name: String,
    /// `weighted`, `latency`, `cost`, `reliability` or `balanced`.
    #[serde(default = "domain::default_strategy")]
    #[schema(value_type = Option<StrategyName>)]
    strategy: Strategy,
    targets: Vec<TargetSpec>,
}

/// How a model's targets are ranked.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
enum StrategyName {
    Weighted,
    Latency,
    Cost,
    Reliability,
    Balanced,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ModelUpdate {
    #[serde(default)]
    #[schema(value_type = Option<StrategyName>)]
    strategy: Option<Strategy>,
    #[serde(default)]
    targets: Option<Vec<TargetSpec>>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ModelView {
    name: String,
    #[schema(value_type = StrategyName)]
    strategy: Strategy,
    targets: Vec<TargetSpec>,
}

impl From<ModelRow> for ModelView {
    fn from(m: ModelRow) -> Self {
        ModelView {
            name: m.name,
            strategy: m.strategy,
            targets: m.targets,
        }
    }
}

async fn check_targets(store: &Store, targets: &[TargetSpec]) -> Result<(), ApiError> {
    if targets.is_empty() {
        return Err(ApiError::BadRequest(
            "a model needs at least one target".into(),
        ));
    }
    for t in targets {
        domain::check_model_name(&t.model).map_err(ApiError::BadRequest)?;
        match store.get_provider(&t.provider).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown provider {:?}",
                    t.provider
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Logical models.
#[utoipa::path(get, path = "/models", tag = "models", responses((status = 200, body = [ModelView]), Errors))]
async fn list(_: Caller, State(state): State<Models>) -> Result<Json<Vec<ModelView>>, ApiError> {
    let models = state.store.list_models().await?;
    Ok(Json(models.into_iter().map(ModelView::from).collect()))
}

/// One logical model.
#[utoipa::path(get, path = "/models/{name}", tag = "models", params(("name" = String, Path)),
    responses((status = 200, body = ModelView), Errors))]
async fn read(
    _: Caller,
    State(state): State<Models>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(state.store.get_model(&name).await?.into()))
}

/// Creates a logical model: a name clients send, served by its targets.
#[utoipa::path(post, path = "/models", tag = "models", request_body = ModelInput,
    responses((status = 201, body = ModelView), (status = 409, description = "Name taken", body = super::ErrorBody), Errors))]
async fn create(
    _: AdminOnly,
    State(state): State<Models>,
    ApiJson(input): ApiJson<ModelInput>,
) -> Result<(StatusCode, Json<ModelView>), ApiError> {
    domain::check_model_name(&input.name).map_err(ApiError::BadRequest)?;
    check_targets(&state.store, &input.targets).await?;
    match state.store.get_model(&input.name).await {
        Ok(_) => {
            return Err(ApiError::Conflict(format!(
                "model {:?} already exists",
                input.name
            )))
        }
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let row = ModelRow {
        name: input.name,
        strategy: input.strategy,
        targets: input.targets,
    };
    state.store.upsert_model(&row).await?;
    state.publisher.publish().await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Changes a logical model's strategy or targets.
#[utoipa::path(put, path = "/models/{name}", tag = "models", params(("name" = String, Path)),
    request_body = ModelUpdate, responses((status = 200, body = ModelView), Errors))]
async fn update(
    _: AdminOnly,
    State(state): State<Models>,
    ApiPath(name): ApiPath<String>,
    ApiJson(input): ApiJson<ModelUpdate>,
) -> Result<Json<ModelView>, ApiError> {
    let mut row = state.store.get_model(&name).await?;
    if let Some(s) = input.strategy {
        row.strategy = s;
    }
    if let Some(t) = input.targets {
        check_targets(&state.store, &t).await?;
        row.targets = t;
    }
    state.store.upsert_model(&row).await?;
    state.publisher.publish().await?;
    Ok(Json(row.into()))
}

/// Deletes a logical model.
#[utoipa::path(delete, path = "/models/{name}", tag = "models", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), Errors))]
async fn remove(
    _: AdminOnly,
    State(state): State<Models>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_model(&name).await?;
    state.publisher.publish().await?;
    Ok(StatusCode::NO_CONTENT)
}
