//! What the gateway should look like, computed from the store: the filter's configuration and
//! the provider clusters. Pure apart from [`load`]; `xds::build` turns it into Envoy protos.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest as _, Sha256};
use switchyard_filter::config::{
    BalanceWeights, Capability, FilterConfig, GatewayKey, ModelCard, ModelRoute, PathStyle,
    Provider as FilterProvider, ProviderKey, RecordSink, Strategy, Tag, Target, TargetStats,
};

use crate::crypto::MasterKey;

/// Where the filter sends request records (on the control plane's xDS port).
pub const RECORDS_PATH: &str = "/switchyard.v1/records";
/// `:authority` of those requests.
pub const RECORDS_AUTHORITY: &str = "switchyard-control-plane";
use crate::domain::{self, ProviderKind, Upstream};
use crate::health::Figures;
use crate::store::{
    glob_matches, AliasRow, ApiKeyRow, ModelRow, ProviderKeyRow, ProviderModelRow, ProviderRow,
    Store, StoreError,
};

/// The model catalog: what is known and decided about each provider's models, and aliases.
/// A static model without a row is served with nothing known about it.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub models: Vec<ProviderModelRow>,
    pub aliases: Vec<AliasRow>,
}

/// One Envoy cluster per provider endpoint, and one per target of a model with several targets
/// (its endpoint names the target, so that the upstream filter knows whom an attempt reached).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderCluster {
    pub name: String,
    pub upstream: Upstream,
    /// Endpoint metadata naming whom an attempt reached: `provider/model` for a target
    /// cluster, the provider's name for a provider with several keys (retried on another key).
    pub target: Option<String>,
    /// HTTP CONNECT proxies to reach the provider through (one endpoint each).
    pub proxies: Vec<std::net::SocketAddr>,
    /// The only addresses to connect to (a provider whose base URL a non-admin chose: the
    /// control plane resolved and vetted them, see [`crate::ssrf`]); empty: Envoy resolves.
    pub pinned: Vec<std::net::SocketAddr>,
}

/// Per provider name, the vetted addresses of providers that may only reach public ones.
pub type Pins = HashMap<String, Vec<std::net::SocketAddr>>;

/// An aggregate cluster: `clusters` tried in order, one attempt each (see DESIGN.md), for at
/// most `attempts` attempts (a single provider with several keys: one per key).
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverCluster {
    pub name: String,
    pub clusters: Vec<String>,
    pub attempts: usize,
}

/// The desired state of every gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayState {
    pub filter: FilterConfig,
    pub clusters: Vec<ProviderCluster>,
    pub failover: Vec<FailoverCluster>,
    /// What the rate limit service enforces (not sent to Envoy).
    pub limits: crate::limits::Table,
    /// Some provider's addresses are vetted by the control plane (a non-admin's provider):
    /// the configuration is worth recomputing now and then (see `reconcile::Reconciler::follow_figures`).
    pub vetted: bool,
}

/// Name prefix of failover clusters allowing `attempts` attempts; the route that retries
/// matches it.
pub fn failover_prefix(attempts: usize) -> String {
    format!("failover-{attempts}-")
}

/// `s` as a cluster-name part: letters, digits, `.`, `_`, `-` kept, anything else `_`; a
/// short hash of `s` follows when that changed it (or cut it), so names stay distinct.
fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(48)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out != s {
        out.push('-');
        out.push_str(&content_version(s.as_bytes())[..6]);
    }
    out
}

pub fn cluster_name(provider: &str) -> String {
    format!("provider-{provider}")
}

/// Reads the store and computes the state (provider keys decrypted here, in memory only).
pub async fn load(
    store: &Store,
    master: &MasterKey,
    max_body_bytes: usize,
    tokens: &crate::gcp::Tokens,
    figures: &Figures,
    guard: &crate::ssrf::Guard,
) -> Result<GatewayState, StoreError> {
    let mut providers = store.list_providers().await?;
    // Connect-time check: a non-admin's provider reaches the addresses vetted now, or nothing.
    let mut pins = Pins::new();
    let mut refused = Vec::new();
    for p in providers
        .iter()
        .filter(|p| p.enabled && p.access.untrusted())
    {
        match guard.vet_url(&p.base_url).await {
            Ok(addrs) => {
                pins.insert(p.name.clone(), addrs);
            }
            Err(e) => {
                tracing::warn!(provider = %p.name, "provider left out: {e}");
                refused.push(p.id.clone());
            }
        }
    }
    providers.retain(|p| !refused.contains(&p.id));
    let keys = store.list_provider_keys().await?;
    let models = store.list_models().await?;
    let catalog = Catalog {
        models: store.list_provider_models().await?,
        aliases: store.list_aliases().await?,
    };
    let mut api_keys = store.list_api_keys().await?;
    let limits = store.limits_table().await?;
    for k in &mut api_keys {
        k.limited = limits.limited(&k.id);
    }
    let vertex: Vec<&str> = providers
        .iter()
        .filter(|p| p.kind == ProviderKind::Vertex)
        .map(|p| p.id.as_str())
        .collect();
    let mut secrets = Vec::with_capacity(keys.len());
    for key in keys {
        if vertex.contains(&key.provider_id.as_str()) {
            // The data plane gets the access token, never the service account key.
            match tokens.get(&key.id) {
                Some(token) => secrets.push((key, token)),
                None => tracing::info!(key = %key.id, "Vertex key waits for its first token"),
            }
            continue;
        }
        match master.open(&key.secret_sealed) {
            Ok(secret) => secrets.push((key, secret)),
            Err(e) => tracing::error!(key = %key.id, "provider key skipped: {e}"),
        }
    }
    let mut state = compute(
        &providers,
        &secrets,
        &models,
        &api_keys,
        max_body_bytes,
        figures,
        &pins,
        &catalog,
    );
    state.limits = limits;
    state.vetted = !pins.is_empty() || !refused.is_empty();
    Ok(state)
}

