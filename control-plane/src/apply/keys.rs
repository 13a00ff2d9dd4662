//! The `api_keys` section: gateway keys (known by keyed digests) and their owners' starting
//! balances.

use super::{budget_micros, invalid, ApplyError};
use crate::config::ApiKeySpec;
use crate::crypto::DigestKey;
use crate::domain;
use crate::store::{NewApiKey, Store};

/// Puts every gateway key, and opens its owner's account with the key's credits once.
pub(super) async fn apply(
    store: &Store,
    digest_key: &DigestKey,
    api_keys: &[ApiKeySpec],
) -> Result<(), ApplyError> {
    for (i, k) in api_keys.iter().enumerate() {
        let at = format!("api_keys[{i}]");
        domain::check_name("API key", &k.name).map_err(|e| invalid(&at, e))?;
        if k.key.trim().len() < 8 {
            return Err(invalid(&at, "key must be at least 8 characters"));
        }
        let user = k.user.clone().unwrap_or_else(|| k.name.clone());
        let owner = user.clone();
        store
            .put_api_key(
                &NewApiKey {
                    name: k.name.clone(),
                    user,
                    prefix: key_prefix(k.key.trim()),
                    digest: digest_key.digest(k.key.trim()),
                    models: k.models.clone(),
                    rpm: k.rpm,
                    tpm: k.tpm,
                    credits: k.credits,
                    expires_at: k.expires_at,
                    daily_budget_micros: budget_micros(k.daily_budget, &at, "daily_budget")?,
                    monthly_budget_micros: budget_micros(k.monthly_budget, &at, "monthly_budget")?,
                },
                true,
            )
            .await?;
        // The owner's starting balance, once: later runs leave the account as it is.
        if let Some(credits) = k.credits {
            let amount = domain::usd_to_micros(credits)
                .filter(|m| *m >= 0)
                .ok_or_else(|| invalid(&at, "credits must be a non-negative amount of USD"))?;
            store.open_account_with(&owner, amount).await?;
        }
    }
    Ok(())
}

/// The part of a key shown to humans to recognise it.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(8).collect()
}
