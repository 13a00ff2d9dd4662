//! When model discovery runs: every provider at start and each `discovery.interval_secs`, and
//! one provider soon after it was added or changed.

use crate::discovery::{self, Discoverer};

/// Lists every provider's models at start and every `discovery.interval_secs` (0: only on
/// demand, and when a provider is added or changed).
pub async fn run(discoverer: Discoverer) {
    let interval = discoverer.runner.spec.interval_secs;
    if interval == 0 {
        return;
    }
    loop {
        match discoverer.store.list_providers().await {
            Ok(providers) => {
                let due = providers
                    .iter()
                    .filter(|p| p.enabled && crate::providers::discovers(p.kind, &p.settings))
                    .map(|p| discovery::discover(&discoverer, p));
                futures::future::join_all(due).await;
            }
            Err(e) => tracing::warn!("model discovery skipped: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
    }
}

/// Lists a provider's models now, in the background (after it was added or changed).
pub fn discover_soon(discoverer: &Discoverer, provider: &str) {
    let (discoverer, name) = (discoverer.clone(), provider.to_owned());
    tokio::spawn(async move {
        match discoverer.store.get_provider(&name).await {
            Ok(p) if p.enabled && crate::providers::discovers(p.kind, &p.settings) => {
                let _ = discovery::discover(&discoverer, &p).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(provider = %name, "model discovery skipped: {e}"),
        }
    });
}