/// The service account keys of enabled Vertex providers: (key id, key file).
pub async fn vertex_keys(
    store: &Store,
    master: &MasterKey,
) -> Result<Vec<(String, String)>, StoreError> {
    let providers = store.list_providers().await?;
    let vertex: Vec<&str> = providers
        .iter()
        .filter(|p| p.kind == ProviderKind::Vertex && p.enabled)
        .map(|p| p.id.as_str())
        .collect();
    let mut out = Vec::new();
    for key in store.list_provider_keys().await? {
        if vertex.contains(&key.provider_id.as_str()) {
            match master.open(&key.secret_sealed) {
                Ok(secret) => out.push((key.id, secret)),
                Err(e) => tracing::error!(key = %key.id, "Vertex key skipped: {e}"),
            }
        }
    }
    Ok(out)
}

/// The pure part of [`load`].
#[allow(clippy::too_many_arguments)]
pub fn compute(
    providers: &[ProviderRow],
    keys: &[(ProviderKeyRow, String)],
    models: &[ModelRow],
    api_keys: &[ApiKeyRow],
    max_body_bytes: usize,
    figures: &Figures,
    pins: &Pins,
    catalog: &Catalog,
) -> GatewayState {
    let mut clusters = Vec::new();
    let mut filter_providers = Vec::new();
    for p in providers.iter().filter(|p| p.enabled) {
        let upstream = match Upstream::parse(&p.base_url) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(provider = %p.name, "provider skipped: {e}");
                continue;
            }
        };
        let (auth_header, auth_prefix) = domain::auth_header(p.kind);
        let cluster = cluster_name(&p.name);
        filter_providers.push(FilterProvider {
            name: p.name.clone(),
            kind: p.kind,
            cluster: cluster.clone(),
            authority: upstream.authority(),
            path_prefix: match (&p.settings.project, &p.settings.location) {
                // Vertex paths name the project and location; models sit below.
                (Some(project), Some(location)) if p.kind == ProviderKind::Vertex => format!(
                    "{}/v1/projects/{project}/locations/{location}",
                    upstream.path_prefix
                ),
                _ => upstream.path_prefix.clone(),
            },
            auth_header: auth_header.into(),
            auth_prefix: auth_prefix.into(),
            keys: keys
                .iter()
                .filter(|(k, _)| k.provider_id == p.id)
                // A key the provider refused at its latest probe waits for a probe to pass.
                .filter(|(k, _)| !figures.probes.refused_keys.contains(&k.id))
                .map(|(k, secret)| ProviderKey {
                    id: k.id.clone(),
                    secret: secret.clone(),
                    weight: k.weight,
                    qps: k.qps,
                })
                .collect(),
            headers: domain::required_headers(p.kind),
            // Azure deployment URLs carry the model and an `api-version`; its v1 API has neither.
            path_style: match (p.kind, &p.settings.api_version) {
                (ProviderKind::AzureOpenai, Some(_)) => PathStyle::AzureDeployment,
                _ => PathStyle::Openai,
            },
            query: match (p.kind, &p.settings.api_version) {
                (ProviderKind::AzureOpenai, Some(v)) => format!("api-version={v}"),
                _ => String::new(),
            },
            region: p.settings.region.clone().unwrap_or_default(),
            quirks: domain::quirks(p.kind, &p.settings),
            prices: HashMap::new(),
        });
        let several_keys = keys.iter().filter(|(k, _)| k.provider_id == p.id).count() > 1;
        clusters.push(ProviderCluster {
            name: cluster,
            upstream,
            target: several_keys.then(|| p.name.clone()),
            proxies: p
                .settings
                .proxies
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            pinned: pins.get(&p.name).cloned().unwrap_or_default(),
        });
    }

    // Every name a client may send: logical models first, then `provider/model`, then plain
    // upstream names served by exactly one provider (and not shadowed by a logical name).
    let known: HashMap<&str, &FilterProvider> = filter_providers
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    let rows: HashMap<(&str, &str), &ProviderModelRow> = catalog
        .models
        .iter()
        .map(|r| ((r.provider.as_str(), r.model.as_str()), r))
        .collect();
    let row_of = |provider: &str, model: &str| rows.get(&(provider, model)).copied();
    let mut rows_by_provider: HashMap<&str, Vec<&ProviderModelRow>> = HashMap::new();
    for r in &catalog.models {
        rows_by_provider
            .entry(r.provider_id.as_str())
            .or_default()
            .push(r);
    }
    let mut cards: HashMap<String, ModelCard> = HashMap::new();
    let mut routes: BTreeMap<String, (Strategy, Vec<Target>)> = BTreeMap::new();
    for m in models {
        let targets: Vec<Target> = m
            .targets
            .iter()
            .filter(|t| {
                let ok = known.contains_key(t.provider.as_str());
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
                    row_of(&t.provider, &t.model).and_then(ProviderModelRow::capabilities)
                }),
            })
            .collect();
        let mut targets = targets;
        figures.apply(&mut targets);
        if targets.is_empty() {
            tracing::warn!(model = %m.name, "model has no usable target; not served");
        } else {
            cards.insert(m.name.clone(), logical_card(&targets, &row_of));
            routes.insert(m.name.clone(), (m.strategy, targets));
        }
    }
    // A private provider's models are reached as `provider/model` by the keys of its owner and
    // of the users it is shared with; they take no plain name (the name would be ambiguous).
    // A plain name goes to the one provider listing it statically; when none does, to the
    // one provider discovery found it at (so that discovery never takes a name from a
    // configured provider).
    let mut audiences: HashMap<String, Vec<String>> = HashMap::new();
    let mut plain: BTreeMap<&str, (Vec<&ProviderRow>, Vec<&ProviderRow>)> = BTreeMap::new();
    let mut served: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in providers
        .iter()
        .filter(|p| known.contains_key(p.name.as_str()))
    {
        // With discovery turned off, only the static list is served.
        let discovers = p.settings.discovers(p.kind);
        let listed = rows_by_provider
            .get(p.id.as_str())
            .into_iter()
            .flatten()
            .filter(|r| r.served() && (r.static_listed || discovers))
            .map(|r| (r.model.as_str(), r.static_listed));
        let unrecorded = p
            .models
            .iter()
            .filter(|m| row_of(&p.name, m).is_none())
            .map(|m| (m.as_str(), true));
        for (upstream_model, is_static) in listed.chain(unrecorded) {
            served.entry(&p.name).or_default().push(upstream_model);
            let name = format!("{}/{}", p.name, upstream_model);
            if p.access.public {
                let owners = plain.entry(upstream_model).or_default();
                if is_static {
                    owners.0.push(p);
                } else {
                    owners.1.push(p);
                }
            }
            if routes.contains_key(&name) {
                continue;
            }
            if !p.access.public {
                let mut users: Vec<String> = p.access.owner.iter().cloned().collect();
                users.extend(p.access.shared_with.iter().cloned());
                if users.is_empty() {
                    continue;
                }
                audiences.insert(name.clone(), users);
            }
            let row = row_of(&p.name, upstream_model);
            insert_direct(&mut routes, &mut cards, name, &p.name, upstream_model, row);
        }
    }
    for (upstream_model, (by_static, by_discovery)) in plain {
        let owners = if by_static.is_empty() {
            by_discovery
        } else {
            by_static
        };
        if let ([only], false) = (owners.as_slice(), routes.contains_key(upstream_model)) {
            let row = row_of(&only.name, upstream_model);
            insert_direct(
                &mut routes,
                &mut cards,
                upstream_model.to_owned(),
                &only.name,
                upstream_model,
                row,
            );
        }
    }

    // Models with several targets fail over: a cluster per target, and per target an aggregate
    // of it followed by the others in fallback order (priority tier, then weight).
    let upstreams: HashMap<String, &ProviderCluster> =
        clusters.iter().map(|c| (c.name.clone(), c)).collect();
    let mut target_clusters: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut failover = Vec::new();
    let mut failover_names: HashMap<String, Vec<String>> = HashMap::new();
    let mut failover_capable: HashMap<String, Vec<(u8, Vec<String>)>> = HashMap::new();
    for (name, (_, targets)) in routes.iter().filter(|(_, (_, t))| t.len() > 1) {
        let members: Vec<String> = targets
            .iter()
            .map(|t| {
                target_clusters
                    .entry((t.provider.clone(), t.model.clone()))
                    .or_insert_with(|| format!("target-{}-{}", t.provider, slug(&t.model)))
                    .clone()
            })
            .collect();
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by_key(|&i| (targets[i].priority, std::cmp::Reverse(targets[i].weight), i));
        let n = targets.len();
        // One family of failover clusters for every request, and one per set of needs (tools,
        // images) that not every target meets, over the targets that meet it.
        let caps: Vec<u8> = targets
            .iter()
            .map(|t| Capability::mask(t.capabilities.as_deref()))
            .collect();
        let mut family = |needs: u8, tag: &str| -> Option<Vec<String>> {
            let capable: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| caps[i] & needs == needs)
                .collect();
            if needs != 0 && (capable.len() == n || capable.is_empty()) {
                return None;
            }
            let k = capable.len();
            let mut names = vec![String::new(); n];
            if k < 2 {
                return Some(names); // one capable target: its own cluster, nothing to fail over to
            }
            for &first in &capable {
                let cluster = format!("{}{first}-{tag}{}", failover_prefix(k), slug(name));
                let clusters = std::iter::once(first)
                    .chain(capable.iter().copied().filter(|&i| i != first))
                    .map(|i| members[i].clone())
                    .collect();
                failover.push(FailoverCluster {
                    name: cluster.clone(),
                    clusters,
                    attempts: k,
                });
                names[first] = cluster;
            }
            Some(names)
        };
        let names = family(0, "").unwrap_or_default();
        let capable: Vec<(u8, Vec<String>)> = (1..=Capability::ALL)
            .filter_map(|needs| Some((needs, family(needs, &format!("n{needs}-"))?)))
            .collect();
        failover_names.insert(name.clone(), names);
        if !capable.is_empty() {
            failover_capable.insert(name.clone(), capable);
        }
    }
    let mut target_list = Vec::new();
    for ((provider, model), name) in target_clusters {
        if let Some(c) = upstreams.get(&cluster_name(&provider)) {
            target_list.push(ProviderCluster {
                name,
                upstream: c.upstream.clone(),
                target: Some(format!("{provider}/{model}")),
                proxies: c.proxies.clone(),
                pinned: c.pinned.clone(),
            });
        }
    }
    clusters.extend(target_list);

    // A single target whose provider has several keys: a failed key (refused, rate limited)
    // is retried on another, through an aggregate over the provider's own cluster.
    let key_counts: HashMap<&str, usize> = filter_providers
        .iter()
        .map(|p| (p.name.as_str(), p.keys.len()))
        .collect();
    for (name, (_, targets)) in routes.iter().filter(|(_, (_, t))| t.len() == 1) {
        let provider = targets[0].provider.as_str();
        let keys = key_counts.get(provider).copied().unwrap_or(0);
        if keys < 2 {
            continue;
        }
        let cluster = format!("{}provider-{provider}", failover_prefix(keys));
        if !failover.iter().any(|f: &FailoverCluster| f.name == cluster) {
            failover.push(FailoverCluster {
                name: cluster.clone(),
                clusters: vec![cluster_name(provider)],
                attempts: keys,
            });
        }
        failover_names.insert(name.clone(), vec![cluster]);
    }

    let now = crate::store::now();
    let filter_keys = api_keys
        .iter()
        .filter(|k| k.expires_at.is_none_or(|t| t > now) && k.user_active)
        .map(|k| GatewayKey {
            id: k.id.clone(),
            digest: crate::crypto::filter_digest(&k.digest).to_owned(),
            user: k.user.clone(),
            // Narrowing a user narrows every key of theirs at the next snapshot.
            models: crate::scope::intersect(&k.models, &k.user_models),
            expires_at: k.expires_at.and_then(|t| u64::try_from(t).ok()),
            limited: k.limited,
        })
        .collect();

    // Each served (provider, model) with its price, for every request's cost.
    let position: HashMap<String, usize> = filter_providers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), i))
        .collect();
    for (_, targets) in routes.values() {
        for t in targets {
            if let Some(p) = position.get(&t.provider).map(|&i| &mut filter_providers[i]) {
                if !p.prices.contains_key(&t.model) {
                    if let Some(price) = figures.price(&t.provider, &t.model) {
                        p.prices.insert(t.model.clone(), price);
                    }
                }
            }
        }
    }

    let logical: std::collections::HashSet<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let mut model_routes: BTreeMap<String, ModelRoute> = routes
        .into_iter()
        .map(|(name, (strategy, targets))| {
            let route = ModelRoute {
                failover: failover_names.remove(&name).unwrap_or_default(),
                failover_capable: failover_capable.remove(&name).unwrap_or_default(),
                users: audiences.remove(&name).unwrap_or_default(),
                card: cards.remove(&name).unwrap_or_default(),
                name: name.clone(),
                targets,
                strategy,
            };
            (name, route)
        })
        .collect();
    apply_aliases(&mut model_routes, &catalog.aliases, &served, &logical);

    let mut filter = FilterConfig {
        version: String::new(),
        max_body_bytes,
        max_response_bytes: switchyard_filter::config::default_max_response_bytes(),
        // Set by the caller, which holds the key (see `secrets::Secrets::prepare_for_dataplane`).
        key_digest_key: None,
        keys: filter_keys,
        providers: filter_providers,
        models: model_routes.into_values().collect(),
        balance: BalanceWeights::default(),
        records: Some(RecordSink {
            cluster: crate::xds::build::XDS_CLUSTER.into(),
            authority: RECORDS_AUTHORITY.into(),
            path: RECORDS_PATH.into(),
        }),
        record_state: false,
    };
    filter.version = content_version(&serde_json::to_vec(&filter).unwrap_or_default());
    GatewayState {
        filter,
        clusters,
        failover,
        limits: Default::default(),
        vetted: false,
    }
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

