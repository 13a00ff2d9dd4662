//! The model catalog: what is known and decided about each provider's models, looked up by
//! (provider, model) and by provider, and the cards `/v1/models` shows from it.

use std::collections::HashMap;

use switchyard_contract::config::{ModelCard, Tag, Target};

use crate::store::{AliasRow, ProviderModelRow};

/// The model catalog: what is known and decided about each provider's models, and aliases.
/// A static model without a row is served with nothing known about it.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub models: Vec<ProviderModelRow>,
    pub aliases: Vec<AliasRow>,
}

/// The catalog's rows by (provider name, model) and by provider id.
pub(super) struct Rows<'a> {
    by_model: HashMap<(&'a str, &'a str), &'a ProviderModelRow>,
    by_provider: HashMap<&'a str, Vec<&'a ProviderModelRow>>,
}

impl<'a> Rows<'a> {
    pub fn new(catalog: &'a Catalog) -> Rows<'a> {
        let mut by_provider: HashMap<&str, Vec<&ProviderModelRow>> = HashMap::new();
        for r in &catalog.models {
            by_provider
                .entry(r.provider_id.as_str())
                .or_default()
                .push(r);
        }
        Rows {
            by_model: catalog
                .models
                .iter()
                .map(|r| ((r.provider.as_str(), r.model.as_str()), r))
                .collect(),
            by_provider,
        }
    }

    /// The row of a provider's model, by the provider's name.
    pub fn row(&self, provider: &str, model: &str) -> Option<&'a ProviderModelRow> {
        self.by_model.get(&(provider, model)).copied()
    }

    /// Every row of a provider, by the provider's id.
    pub fn of_provider(&self, provider_id: &str) -> &[&'a ProviderModelRow] {
        self.by_provider
            .get(provider_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// What `/v1/models` shows of a provider's model.
pub(super) fn direct_card(provider: &str, row: Option<&ProviderModelRow>) -> ModelCard {
    let Some(row) = row else {
        return ModelCard {
            owned_by: provider.to_owned(),
            ..Default::default()
        };
    };
    ModelCard {
        owned_by: provider.to_owned(),
        created: u64::try_from(row.created).unwrap_or(0),
        display_name: row.display_name.clone(),
        context_window: row.context_window().and_then(|w| u64::try_from(w).ok()),
        tags: row.tags().to_vec(),
    }
}

/// A logical model can do what one of its targets can (requests go to a capable one), and
/// takes what its smallest target takes.
pub(super) fn logical_card(targets: &[Target], rows: &Rows<'_>) -> ModelCard {
    let rows: Vec<&ProviderModelRow> = targets
        .iter()
        .filter_map(|t| rows.row(&t.provider, &t.model))
        .collect();
    let mut tags: Vec<Tag> = rows.iter().flat_map(|r| r.tags().iter().copied()).collect();
    tags.sort();
    tags.dedup();
    ModelCard {
        owned_by: "switchyard".into(),
        created: 0,
        display_name: None,
        context_window: rows
            .iter()
            .filter_map(|r| r.context_window())
            .min()
            .and_then(|w| u64::try_from(w).ok()),
        tags,
    }
}
