//! `/admin/v1/providers`: create, list, get, update, delete; share, submit, review. Keys go in,
//! never come out.
//!
//! Admins' providers are public (every key may use them). A user's provider is private: it
//! serves their keys and the keys of the users they share it with, as `provider/model`. The
//! owner may submit it to the public pool; an admin approves (it becomes public) or rejects it.
//! An owner's change to an approved provider sends it back to review. The base URL of a user's
//! provider may only reach public addresses ([`crate::ssrf`]), checked here and at connect time.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminOnly, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Errors};
use crate::auth::Principal;
use crate::crypto::MasterKey;
use crate::discovery::Discoverer;
use crate::domain::{self, ProviderDef, ProviderKind, ProviderSettings};
use crate::reconcile::Publisher;
use crate::secrets::Secrets;
use crate::ssrf::Guard;
use crate::store::{NewProviderKey, ProviderKeyRow, ProviderRow, Store, StoreError};

/// What the providers routes use: the store, the master key (keys are sealed), the SSRF guard
/// (users' providers), the publisher and discovery.
#[derive(Clone)]
pub(super) struct Providers {
    pub(super) store: Store,
    pub(super) secrets: Arc<Secrets>,
    pub(super) guard: Guard,
    pub(super) publisher: Publisher,
    pub(super) discoverer: Discoverer,
}

