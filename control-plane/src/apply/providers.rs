//! The `providers` section: each provider's definition, its keys (sealed) and its model
//! settings.

use super::{invalid, ApplyError};
use crate::config::ProviderSpec;
use crate::crypto::MasterKey;
use crate::domain;
use crate::store::{NewProviderKey, ProviderModelPatch, Store};

/// Upserts every provider with its keys and model settings. A provider whose keys all expanded
/// to nothing (unset variables) is skipped, with a warning.
pub(super) async fn apply(
    store: &Store,
    master: &MasterKey,
    providers: &[ProviderSpec],
) -> Result<(), ApplyError> {
    for (i, p) in providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        domain::check_name("provider", &p.name).map_err(|e| invalid(&at, e))?;
        let def = crate::providers::resolve(
            p.kind,
            p.base_url.as_deref(),
            p.models.clone(),
            domain::ProviderSettings {
                preset: p.preset.clone(),
                api_version: p.api_version.clone(),
                region: p.region.clone(),
                project: p.project.clone(),
                location: p.location.clone(),
                proxies: p.proxies.clone(),
                discover: p.discover,
                new_models: p.new_models,
            },
        )
        .map_err(|e| invalid(&at, e))?;
        // Keys that expanded to nothing (unset variables) are left out; the rest are sealed.
        let keys = p
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.secret.trim().is_empty())
            .map(|(j, k)| {
                NewProviderKey::seal(master, p.kind, &k.secret, k.weight, k.qps)
                    .map_err(|e| invalid(&format!("{at}.keys[{j}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !p.keys.is_empty() && keys.is_empty() {
            tracing::warn!(provider = %p.name, "provider skipped: its key is missing (unset environment variable?)");
            continue;
        }
        let id = store.upsert_provider(&p.name, &def).await?;
        store.replace_provider_keys(&id, &keys).await?;
        let mut settings = Vec::with_capacity(p.model_settings.len());
        for (j, m) in p.model_settings.iter().enumerate() {
            let at = format!("{at}.model_settings[{j}]");
            domain::check_model_name(&m.model).map_err(|e| invalid(&at, e))?;
            let patch = ProviderModelPatch::checked(
                m.enabled,
                m.tags.clone().map(Some),
                m.context_window.map(Some),
            )
            .map_err(|e| invalid(&at, e))?;
            settings.push((m.model.clone(), patch));
        }
        store.configure_models(&p.name, &settings).await?;
    }
    Ok(())
}
