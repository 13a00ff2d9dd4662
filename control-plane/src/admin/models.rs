//! `/admin/v1/models`: logical models, the names clients send, and their targets.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{publish, ApiError, ApiJson, AppState};
use crate::config::TargetSpec;
use crate::domain::{self, Strategy};
use crate::store::{ModelRow, StoreError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/models", get(list).post(create))
        .route("/models/{name}", get(read).put(update).delete(remove))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelInput {
    name: String,
    #[serde(default = "domain::default_strategy")]
    strategy: Strategy,
    targets: Vec<TargetSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelUpdate {
    #[serde(default)]
    strategy: Option<Strategy>,
    #[serde(default)]
    targets: Option<Vec<TargetSpec>>,
}

#[derive(Debug, Serialize)]
struct ModelView {
    name: String,
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

async fn check_targets(app: &crate::app::App, targets: &[TargetSpec]) -> Result<(), ApiError> {
    if targets.is_empty() {
        return Err(ApiError::BadRequest(
            "a model needs at least one target".into(),
        ));
    }
    for t in targets {
        domain::check_model_name(&t.model).map_err(ApiError::BadRequest)?;
        match app.store.get_provider(&t.provider).await {
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

async fn list(State(app): State<AppState>) -> Result<Json<Vec<ModelView>>, ApiError> {
    let models = app.store.list_models().await?;
    Ok(Json(models.into_iter().map(ModelView::from).collect()))
}

async fn read(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(app.store.get_model(&name).await?.into()))
}

async fn create(
    State(app): State<AppState>,
    ApiJson(input): ApiJson<ModelInput>,
) -> Result<(StatusCode, Json<ModelView>), ApiError> {
    domain::check_model_name(&input.name).map_err(ApiError::BadRequest)?;
    check_targets(&app, &input.targets).await?;
    match app.store.get_model(&input.name).await {
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
    app.store.upsert_model(&row).await?;
    publish(&app).await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

async fn update(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<ModelUpdate>,
) -> Result<Json<ModelView>, ApiError> {
    let mut row = app.store.get_model(&name).await?;
    if let Some(s) = input.strategy {
        row.strategy = s;
    }
    if let Some(t) = input.targets {
        check_targets(&app, &t).await?;
        row.targets = t;
    }
    app.store.upsert_model(&row).await?;
    publish(&app).await?;
    Ok(Json(row.into()))
}

async fn remove(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.store.delete_model(&name).await?;
    publish(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
