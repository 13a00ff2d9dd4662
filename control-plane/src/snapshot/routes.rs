//! Models -> routes: every name a client may send, with its targets and card. Logical models
//! first, then `provider/model`, then plain upstream names served by exactly one provider (and
//! not shadowed by a logical name).

use std::collections::{BTreeMap, HashMap, HashSet};

use switchyard_contract::config::{
    ModelCard, Provider as FilterProvider, Strategy, Target, TargetStats,
};

use super::catalog::{direct_card, logical_card, Rows};
use super::Input;
use crate::store::{ModelRow, ProviderModelRow, ProviderRow};

/// Each route's strategy and targets, by name.
pub(super) type Table = BTreeMap<String, (Strategy, Vec<Target>)>;

/// The routes and what goes with them.
#[derive(Default)]
pub(super) struct Routes<'a> {
    pub table: Table,
    /// `/v1/models` cards, by route name.
    pub cards: HashMap<String, ModelCard>,
    /// The users whose keys reach a private provider's `provider/model` route.
    pub audiences: HashMap<String, Vec<String>>,
    /// By provider name, the upstream models it serves (for glob aliases).
    pub served: HashMap<&'a str, Vec<&'a str>>,
}

/// The routes of `input`'s models over the providers the filter knows (`usable`).
pub(super) fn routes<'a>(input: &'a Input, usable: &[FilterProvider]) -> Routes<'a> {
    let known: HashSet<&str> = usable.iter().map(|p| p.name.as_str()).collect();
    let rows = Rows::new(&input.catalog);
    let mut out = Routes::default();
    for m in &input.models {
        logical(m, &known, &rows, &input.figures, &mut out);
    }
    provider_models(&input.providers, &known, &rows, &mut out);
    out
}

/// A logical model's route over its targets at known providers, ranked by the figures; none
/// when no target is left.
fn logical(
    m: &ModelRow,
    known: &HashSet<&str>,
    rows: &Rows<'_>,
    figures: &crate::health::Figures,
    out: &mut Routes<'_>,
) {
    let mut targets: Vec<Target> = m
        .targets
        .iter()
        .filter(|t| {
            let ok = known.contains(t.provider.as_str());
            if !ok {
                tracing::warn!(model = %m.name, provider = %t.provider, "target skipped: provider unknown or disabled");
            }
            ok
        })
        .map(|t| Target {
            provider: t.provider.clone(),
            model: t.model.clone(),
            weight: t.weight,
            priority: t.priority,
            stats: TargetStats::default(),
            capabilities: t.capabilities.clone().or_else(|| {
                rows.row(&t.provider, &t.model)
                    .and_then(ProviderModelRow::capabilities)
            }),
        })
        .collect();
    figures.apply(&mut targets);
    if targets.is_empty() {
        tracing::warn!(model = %m.name, "model has no usable target; not served");
    } else {
        out.cards
            .insert(m.name.clone(), logical_card(&targets, rows));
        out.table.insert(m.name.clone(), (m.strategy, targets));
    }
}

/// Each known provider's served models as `provider/model`, and plain names.
///
/// A private provider's models are reached as `provider/model` by the keys of its owner and of
/// the users it is shared with; they take no plain name (the name would be ambiguous). A plain
/// name goes to the one provider listing it statically; when none does, to the one provider
/// discovery found it at (so that discovery never takes a name from a configured provider).
fn provider_models<'a>(
    providers: &'a [ProviderRow],
    known: &HashSet<&str>,
    rows: &Rows<'a>,
    out: &mut Routes<'a>,
) {
    let mut plain: BTreeMap<&str, (Vec<&ProviderRow>, Vec<&ProviderRow>)> = BTreeMap::new();
    for p in providers.iter().filter(|p| known.contains(p.name.as_str())) {
        for (upstream_model, is_static) in served_by(p, rows) {
            out.served.entry(&p.name).or_default().push(upstream_model);
            let name = format!("{}/{}", p.name, upstream_model);
            if p.access.public {
                let owners = plain.entry(upstream_model).or_default();
                if is_static {
                    owners.0.push(p);
                } else {
                    owners.1.push(p);
                }
            }
            if out.table.contains_key(&name) {
                continue;
            }
            if !p.access.public {
                let mut users: Vec<String> = p.access.owner.iter().cloned().collect();
                users.extend(p.access.shared_with.iter().cloned());
                if users.is_empty() {
                    continue;
                }
                out.audiences.insert(name.clone(), users);
            }
            let row = rows.row(&p.name, upstream_model);
            insert_direct(out, name, &p.name, upstream_model, row);
        }
    }
    for (upstream_model, (by_static, by_discovery)) in plain {
        let owners = if by_static.is_empty() {
            by_discovery
        } else {
            by_static
        };
        if let ([only], false) = (owners.as_slice(), out.table.contains_key(upstream_model)) {
            let row = rows.row(&only.name, upstream_model);
            insert_direct(
                out,
                upstream_model.to_owned(),
                &only.name,
                upstream_model,
                row,
            );
        }
    }
}

/// The upstream models a provider serves, each with whether its static list names it: the
/// catalog's served rows (only static ones with discovery turned off), then static models
/// the catalog has no row for.
fn served_by<'a>(p: &'a ProviderRow, rows: &Rows<'a>) -> Vec<(&'a str, bool)> {
    let discovers = crate::providers::discovers(p.kind, &p.settings);
    let listed = rows
        .of_provider(&p.id)
        .iter()
        .filter(|r| r.served() && (r.static_listed || discovers))
        .map(|r| (r.model.as_str(), r.static_listed));
    let unrecorded = p
        .models
        .iter()
        .filter(|m| rows.row(&p.name, m).is_none())
        .map(|m| (m.as_str(), true));
    listed.chain(unrecorded).collect()
}

/// Adds `name`, served by the provider's model alone, and its card.
fn insert_direct(
    out: &mut Routes<'_>,
    name: String,
    provider: &str,
    model: &str,
    row: Option<&ProviderModelRow>,
) {
    out.cards.insert(name.clone(), direct_card(provider, row));
    out.table.insert(
        name,
        (Strategy::Weighted, vec![direct(provider, model, row)]),
    );
}

fn direct(provider: &str, model: &str, row: Option<&ProviderModelRow>) -> Target {
    Target {
        provider: provider.to_owned(),
        model: model.to_owned(),
        weight: 1,
        priority: 0,
        stats: TargetStats::default(),
        capabilities: row.and_then(ProviderModelRow::capabilities),
    }
}