impl FromRef<AppState> for Providers {
    fn from_ref(app: &AppState) -> Providers {
        Providers {
            store: app.store.clone(),
            secrets: app.secrets.clone(),
            guard: app.identity.guard.clone(),
            publisher: app.publisher.clone(),
            discoverer: app.discoverer.clone(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
        .routes(routes!(share, unshare))
        .routes(routes!(submit))
        .routes(routes!(review))
}

#[derive(Debug, Deserialize, ToSchema)]
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

/// The API family a provider speaks.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
enum KindName {
    Openai,
    OpenaiCompatible,
    AzureOpenai,
    Anthropic,
    Gemini,
    Vertex,
    Bedrock,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateProvider {
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    #[schema(value_type = KindName)]
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
    /// Egress proxies (admins only).
    #[serde(default)]
    proxies: Option<Vec<String>>,
    /// `false`: only the static `models` are served, the provider's list is not read.
    #[serde(default)]
    discover: Option<bool>,
    /// `enabled` (default) or `disabled`: whether discovered models are served at once.
    #[serde(default)]
    #[schema(value_type = Option<NewModelsName>)]
    new_models: Option<crate::domain::NewModels>,
}

/// What happens to a model discovery finds for the first time.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
enum NewModelsName {
    Enabled,
    Disabled,
}

/// Fields absent from an update keep their value; `keys`, when present, replaces the key set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateProvider {
    #[serde(default)]
    #[schema(value_type = Option<KindName>)]
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
    #[serde(default)]
    discover: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<NewModelsName>)]
    new_models: Option<crate::domain::NewModels>,
}

#[derive(Debug, Serialize, ToSchema)]
struct KeyView {
    id: String,
    weight: u32,
    qps: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ProviderView {
    id: String,
    name: String,
    #[schema(value_type = KindName)]
    kind: ProviderKind,
    base_url: String,
    models: Vec<String>,
    #[serde(flatten)]
    settings: ProviderSettings,
    enabled: bool,
    keys: Vec<KeyView>,
    /// `public` (every key) or `private` (the owner's and the shared users' keys).
    visibility: &'static str,
    /// The user who added it; `null` for the operator's providers.
    owner: Option<String>,
    /// `""`, `pending`, `approved` or `rejected`.
    review: String,
    review_note: String,
    /// Users it is shared with (shown to its owner and admins).
    shared_with: Vec<String>,
}

fn view(p: ProviderRow, keys: &[ProviderKeyRow], caller: &Principal) -> ProviderView {
    let manages = manages(caller, &p);
    ProviderView {
        keys: keys
            .iter()
            .filter(|k| k.provider_id == p.id)
            .filter(|_| manages)
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
        visibility: if p.access.public { "public" } else { "private" },
        owner: p.access.owner,
        review: p.access.review,
        review_note: p.access.review_note,
        shared_with: if manages {
            p.access.shared_with
        } else {
            Vec::new()
        },
    }
}

/// The provider called `name` as stored now, as the caller sees it.
async fn stored_view(
    store: &Store,
    name: &str,
    caller: &Principal,
) -> Result<ProviderView, ApiError> {
    let row = store.get_provider(name).await?;
    let keys = store.list_provider_keys().await?;
    Ok(view(row, &keys, caller))
}

/// Whether the caller may change the provider (admins: all; users: their own).
fn manages(caller: &Principal, p: &ProviderRow) -> bool {
    caller.is_admin()
        || (caller.user_id.is_some() && p.access.owner.as_deref() == Some(&caller.name))
}

/// Whether the caller may see it: public ones, their own, and those shared with them.
fn sees(caller: &Principal, p: &ProviderRow) -> bool {
    caller.is_admin() || p.access.serves(&caller.name)
}

fn seal_keys(
    master: &MasterKey,
    kind: ProviderKind,
    keys: &[KeyInput],
) -> Result<Vec<NewProviderKey>, ApiError> {
    keys.iter()
        .map(|k| NewProviderKey::seal(master, kind, &k.secret, k.weight, k.qps))
        .collect::<Result<_, _>>()
        .map_err(ApiError::BadRequest)
}

/// What a non-admin's provider may point at: public addresses only, no proxies.
async fn check_untrusted(guard: &Guard, def: &ProviderDef) -> Result<(), ApiError> {
    if !def.settings.proxies.is_empty() {
        return Err(ApiError::Forbidden("only admins set egress proxies".into()));
    }
    guard
        .vet_url(&def.base_url)
        .await
        .map_err(|e| ApiError::BadRequest(format!("base_url refused: {e}")))?;
    Ok(())
}

/// The checks a kind makes of the keys of a user's own provider (a Vertex key must ask Google
/// for its tokens).
fn check_untrusted_keys(kind: ProviderKind, keys: &[KeyInput]) -> Result<(), ApiError> {
    let spec = crate::providers::spec(kind);
    keys.iter()
        .try_for_each(|k| spec.check_untrusted_secret(&k.secret))
        .map_err(ApiError::BadRequest)
}

/// The provider called `name` if the caller may see it (else 404, as if absent).
pub(super) async fn visible(
    store: &Store,
    caller: &Principal,
    name: &str,
) -> Result<ProviderRow, ApiError> {
    let p = store.get_provider(name).await?;
    if !sees(caller, &p) {
        return Err(ApiError::NotFound("not found".into()));
    }
    Ok(p)
}

/// The provider called `name` if the caller may change it: 404 when they cannot see it, 403
/// when they see it but it is not theirs.
pub(super) async fn managed(
    store: &Store,
    caller: &Principal,
    name: &str,
) -> Result<ProviderRow, ApiError> {
    let p = visible(store, caller, name).await?;
    if !manages(caller, &p) {
        return Err(ApiError::Forbidden(
            "only its owner or an admin changes a provider".into(),
        ));
    }
    Ok(p)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only providers in this review state (`pending`: waiting for an admin).
    review: Option<String>,
}

/// Providers the caller may use: all for admins; public, own and shared for users.
#[utoipa::path(get, path = "/providers", tag = "providers", params(ListParams),
    responses((status = 200, body = [ProviderView]), Errors))]
async fn list(
    Caller(p): Caller,
    State(state): State<Providers>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Vec<ProviderView>>, ApiError> {
    let keys = state.store.list_provider_keys().await?;
    let providers = state.store.list_providers().await?;
    Ok(Json(
        providers
            .into_iter()
            .filter(|row| sees(&p, row))
            .filter(|row| q.review.as_ref().is_none_or(|r| *r == row.access.review))
            .map(|row| view(row, &keys, &p))
            .collect(),
    ))
}

/// One provider.
#[utoipa::path(get, path = "/providers/{name}", tag = "providers", params(("name" = String, Path)),
    responses((status = 200, body = ProviderView), Errors))]
