//! `/admin/v1/security/*`: master key rotation.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminOnly, ApiError, ApiJson, AppState, Errors};
use crate::crypto::{self, Source};
use crate::reconcile::Publisher;
use crate::secrets::Secrets;
use crate::store::Store;

/// What master key rotation uses: the store (every sealed value), the keys, the publisher.
#[derive(Clone)]
pub(super) struct Security {
    pub(super) store: Store,
    pub(super) secrets: Arc<Secrets>,
    pub(super) publisher: Publisher,
}

impl FromRef<AppState> for Security {
    fn from_ref(app: &AppState) -> Security {
        Security {
            store: app.store.clone(),
            secrets: app.secrets.clone(),
            publisher: app.publisher.clone(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(rotate))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateInput {
    /// The new key (32 bytes, base64 or 64 hex digits). Required when the key comes from
    /// `SWITCHYARD_MASTER_KEY`; otherwise one is generated and written to the key file.
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Rotated {
    /// The new key's id (the first 8 hex digits of its SHA-256), as named in sealed values.
    key_id: String,
    /// Stored secrets sealed again under it.
    resealed: usize,
    /// `file` (written), `environment` (set `SWITCHYARD_MASTER_KEY` to the new key before the
    /// next start), or `fixed`.
    source: &'static str,
}

/// Rotates the master key with no downtime: every stored secret (provider keys, the access
/// token key) is sealed again under the new key, then the old key is forgotten. Envoy's
/// configuration does not change. With a key file, the file is rewritten (other control planes
/// on the same file read it again when they meet a value sealed under a key they lack).
#[utoipa::path(post, path = "/security/master-key/rotate", tag = "security",
    request_body = RotateInput, responses((status = 200, body = Rotated), Errors))]
async fn rotate(
    _: AdminOnly,
    State(state): State<Security>,
    ApiJson(input): ApiJson<RotateInput>,
) -> Result<Json<Rotated>, ApiError> {
    let new = match (input.key, state.secrets.master.source()) {
        (Some(k), _) => crypto::parse_master_key(&k).ok_or_else(|| {
            ApiError::BadRequest("`key` must be 32 bytes, as base64 or 64 hex digits".into())
        })?,
        (None, Source::Env) => {
            return Err(ApiError::BadRequest(
                "the master key comes from SWITCHYARD_MASTER_KEY: give the new key as `key`, \
                 then set the variable to it before the next start"
                    .into(),
            ))
        }
        (None, _) => crypto::new_master_key(),
    };
    let resealed = state.secrets.rotate_master_key(&state.store, &new).await?;
    state.publisher.publish().await?;
    Ok(Json(Rotated {
        key_id: state.secrets.master.current_id(),
        resealed,
        source: match state.secrets.master.source() {
            Source::Env => "environment",
            Source::File(_) => "file",
            Source::Fixed => "fixed",
        },
    }))
}
