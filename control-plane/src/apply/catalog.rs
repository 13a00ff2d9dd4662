//! The `models`, `aliases` and `prices` sections, and the rule every alias follows (the admin
//! API checks aliases with it too).

use switchyard_contract::pricing::Price;

use super::{invalid, ApplyError};
use crate::config::{Config, ModelSpec, PriceSpec};
use crate::domain;
use crate::store::{AliasRow, ModelRow, PriceRow, Store};

/// Upserts every logical model.
pub(super) async fn apply_models(store: &Store, models: &[ModelSpec]) -> Result<(), ApplyError> {
    for (i, m) in models.iter().enumerate() {
        let at = format!("models[{i}]");
        domain::check_model_name(&m.name).map_err(|e| invalid(&at, e))?;
        if m.targets.is_empty() {
            return Err(invalid(&at, "a model needs at least one target"));
        }
        store
            .upsert_model(&ModelRow {
                name: m.name.clone(),
                strategy: m.strategy,
                targets: m.targets.clone(),
            })
            .await?;
    }
    Ok(())
}

/// Puts every alias; a glob alias's provider must be in the config or the store.
pub(super) async fn apply_aliases(store: &Store, config: &Config) -> Result<(), ApplyError> {
    for (i, a) in config.aliases.iter().enumerate() {
        let at = format!("aliases[{i}]");
        let alias = AliasRow {
            name: a.name.clone(),
            target: a.target.clone(),
        };
        check_alias(&alias, config.models.iter().map(|m| m.name.as_str()))
            .map_err(|e| invalid(&at, e))?;
        if alias.is_glob() && !config.providers.iter().any(|p| p.name == alias.target) {
            store.get_provider(&alias.target).await.map_err(|_| {
                invalid(
                    &at,
                    format!("a glob alias names a provider; {:?} is none", alias.target),
                )
            })?;
        }
        store.put_alias(&alias).await?;
    }
    Ok(())
}

/// Puts every price (USD per million tokens in the file, micro-USD in the store).
pub(super) async fn apply_prices(store: &Store, prices: &[PriceSpec]) -> Result<(), ApplyError> {
    for (i, price) in prices.iter().enumerate() {
        let micros = |usd: f64| -> Result<u64, ApplyError> {
            domain::usd_to_micros(usd)
                .filter(|m| *m < 1_000_000_000_000)
                .and_then(|m| u64::try_from(m).ok())
                .ok_or_else(|| {
                    invalid(
                        &format!("prices[{i}]"),
                        "a price must be between 0 and 1,000,000 USD",
                    )
                })
        };
        store
            .put_price(&PriceRow {
                provider: price.provider.clone(),
                model: price.model.clone(),
                price: Price {
                    input: micros(price.input)?,
                    output: micros(price.output)?,
                    cache_read: price.cache_read.map(micros).transpose()?,
                    cache_write: price.cache_write.map(micros).transpose()?,
                    reasoning: price.reasoning.map(micros).transpose()?,
                },
            })
            .await?;
    }
    Ok(())
}

/// Checks an alias by itself: a name clients can send (a glob: `*` and no `/`), a target that
/// is a model name (a glob's: a provider name), and not a logical model's name.
pub fn check_alias<'a>(
    alias: &AliasRow,
    mut logical: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    domain::check_model_name(&alias.name)?;
    if alias.is_glob() {
        if alias.name.contains('/') {
            return Err("a glob alias matches a provider's own model names, without '/'".into());
        }
        if alias.name.chars().all(|c| c == '*') {
            return Err("a glob alias needs some fixed text, such as claude-*".into());
        }
        domain::check_name("provider", &alias.target)?;
    } else {
        domain::check_model_name(&alias.target)?;
        if alias.target == alias.name {
            return Err("an alias cannot name itself".into());
        }
    }
    if logical.any(|m| m == alias.name) {
        return Err(format!(
            "{:?} is a logical model's name already",
            alias.name
        ));
    }
    Ok(())
}