/// Adds `name`, served by the provider's model alone, and its card.
fn insert_direct(
    routes: &mut BTreeMap<String, (Strategy, Vec<Target>)>,
    cards: &mut HashMap<String, ModelCard>,
    name: String,
    provider: &str,
    model: &str,
    row: Option<&ProviderModelRow>,
) {
    cards.insert(name.clone(), direct_card(provider, row));
    routes.insert(
        name,
        (Strategy::Weighted, vec![direct(provider, model, row)]),
    );
}

/// What `/v1/models` shows of a provider's model.
fn direct_card(provider: &str, row: Option<&ProviderModelRow>) -> ModelCard {
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
fn logical_card<'a>(
    targets: &[Target],
    row_of: &impl Fn(&str, &str) -> Option<&'a ProviderModelRow>,
) -> ModelCard {
    let rows: Vec<&ProviderModelRow> = targets
        .iter()
        .filter_map(|t| row_of(&t.provider, &t.model))
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

/// Adds the aliases' names: a glob gives each served model of its provider whose name matches
/// that name (the most specific glob wins), overriding a plain name; an exact alias copies the
/// route of its target. Logical models keep their names.
fn apply_aliases(
    routes: &mut BTreeMap<String, ModelRoute>,
    aliases: &[AliasRow],
    served: &HashMap<&str, Vec<&str>>,
    logical: &std::collections::HashSet<&str>,
) {
    let mut globs: Vec<&AliasRow> = aliases.iter().filter(|a| a.is_glob()).collect();
    // Least specific first, so that more specific globs overwrite.
    globs.sort_by_key(|a| (a.name.chars().filter(|c| *c != '*').count(), a.name.clone()));
    for alias in globs {
        let Some(models) = served.get(alias.target.as_str()) else {
            tracing::warn!(alias = %alias.name, provider = %alias.target, "glob alias skipped: provider unknown, disabled or without models");
            continue;
        };
        for model in models.iter().filter(|m| glob_matches(&alias.name, m)) {
            if logical.contains(model) {
                continue;
            }
            let source = format!("{}/{model}", alias.target);
            let Some(route) = routes.get(&source).filter(|r| {
                matches!(r.targets.as_slice(), [t] if t.provider == alias.target && t.model == *model)
            }) else {
                continue;
            };
            let mut route = route.clone();
            route.name = (*model).to_owned();
            routes.insert(route.name.clone(), route);
        }
    }
    for alias in aliases.iter().filter(|a| !a.is_glob()) {
        if logical.contains(&alias.name.as_str()) {
            tracing::warn!(alias = %alias.name, "alias skipped: a logical model has that name");
            continue;
        }
        match routes.get(&alias.target) {
            Some(route) => {
                let mut route = route.clone();
                route.name = alias.name.clone();
                routes.insert(route.name.clone(), route);
            }
            None => {
                tracing::warn!(alias = %alias.name, target = %alias.target, "alias skipped: its target is not served");
            }
        }
    }
}

/// A short version string derived from content: equal content, equal version.
pub fn content_version(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetSpec;
    use crate::domain::{ProviderKind, Strategy};

    fn provider(name: &str, base: &str, models: &[&str], enabled: bool) -> ProviderRow {
        ProviderRow {
            id: format!("id-{name}"),
            name: name.into(),
            kind: ProviderKind::OpenaiCompatible,
            base_url: base.into(),
            models: models.iter().map(|m| (*m).to_string()).collect(),
            settings: Default::default(),
            enabled,
            access: crate::store::ProviderAccess::public(),
        }
    }

    /// A discovered model of `provider`.
    fn row(provider: &str, model: &str, tags: &[Tag]) -> ProviderModelRow {
        ProviderModelRow {
            provider_id: format!("id-{provider}"),
            provider: provider.into(),
            model: model.into(),
            static_listed: false,
            discovered: true,
            vanished_at: None,
            configured: false,
            enabled: true,
            detected_tags: tags.to_vec(),
            tags_from_metadata: true,
            tags_override: None,
            display_name: Some(format!("{model} by {provider}")),
            context_window: Some(200_000),
            context_window_override: None,
            base_model: None,
            created: 1_700_000_000,
            first_seen: 1_700_000_000,
            seen_at: Some(1_700_000_000),
        }
    }

    #[test]
    fn the_catalog_decides_what_is_served_and_aliases_add_names() {
        let providers = vec![
            provider(
                "anthropic",
                "http://127.0.0.1:9001",
                &["claude-static"],
                true,
            ),
            provider("other", "http://127.0.0.1:9002/v1", &[], true),
            provider("openai", "http://127.0.0.1:9003/v1", &["gpt-4o"], true),
        ];
        let chat = [Tag::Chat, Tag::Vision, Tag::FunctionCalling];
        let mut catalog = Catalog {
            models: vec![
                row("anthropic", "claude-sonnet-4-5", &chat),
                ProviderModelRow {
                    vanished_at: Some(1_700_000_100),
                    ..row("anthropic", "claude-old", &chat)
                },
                ProviderModelRow {
                    enabled: false,
                    ..row("anthropic", "claude-off", &chat)
                },
                ProviderModelRow {
                    tags_override: Some(vec![Tag::Chat]),
                    context_window_override: Some(8_000),
                    ..row("anthropic", "claude-small", &chat)
                },
                row("other", "claude-sonnet-4-5", &[Tag::Chat]),
                row("other", "gpt-4o", &[Tag::Chat]),
                ProviderModelRow {
                    tags_from_metadata: false,
                    ..row("other", "guessed", &[Tag::Chat])
                },
            ],
            aliases: vec![],
        };
        let smart = ModelRow {
            name: "smart".into(),
            strategy: Strategy::Balanced,
            targets: ["anthropic/claude-sonnet-4-5", "anthropic/claude-small"]
                .iter()
                .map(|t| {
                    let (p, m) = t.split_once('/').unwrap();
                    TargetSpec {
                        provider: p.into(),
                        model: m.into(),
                        weight: 1,
                        priority: 0,
                        capabilities: None,
                    }
                })
                .collect(),
        };
        let run = |catalog: &Catalog| {
            compute(
                &providers,
                &[],
                std::slice::from_ref(&smart),
                &[],
                1024,
                &Figures::default(),
                &Pins::new(),
                catalog,
            )
            .filter
            .models
        };
        let models = run(&catalog);
        let get = |name: &str| models.iter().find(|m| m.name == name);
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "anthropic/claude-small",
                "anthropic/claude-sonnet-4-5",
                "anthropic/claude-static",
                "claude-small",
                "claude-static",
                "gpt-4o",
                "guessed",
                "openai/gpt-4o",
                "other/claude-sonnet-4-5",
                "other/gpt-4o",
                "other/guessed",
                "smart",
            ],
            "vanished and disabled models are not served; an ambiguous plain name is not either"
        );
        assert_eq!(
            get("gpt-4o").unwrap().targets[0].provider,
            "openai",
            "a static list beats a discovery for a plain name"
        );
        let sonnet = get("anthropic/claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.card.owned_by, "anthropic");
        assert_eq!(sonnet.card.created, 1_700_000_000);
        assert_eq!(sonnet.card.context_window, Some(200_000));
        assert_eq!(sonnet.card.tags, chat);
        assert_eq!(
            Capability::mask(sonnet.targets[0].capabilities.as_deref()),
            Capability::ALL
        );
        let small = get("claude-small").unwrap();
        assert_eq!(
            Capability::mask(small.targets[0].capabilities.as_deref()),
            0,
            "the admin's tags say: no tools, no images"
        );
        assert_eq!(small.card.context_window, Some(8_000));
        assert_eq!(
            get("other/guessed").unwrap().targets[0].capabilities,
            None,
            "a guess by name does not keep requests away"
        );
        assert_eq!(
            get("anthropic/claude-static").unwrap().card,
            ModelCard {
                owned_by: "anthropic".into(),
                ..Default::default()
            },
            "a static model without a row"
        );
        let logical = get("smart").unwrap();
        assert_eq!(logical.card.owned_by, "switchyard");
        assert_eq!(
            logical.card.context_window,
            Some(8_000),
            "its smallest target"
        );
        assert_eq!(logical.card.tags, chat, "what some target can do");
        assert_eq!(
            Capability::mask(logical.targets[1].capabilities.as_deref()),
            0,
            "a logical model's target takes its capabilities from the catalog"
        );
        assert!(!logical.failover_capable.is_empty());

        catalog.aliases = vec![
            AliasRow {
                name: "claude-*".into(),
                target: "anthropic".into(),
            },
            AliasRow {
                name: "claude-sonnet-*".into(),
                target: "other".into(),
            },
            AliasRow {
                name: "fast".into(),
                target: "openai/gpt-4o".into(),
            },
            AliasRow {
                name: "clever".into(),
                target: "smart".into(),
            },
            AliasRow {
                name: "smart".into(),
                target: "gpt-4o".into(),
            },
            AliasRow {
                name: "broken".into(),
                target: "nope".into(),
            },
            AliasRow {
                name: "gpt-*".into(),
                target: "missing-provider".into(),
            },
        ];
        let models = run(&catalog);
        let get = |name: &str| models.iter().find(|m| m.name == name);
        let target = |name: &str| {
            get(name).map(|m| {
                m.targets
                    .iter()
                    .map(|t| format!("{}/{}", t.provider, t.model))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            target("claude-sonnet-4-5").unwrap(),
            ["other/claude-sonnet-4-5"],
            "the more specific glob wins"
        );
        assert_eq!(target("claude-small").unwrap(), ["anthropic/claude-small"]);
        assert_eq!(
            target("claude-static").unwrap(),
            ["anthropic/claude-static"]
        );
        assert!(get("claude-old").is_none(), "globs give served models only");
        assert_eq!(target("fast").unwrap(), ["openai/gpt-4o"]);
        let clever = get("clever").unwrap();
        let smart_route = get("smart").unwrap();
        assert_eq!(clever.targets, smart_route.targets);
        assert_eq!(
            clever.failover, smart_route.failover,
            "an alias shares its target's clusters"
        );
        assert_eq!(
            target("smart").unwrap(),
            ["anthropic/claude-sonnet-4-5", "anthropic/claude-small"],
            "an alias never takes a logical model's name"
        );
        assert!(get("broken").is_none());
        assert_eq!(target("gpt-4o").unwrap(), ["openai/gpt-4o"]);

        // Discovery turned off: the provider serves its static list only.
        let mut providers = providers.clone();
        providers[1].settings.discover = Some(false);
        let models = compute(
            &providers,
            &[],
            &[],
            &[],
            1024,
            &Figures::default(),
            &Pins::new(),
            &catalog,
        )
        .filter
        .models;
        assert!(models.iter().all(|m| m.targets[0].provider != "other"));
    }

    #[test]
    fn routes_cover_logical_prefixed_and_unique_plain_names() {
        let providers = vec![
            provider("a", "http://127.0.0.1:9001/v1", &["m1", "shared"], true),
            provider("b", "https://api.b.com/v1", &["m2", "shared"], true),
            provider("off", "http://127.0.0.1:9003/v1", &["m3"], false),
        ];
        let keys = vec![(
            ProviderKeyRow {
                id: "pk".into(),
                provider_id: "id-a".into(),
                digest: "d".into(),
                secret_sealed: "s".into(),
                weight: 2,
                qps: None,
            },
            "secret-a".to_string(),
        )];
        let models = vec![
            ModelRow {
                name: "smart".into(),
                strategy: Strategy::Balanced,
                targets: vec![
                    TargetSpec {
                        provider: "a".into(),
                        model: "m1".into(),
                        weight: 1,
                        priority: 0,
                        capabilities: None,
                    },
                    TargetSpec {
                        provider: "off".into(),
                        model: "m3".into(),
                        weight: 1,
                        priority: 0,
                        capabilities: None,
                    },
                ],
            },
            ModelRow {
                name: "dead".into(),
                strategy: Strategy::Balanced,
                targets: vec![TargetSpec {
                    provider: "off".into(),
                    model: "m3".into(),
                    weight: 1,
                    priority: 0,
                    capabilities: None,
                }],
            },
        ];
        let state = compute(
            &providers,
            &keys,
            &models,
            &[],
            1024,
            &Figures::default(),
            &Pins::new(),
            &Catalog::default(),
        );
        let names: Vec<&str> = state
            .filter
            .models
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            names,
            vec!["a/m1", "a/shared", "b/m2", "b/shared", "m1", "m2", "smart"]
        );
        let smart = state
            .filter
            .models
            .iter()
            .find(|m| m.name == "smart")
            .unwrap();
        assert_eq!(smart.targets.len(), 1, "disabled provider's target dropped");
        assert_eq!(
            smart.strategy,
            Strategy::Balanced,
            "the model's strategy reaches the filter"
        );
        let direct = state
            .filter
            .models
            .iter()
            .find(|m| m.name == "a/m1")
            .unwrap();
        assert_eq!(direct.strategy, Strategy::Weighted);
        assert_eq!(state.clusters.len(), 2);
        assert!(state.clusters[1].upstream.tls);
        let a = &state.filter.providers[0];
        assert_eq!(a.cluster, "provider-a");
        assert_eq!(a.authority, "127.0.0.1:9001");
        assert_eq!(a.keys[0].secret, "secret-a");
        assert_eq!(a.auth_header, "authorization");
        assert!(!state.filter.version.is_empty());
        let again = compute(
            &providers,
            &keys,
            &models,
            &[],
            1024,
            &Figures::default(),
            &Pins::new(),
            &Catalog::default(),
        );
        assert_eq!(
            again.filter.version, state.filter.version,
            "stable for same content"
        );
    }

    #[test]
    fn expired_keys_are_not_pushed_and_keys_serve_only_what_their_owner_may() {
        let key = |id: &str, expires_at| ApiKeyRow {
            id: id.into(),
            name: id.into(),
            user: "u".into(),
            prefix: "sk".into(),
            digest: "0".repeat(64),
            models: vec!["*".into()],
            rpm: None,
            tpm: None,
            credits: None,
            expires_at,
            created_at: 0,
            daily_budget_micros: None,
            monthly_budget_micros: None,
            limited: id == "live",
            user_active: true,
            user_models: vec!["*".into()],
        };
        let narrowed = ApiKeyRow {
            models: vec!["gpt-*".into(), "claude-*".into()],
            user_models: vec!["gpt-4o-mini".into()],
            ..key("narrowed", None)
        };
        let state = compute(
            &[],
            &[],
            &[],
            &[key("live", None), key("gone", Some(1)), narrowed],
            1,
            &Figures::default(),
            &Pins::new(),
            &Catalog::default(),
        );
        let ids: Vec<&str> = state.filter.keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, vec!["live", "narrowed"]);
        assert_eq!(state.filter.keys[1].models, vec!["gpt-4o-mini".to_string()]);
        assert!(
            state.filter.keys[0].limited,
            "a limited key asks the rate limit service"
        );
    }

    #[test]
    fn models_with_several_targets_get_target_and_failover_clusters() {
        let providers = vec![
            provider("a", "http://127.0.0.1:9001/v1", &["m1"], true),
            provider("b", "https://api.b.com/v1", &["m2", "vendor/m:3"], true),
        ];
        let spec = |provider: &str, model: &str, weight, priority| TargetSpec {
            provider: provider.into(),
            model: model.into(),
            weight,
            priority,
            capabilities: None,
        };
        let models = vec![
            ModelRow {
                name: "trio".into(),
                strategy: Strategy::Balanced,
                targets: vec![
                    spec("b", "vendor/m:3", 1, 1),
                    spec("a", "m1", 1, 0),
                    spec("b", "m2", 5, 0),
                ],
            },
            ModelRow {
                name: "solo".into(),
                strategy: Strategy::Weighted,
                targets: vec![spec("a", "m1", 1, 0)],
            },
        ];
        let state = compute(
            &providers,
            &[],
            &models,
            &[],
            1024,
            &Figures::default(),
            &Pins::new(),
            &Catalog::default(),
        );
        let route = |name: &str| {
            state
                .filter
                .models
                .iter()
                .find(|m| m.name == name)
                .unwrap()
                .clone()
        };
        assert!(route("solo").failover.is_empty(), "one target: no failover");
        let trio = route("trio");
        assert_eq!(trio.failover.len(), 3);
        assert!(trio.failover.iter().all(|f| f.starts_with("failover-3-")));
        // One target cluster per (provider, model), named safely, its endpoint naming the target.
        let targets: Vec<(&str, &str)> = state
            .clusters
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.target.as_deref()?)))
            .collect();
        assert_eq!(targets.len(), 3);
        let odd = targets.iter().find(|(_, t)| *t == "b/vendor/m:3").unwrap();
        assert!(odd.0.starts_with("target-b-vendor_m_3-"), "{}", odd.0);
        let cluster_of = |t: &str| targets.iter().find(|(_, x)| *x == t).unwrap().0;
        // Each failover cluster starts with its target, then the rest by tier, then weight.
        let members = |i: usize| {
            state
                .failover
                .iter()
                .find(|f| f.name == trio.failover[i])
                .unwrap()
                .clusters
                .clone()
        };
        assert_eq!(
            members(0),
            vec![
                cluster_of("b/vendor/m:3"),
                cluster_of("b/m2"),
                cluster_of("a/m1")
            ]
        );
        assert_eq!(
            members(1),
            vec![
                cluster_of("a/m1"),
                cluster_of("b/m2"),
                cluster_of("b/vendor/m:3")
            ]
        );
        assert_eq!(
            members(2),
            vec![
                cluster_of("b/m2"),
                cluster_of("a/m1"),
                cluster_of("b/vendor/m:3")
            ]
        );
        // Target clusters reach the provider's endpoint.
        let b = state
            .clusters
            .iter()
            .find(|c| c.name == "provider-b")
            .unwrap();
        let b_target = state
            .clusters
            .iter()
            .find(|c| c.target.as_deref() == Some("b/m2"))
            .unwrap();
        assert_eq!(b.upstream, b_target.upstream);
    }

    #[test]
    fn requests_that_need_tools_or_images_get_clusters_of_capable_targets_only() {
        use switchyard_filter::config::Capability;
        let providers = vec![
            provider("a", "http://127.0.0.1:9001/v1", &["m"], true),
            provider("b", "http://127.0.0.1:9002/v1", &["m"], true),
            provider("c", "http://127.0.0.1:9003/v1", &["m"], true),
        ];
        let spec = |p: &str, caps: Option<Vec<Capability>>| TargetSpec {
            provider: p.into(),
            model: "m".into(),
            weight: 1,
            priority: 0,
            capabilities: caps,
        };
        let models = vec![ModelRow {
            name: "mixed".into(),
            strategy: Strategy::Weighted,
            targets: vec![
                spec("a", Some(vec![])),                            // plain chat only
                spec("b", Some(vec![Capability::FunctionCalling])), // tools, no images
                spec("c", None),                                    // everything
            ],
        }];
        let state = compute(
            &providers,
            &[],
            &models,
            &[],
            1024,
            &Figures::default(),
            &Pins::new(),
            &Catalog::default(),
        );
        let route = state
            .filter
            .models
            .iter()
            .find(|m| m.name == "mixed")
            .unwrap();
        assert_eq!(route.failover.len(), 3);
        let family = |needs: u8| {
            route
                .failover_capable
                .iter()
                .find(|(n, _)| *n == needs)
                .map(|(_, l)| l.clone())
                .unwrap()
        };
        let tools = family(Capability::FunctionCalling.bit());
        assert!(tools[0].is_empty(), "a takes no tools");
        assert!(tools[1].starts_with("failover-2-1-n1-"));
        let members = |name: &str| {
            state
                .failover
                .iter()
                .find(|f| f.name == name)
                .unwrap()
                .clusters
                .clone()
        };
        assert_eq!(members(&tools[1]).len(), 2, "b then c");
        // Images: only c; no failover cluster, its own.
        let images = family(Capability::Vision.bit());
        assert!(images.iter().all(String::is_empty));
        assert_eq!(family(Capability::ALL), images);
        // The filter takes it.
        let index = switchyard_filter::route::Index::new(state.filter.clone()).unwrap();
        let entry = index.targets("mixed").unwrap();
        assert_eq!(
            entry.failover_cluster(1, Capability::FunctionCalling.bit()),
            Some(tools[1].as_str())
        );
        assert_eq!(entry.failover_cluster(2, Capability::Vision.bit()), None);
        assert_eq!(
            entry.failover_cluster(0, 0),
            Some(route.failover[0].as_str())
        );
    }
}
