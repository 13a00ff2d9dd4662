//! Providers -> what the filter knows of each enabled provider (authority, paths, keys,
//! headers) and the Envoy cluster reaching its endpoint.

use std::collections::HashMap;

use switchyard_contract::config::{Provider as FilterProvider, ProviderKey, Target};

use super::{Input, ProviderCluster};
use crate::domain::Upstream;
use crate::health::Figures;
use crate::names::cluster_name;
use crate::store::ProviderRow;

/// The enabled providers whose base URL parses: the filter's view of each, and their clusters
/// (in the same order).
pub(super) struct Providers {
    pub filter: Vec<FilterProvider>,
    pub clusters: Vec<ProviderCluster>,
}

pub(super) fn providers(input: &Input) -> Providers {
    let mut out = Providers {
        filter: Vec::new(),
        clusters: Vec::new(),
    };
    for p in input.providers.iter().filter(|p| p.enabled) {
        let upstream = match Upstream::parse(&p.base_url) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(provider = %p.name, "provider skipped: {e}");
                continue;
            }
        };
        out.filter.push(filter_provider(input, p, &upstream));
        out.clusters.push(provider_cluster(input, p, upstream));
    }
    out
}

/// What the filter knows of a provider: its keys less those the provider refused at its
/// latest probe (they wait for a probe to pass).
fn filter_provider(input: &Input, p: &ProviderRow, upstream: &Upstream) -> FilterProvider {
    let kind = crate::providers::spec(p.kind);
    let (auth_header, auth_prefix) = kind.auth_header();
    FilterProvider {
        name: p.name.clone(),
        kind: p.kind,
        cluster: cluster_name(&p.name),
        authority: upstream.authority(),
        path_prefix: kind.path_prefix(upstream, &p.settings),
        auth_header: auth_header.into(),
        auth_prefix: auth_prefix.into(),
        keys: input
            .keys
            .iter()
            .filter(|(k, _)| k.provider_id == p.id)
            .filter(|(k, _)| !input.figures.probes.refused_keys.contains(&k.id))
            .map(|(k, secret)| ProviderKey {
                id: k.id.clone(),
                secret: secret.clone(),
                weight: k.weight,
                qps: k.qps,
            })
            .collect(),
        headers: kind
            .required_headers()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        path_style: kind.path_style(&p.settings),
        query: kind.query(&p.settings),
        region: p.settings.region.clone().unwrap_or_default(),
        quirks: kind.quirks(&p.settings),
        prices: HashMap::new(),
    }
}

/// The provider's cluster; with several keys its endpoint names the provider, so that a failed
/// key is retried on another.
fn provider_cluster(input: &Input, p: &ProviderRow, upstream: Upstream) -> ProviderCluster {
    let several_keys = input
        .keys
        .iter()
        .filter(|(k, _)| k.provider_id == p.id)
        .count()
        > 1;
    ProviderCluster {
        name: cluster_name(&p.name),
        upstream,
        target: several_keys.then(|| p.name.clone()),
        proxies: p
            .settings
            .proxies
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
        pinned: input.pins.get(&p.name).cloned().unwrap_or_default(),
    }
}

/// Each served (provider, model) with its price, for every request's cost.
pub(super) fn price_served<'a>(
    providers: &mut [FilterProvider],
    targets: impl Iterator<Item = &'a Target>,
    figures: &Figures,
) {
    let position: HashMap<String, usize> = providers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), i))
        .collect();
    for t in targets {
        if let Some(p) = position.get(&t.provider).map(|&i| &mut providers[i]) {
            if !p.prices.contains_key(&t.model) {
                if let Some(price) = figures.price(&t.provider, &t.model) {
                    p.prices.insert(t.model.clone(), price);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProviderKind, ProviderSettings};
    use switchyard_contract::config::PathStyle;

    #[test]
    fn paths_and_queries_follow_the_kind_and_its_settings() {
        let settings =
            |project: Option<&str>, location: Option<&str>, api: Option<&str>| ProviderSettings {
                project: project.map(String::from),
                location: location.map(String::from),
                api_version: api.map(String::from),
                ..Default::default()
            };
        // (kind, settings, path prefix, path style, query)
        let cases = [
            (
                ProviderKind::Vertex,
                settings(Some("p"), Some("global"), None),
                "/base/v1/projects/p/locations/global",
                PathStyle::Openai,
                "",
            ),
            (
                ProviderKind::Vertex,
                settings(Some("p"), None, None),
                "/base",
                PathStyle::Openai,
                "",
            ),
            (
                ProviderKind::Openai,
                settings(Some("p"), Some("global"), Some("2024-10-21")),
                "/base",
                PathStyle::Openai,
                "",
            ),
            (
                ProviderKind::AzureOpenai,
                settings(None, None, Some("2024-10-21")),
                "/base",
                PathStyle::AzureDeployment,
                "api-version=2024-10-21",
            ),
            (
                ProviderKind::AzureOpenai,
                settings(None, None, None),
                "/base",
                PathStyle::Openai,
                "",
            ),
        ];
        let upstream = Upstream::parse("https://h/base").unwrap();
        for (kind, settings, prefix, style, q) in cases {
            let spec = crate::providers::spec(kind);
            assert_eq!(spec.path_prefix(&upstream, &settings), prefix, "{kind:?}");
            assert_eq!(spec.path_style(&settings), style, "{kind:?}");
            assert_eq!(spec.query(&settings), q, "{kind:?}");
        }
    }
}
