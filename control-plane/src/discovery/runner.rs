//! Discovery for the running control plane: lists a provider's models with one of its keys,
//! records what changed in the catalog, publishes when clients may see a difference, and keeps
//! each provider's latest outcome.

use super::{Failure, Status};
use crate::domain;
use crate::store::{DiscoveryChange, ProviderRow};

/// Discovery for the running control plane: its schedule and each provider's latest outcome.
#[derive(Default)]
pub struct Runner {
    pub spec: crate::config::DiscoverySpec,
    statuses: std::sync::Mutex<std::collections::BTreeMap<String, Status>>,
}

impl Runner {
    pub fn new(spec: crate::config::DiscoverySpec) -> Runner {
        Runner {
            spec,
            statuses: Default::default(),
        }
    }

    pub fn status(&self, provider: &str) -> Option<Status> {
        self.statuses.lock().ok()?.get(provider).cloned()
    }

    fn set_status(&self, provider: &str, status: Status) {
        if let Ok(mut s) = self.statuses.lock() {
            s.insert(provider.to_owned(), status);
        }
    }
}

/// What a discovery uses: the store, the master key (to open a provider key), the SSRF guard
/// (users' providers), the runner (status, timeout) and the publisher (what it changed).
#[derive(Clone)]
pub struct Discoverer {
    pub store: crate::store::Store,
    pub secrets: std::sync::Arc<crate::secrets::Secrets>,
    pub guard: crate::ssrf::Guard,
    pub runner: std::sync::Arc<Runner>,
    pub publisher: crate::reconcile::Publisher,
}

/// Lists the provider's models with one of its keys and records what changed; publishes when
/// clients may see a difference.
pub async fn discover(
    app: &Discoverer,
    provider: &ProviderRow,
) -> Result<DiscoveryChange, Failure> {
    let outcome = discover_inner(app, provider).await;
    app.runner.set_status(
        &provider.name,
        Status {
            at: crate::store::now(),
            ok: outcome.is_ok(),
            error: outcome.as_ref().err().map(|f| f.message().to_owned()),
            listed: outcome.as_ref().map_or(0, |c| c.listed),
        },
    );
    match &outcome {
        Ok(change) if change.changed() => {
            tracing::info!(provider = %provider.name, added = change.added.len(), returned = change.returned.len(), vanished = change.vanished.len(), updated = change.updated.len(), "models discovered");
            crate::metrics::add(&crate::metrics::METRICS.discoveries_changed, 1);
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(provider = %provider.name, "model discovery failed: {}", e.message());
            crate::metrics::add(&crate::metrics::METRICS.discoveries_failed, 1);
        }
    }
    outcome
}

async fn discover_inner(
    app: &Discoverer,
    provider: &ProviderRow,
) -> Result<DiscoveryChange, Failure> {
    let not_possible = |m: &str| Failure::NotPossible(m.to_owned());
    let internal = |e: &dyn std::fmt::Display| Failure::Internal(e.to_string());
    if !crate::providers::discovers(provider.kind, &provider.settings) {
        return Err(not_possible(
            "discovery is off for this provider (or its kind has no model list)",
        ));
    }
    let keys = app
        .store
        .list_provider_keys()
        .await
        .map_err(|e| internal(&e))?;
    let refused = app.publisher.figures().probes.refused_keys;
    let mut candidates: Vec<_> = keys
        .iter()
        .filter(|k| k.provider_id == provider.id)
        .collect();
    // A key the provider refused at its latest probe is tried last.
    candidates.sort_by_key(|k| refused.contains(&k.id));
    let key = candidates
        .first()
        .ok_or_else(|| not_possible("the provider has no key to list its models with"))?;
    let secret = app
        .secrets
        .master
        .open(&key.secret_sealed)
        .map_err(|_| not_possible("the provider key could not be opened"))?;
    // Redirects are not followed (one to an address literal would pass by the resolver);
    // users' providers are reached through the SSRF guard's resolver only.
    let timeout = std::time::Duration::from_secs(app.runner.spec.timeout_secs.max(1));
    let client = if provider.access.untrusted() {
        app.guard
            .vet_url(&provider.base_url)
            .await
            .map_err(|e| Failure::NotPossible(format!("base_url refused: {e}")))?;
        app.guard.client_builder()
    } else {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
    };
    let client = client.timeout(timeout).build().map_err(|e| internal(&e))?;
    let found = super::list(&client, provider, &secret)
        .await
        .map_err(Failure::Provider)?;
    let enable = provider.settings.new_models.unwrap_or_default() == domain::NewModels::Enabled;
    let change = app
        .store
        .apply_discovery(&provider.id, &found, enable)
        .await
        .map_err(|e| internal(&e))?;
    if change.changed() {
        app.publisher.publish().await.map_err(|e| internal(&e))?;
    }
    Ok(change)
}