async fn read(
    Caller(p): Caller,
    State(state): State<Providers>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProviderView>, ApiError> {
    let row = visible(&state.store, &p, &name).await?;
    let keys = state.store.list_provider_keys().await?;
    Ok(Json(view(row, &keys, &p)))
}

/// Adds a provider: public for admins, private to its owner for users (whose base URL must
/// reach a public address).
#[utoipa::path(post, path = "/providers", tag = "providers", request_body = CreateProvider,
    responses((status = 201, body = ProviderView), (status = 409, description = "Name taken", body = super::ErrorBody), Errors))]
async fn create(
    Caller(p): Caller,
    State(state): State<Providers>,
    ApiJson(input): ApiJson<CreateProvider>,
) -> Result<(StatusCode, Json<ProviderView>), ApiError> {
    domain::check_name("provider", &input.name).map_err(ApiError::BadRequest)?;
    let def = crate::providers::resolve(
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
            discover: input.discover,
            new_models: input.new_models,
        },
    )
    .map_err(ApiError::BadRequest)?;
    if !p.is_admin() {
        check_untrusted(&state.guard, &def).await?;
        check_untrusted_keys(def.kind, &input.keys)?;
    }
    let keys = seal_keys(&state.secrets.master, def.kind, &input.keys)?;
    let id = state.store.insert_provider(&input.name, &def).await?;
    if let (Some(owner), false) = (&p.user_id, p.is_admin()) {
        state.store.set_provider_owner(&input.name, owner).await?;
    }
    state.store.replace_provider_keys(&id, &keys).await?;
    state.publisher.publish().await?;
    crate::discovery_schedule::discover_soon(&state.discoverer, &input.name);
    Ok((
        StatusCode::CREATED,
        Json(stored_view(&state.store, &input.name, &p).await?),
    ))
}

/// Changes a provider (its owner or an admin).
#[utoipa::path(put, path = "/providers/{name}", tag = "providers", params(("name" = String, Path)),
    request_body = UpdateProvider, responses((status = 200, body = ProviderView), Errors))]
async fn update(
    Caller(p): Caller,
    State(state): State<Providers>,
    ApiPath(name): ApiPath<String>,
    ApiJson(input): ApiJson<UpdateProvider>,
) -> Result<Json<ProviderView>, ApiError> {
    let current = managed(&state.store, &p, &name).await?;
    let def = crate::providers::resolve(
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
            discover: input.discover.or(current.settings.discover),
            new_models: input.new_models.or(current.settings.new_models),
        },
    )
    .map_err(ApiError::BadRequest)?;
    if current.access.untrusted() {
        check_untrusted(&state.guard, &def).await?;
        match &input.keys {
            Some(keys) => check_untrusted_keys(def.kind, keys)?,
            // Keys given for another kind are not checked as service account keys.
            None if def.kind != current.kind => {
                return Err(ApiError::BadRequest(
                    "changing a provider's kind needs its keys (`keys`)".into(),
                ))
            }
            None => {}
        }
    }
    let keys = input
        .keys
        .map(|k| seal_keys(&state.secrets.master, def.kind, &k))
        .transpose()?;
    state
        .store
        .update_provider(&name, &def, input.enabled.unwrap_or(current.enabled))
        .await?;
    if let Some(keys) = keys {
        state
            .store
            .replace_provider_keys(&current.id, &keys)
            .await?;
    }
    // What an admin approved is not what its owner changes it to: back to review.
    if !p.is_admin() && current.access.public {
        state
            .store
            .set_provider_review(&name, "pending", "changed by its owner", false)
            .await?;
    }
    state.publisher.publish().await?;
    crate::discovery_schedule::discover_soon(&state.discoverer, &name);
    Ok(Json(stored_view(&state.store, &name, &p).await?))
}

