//! When provider keys are probed: every key of every enabled provider each
//! `probes.interval_secs`, all at once, each bounded by `probes.timeout_secs`. What the probes
//! find reaches the figures (and Envoy) through [`crate::health::Reports`].

use std::sync::Arc;
use std::time::Duration;

use crate::config::ProbeSpec;
use crate::probe::Probes;
use crate::secrets::Secrets;
use crate::ssrf::Guard;
use crate::store::Store;

/// Runs a round of probes every `spec.interval_secs` (0: never).
pub async fn run(
    spec: ProbeSpec,
    store: Store,
    secrets: Arc<Secrets>,
    guard: Guard,
    probes: Arc<Probes>,
) {
    if spec.interval_secs == 0 {
        return;
    }
    let timeout = Duration::from_secs(spec.timeout_secs.max(1));
    // Users' providers are probed through the SSRF guard's resolver, without redirects (a
    // redirect to an address literal would pass by the resolver).
    let (http, guarded) = match (
        reqwest::Client::builder().timeout(timeout).build(),
        guard.client_builder().timeout(timeout).build(),
    ) {
        (Ok(h), Ok(g)) => (h, g),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("no HTTP client for probes: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(spec.interval_secs));
    loop {
        tick.tick().await;
        let (providers, keys) = match (
            store.list_providers().await,
            store.list_provider_keys().await,
        ) {
            (Ok(p), Ok(k)) => (p, k),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("probes skipped: {e}");
                continue;
            }
        };
        probes.retain(&keys.iter().map(|k| k.id.clone()).collect());
        let mut round = Vec::new();
        for key in &keys {
            let Some(provider) = providers
                .iter()
                .find(|p| p.id == key.provider_id && p.enabled)
            else {
                continue;
            };
            let Ok(secret) = secrets.master.open(&key.secret_sealed) else {
                continue;
            };
            let client = if provider.access.untrusted() {
                if guard.vet_url(&provider.base_url).await.is_err() {
                    continue;
                }
                &guarded
            } else {
                &http
            };
            if let Some(req) = crate::probe::request(client, provider, &secret) {
                let (probes, id, name) = (probes.clone(), key.id.clone(), provider.name.clone());
                round.push(async move {
                    let (outcome, latency) = crate::probe::probe(req).await;
                    if let crate::probe::Outcome::Refused(status) = outcome {
                        tracing::warn!(provider = %name, key = %id, status, "provider key refused by its provider: left out until a probe passes");
                    }
                    probes.record(&id, &name, &outcome, latency);
                });
            }
        }
        futures::future::join_all(round).await;
    }
}
