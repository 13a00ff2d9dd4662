//! Applies the declarative config file to the store, one step per section (providers, models,
//! aliases, prices, gateway keys, users). Idempotent: applying it twice changes nothing.

mod catalog;
mod keys;
mod providers;
mod users;

pub use catalog::check_alias;
pub use keys::key_prefix;

use crate::config::Config;
use crate::crypto::{DigestKey, MasterKey};
use crate::store::{Store, StoreError};

/// Why the config was not applied (the sections before the failing entry were).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An entry is not acceptable; `at` names it (`providers[0].keys[1]`).
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No password hashing slot was free.
    #[error(transparent)]
    Busy(#[from] crate::auth::Busy),
}

/// An [`ApplyError::Invalid`] at `at`.
fn invalid(at: &str, message: impl std::fmt::Display) -> ApplyError {
    ApplyError::Invalid {
        at: at.to_owned(),
        message: message.to_string(),
    }
}

/// Applies the declarative config to the store. Idempotent: applying it twice changes nothing.
pub async fn apply_config(
    store: &Store,
    master: &MasterKey,
    digest_key: &DigestKey,
    config: &Config,
) -> Result<(), ApplyError> {
    providers::apply(store, master, &config.providers).await?;
    catalog::apply_models(store, &config.models).await?;
    catalog::apply_aliases(store, config).await?;
    catalog::apply_prices(store, &config.prices).await?;
    keys::apply(store, digest_key, &config.api_keys).await?;
    users::apply(store, &config.users).await?;
    Ok(())
}

/// A spend cap of the config file (USD) in micro-USD; `at` and `name` say where it is.
fn budget_micros(usd: Option<f64>, at: &str, name: &str) -> Result<Option<i64>, ApplyError> {
    usd.map(|v| {
        crate::domain::usd_to_micros(v)
            .filter(|m| *m > 0)
            .ok_or_else(|| invalid(at, format!("{name} must be a positive amount of USD")))
    })
    .transpose()
}

#[cfg(test)]
mod tests;