/// Deletes a provider (its owner or an admin).
#[utoipa::path(delete, path = "/providers/{name}", tag = "providers", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), Errors))]
async fn remove(
    Caller(p): Caller,
    State(state): State<Providers>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    managed(&state.store, &p, &name).await?;
    state.store.delete_provider(&name).await?;
    state.publisher.publish().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Shares a private provider with a user: their keys may use it as `provider/model`.
#[utoipa::path(put, path = "/providers/{name}/shares/{user}", tag = "providers",
    params(("name" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = ProviderView), Errors))]
async fn share(
    Caller(p): Caller,
    State(state): State<Providers>,
    ApiPath((name, user)): ApiPath<(String, String)>,
) -> Result<Json<ProviderView>, ApiError> {
    let row = managed(&state.store, &p, &name).await?;
    let target = match state.store.get_user(&user).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => {
            return Err(ApiError::BadRequest(format!("no user called {user:?}")))
        }
        Err(e) => return Err(e.into()),
    };
    if row.access.owner.as_deref() == Some(user.as_str()) {
        return Err(ApiError::BadRequest("the owner has it already".into()));
    }
    state.store.share_provider(&row.id, &target.id).await?;
    state.publisher.publish().await?;
    Ok(Json(stored_view(&state.store, &name, &p).await?))
}

/// Stops sharing a provider with a user.
#[utoipa::path(delete, path = "/providers/{name}/shares/{user}", tag = "providers",
    params(("name" = String, Path), ("user" = String, Path)),
    responses((status = 204, description = "No longer shared"), Errors))]
async fn unshare(
    Caller(p): Caller,
    State(state): State<Providers>,
    ApiPath((name, user)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let row = managed(&state.store, &p, &name).await?;
    let target = state.store.get_user(&user).await?;
    state.store.unshare_provider(&row.id, &target.id).await?;
    state.publisher.publish().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Submits a private provider to the public pool; an admin reviews it.
#[utoipa::path(post, path = "/providers/{name}/submit", tag = "providers", params(("name" = String, Path)),
    responses((status = 200, body = ProviderView), Errors))]
async fn submit(
    Caller(p): Caller,
    State(state): State<Providers>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProviderView>, ApiError> {
    let row = managed(&state.store, &p, &name).await?;
    if row.access.owner.is_none() || row.access.public {
        return Err(ApiError::Conflict("the provider is public already".into()));
    }
    state
        .store
        .set_provider_review(&name, "pending", "", false)
        .await?;
    Ok(Json(stored_view(&state.store, &name, &p).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReviewInput {
    /// `approve` (the provider becomes public) or `reject` (it stays private).
    decision: String,
    #[serde(default)]
    note: String,
}

/// Approves or rejects a submitted provider (admins).
#[utoipa::path(post, path = "/providers/{name}/review", tag = "providers", params(("name" = String, Path)),
    request_body = ReviewInput, responses((status = 200, body = ProviderView), Errors))]
async fn review(
    AdminOnly(p): AdminOnly,
    State(state): State<Providers>,
    ApiPath(name): ApiPath<String>,
    ApiJson(input): ApiJson<ReviewInput>,
) -> Result<Json<ProviderView>, ApiError> {
    let row = state.store.get_provider(&name).await?;
    if row.access.review != "pending" {
        return Err(ApiError::Conflict(
            "the provider is not waiting for review".into(),
        ));
    }
    if input.note.len() > 500 {
        return Err(ApiError::BadRequest("`note` is at most 500 bytes".into()));
    }
    let (review, public) = match input.decision.as_str() {
        "approve" => ("approved", true),
        "reject" => ("rejected", false),
        _ => {
            return Err(ApiError::BadRequest(
                "`decision` is `approve` or `reject`".into(),
            ))
        }
    };
    state
        .store
        .set_provider_review(&name, review, &input.note, public)
        .await?;
    state.publisher.publish().await?;
    Ok(Json(stored_view(&state.store, &name, &p).await?))
}
