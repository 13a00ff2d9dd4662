//! The store -> an [`Input`]: the only I/O of the snapshot (the store's rows, provider
//! addresses vetted, provider keys opened in memory, the clock read once).

use std::sync::Arc;

use super::{compute, Catalog, GatewayState, Input, Pins};
use crate::crypto::MasterKey;

use crate::health::Figures;
use crate::store::{ProviderKeyRow, ProviderRow, Store, StoreError};

/// Reads the store and computes the state (provider keys decrypted here, in memory only),
/// holding the measured figures of `steady` (the state Envoy has) where they moved little.
pub async fn load(
    store: &Store,
    master: &MasterKey,
    max_body_bytes: usize,
    tokens: &crate::gcp::Tokens,
    figures: &Figures,
    guard: &crate::ssrf::Guard,
    steady: Option<Arc<GatewayState>>,
) -> Result<GatewayState, StoreError> {
    let mut input = load_input(store, master, max_body_bytes, tokens, figures, guard).await?;
    input.steady = steady;
    Ok(compute(&input))
}

/// Everything [`compute`] needs, from the store and the arguments, with `now` read here.
pub async fn load_input(
    store: &Store,
    master: &MasterKey,
    max_body_bytes: usize,
    tokens: &crate::gcp::Tokens,
    figures: &Figures,
    guard: &crate::ssrf::Guard,
) -> Result<Input, StoreError> {
    let mut providers = store.list_providers().await?;
    let (pins, refused) = vet(&providers, guard).await;
    providers.retain(|p| !refused.contains(&p.id));
    let keys = open_keys(
        store.list_provider_keys().await?,
        &providers,
        master,
        tokens,
    );
    Ok(Input {
        keys,
        models: store.list_models().await?,
        catalog: Catalog {
            models: store.list_provider_models().await?,
            aliases: store.list_aliases().await?,
        },
        api_keys: store.list_api_keys().await?,
        limits: store.limits_table().await?,
        figures: figures.clone(),
        pins,
        refused: refused.len(),
        max_body_bytes,
        now: crate::store::now(),
        providers,
        steady: None,
    })
}

/// Connect-time check: a non-admin's provider reaches the addresses vetted now, or nothing.
/// Returns the vetted addresses by provider name, and the ids of providers left out.
async fn vet(providers: &[ProviderRow], guard: &crate::ssrf::Guard) -> (Pins, Vec<String>) {
    let mut pins = Pins::new();
    let mut refused = Vec::new();
    for p in providers
        .iter()
        .filter(|p| p.enabled && p.access.untrusted())
    {
        match guard.vet_url(&p.base_url).await {
            Ok(addrs) => {
                pins.insert(p.name.clone(), addrs);
            }
            Err(e) => {
                tracing::warn!(provider = %p.name, "provider left out: {e}");
                refused.push(p.id.clone());
            }
        }
    }
    (pins, refused)
}

/// Each key with its secret: opened with the master key, or for Vertex the access token (the
/// data plane gets the token, never the service account key). Keys that cannot be opened, or
/// wait for their first token, are left out.
fn open_keys(
    keys: Vec<ProviderKeyRow>,
    providers: &[ProviderRow],
    master: &MasterKey,
    tokens: &crate::gcp::Tokens,
) -> Vec<(ProviderKeyRow, String)> {
    let vertex = vertex_providers(providers, |_| true);
    let mut secrets = Vec::with_capacity(keys.len());
    for key in keys {
        if vertex.contains(&key.provider_id.as_str()) {
            match tokens.get(&key.id) {
                Some(token) => secrets.push((key, token)),
                None => tracing::info!(key = %key.id, "Vertex key waits for its first token"),
            }
            continue;
        }
        match master.open(&key.secret_sealed) {
            Ok(secret) => secrets.push((key, secret)),
            Err(e) => tracing::error!(key = %key.id, "provider key skipped: {e}"),
        }
    }
    secrets
}

/// The ids of the Vertex providers among `providers` that `keep` keeps.
fn vertex_providers(providers: &[ProviderRow], keep: impl Fn(&ProviderRow) -> bool) -> Vec<&str> {
    providers
        .iter()
        .filter(|p| crate::providers::spec(p.kind).mints_access_tokens() && keep(p))
        .map(|p| p.id.as_str())
        .collect()
}

/// The service account keys of enabled Vertex providers: (key id, key file).
pub async fn vertex_keys(
    store: &Store,
    master: &MasterKey,
) -> Result<Vec<(String, String)>, StoreError> {
    let providers = store.list_providers().await?;
    let vertex = vertex_providers(&providers, |p| p.enabled);
    let mut out = Vec::new();
    for key in store.list_provider_keys().await? {
        if vertex.contains(&key.provider_id.as_str()) {
            match master.open(&key.secret_sealed) {
                Ok(secret) => out.push((key.id, secret)),
                Err(e) => tracing::error!(key = %key.id, "Vertex key skipped: {e}"),
            }
        }
    }
    Ok(out)
}
