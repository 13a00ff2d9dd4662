//! What the gateway should look like: the filter's configuration, the provider clusters and
//! the limits table. [`load_input`] reads everything it depends on into one [`Input`] (the only
//! I/O); [`compute`] is pure, a pipeline of named steps: providers -> clusters
//! (`providers`), models -> routes (`routes`, with cards from the `catalog`), routes ->
//! failover clusters (`failover`), gateway keys (`keys`), and aliases (`aliases`).
//! `xds::build` turns the result into Envoy protos.

mod aliases;
mod catalog;
mod failover;
mod keys;
mod load;
mod providers;
mod routes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use switchyard_contract::config::{BalanceWeights, FilterConfig, ModelRoute, RecordSink};

pub use catalog::Catalog;
pub use load::{load, load_input, vertex_keys};

use crate::domain::Upstream;
use crate::health::Figures;
use crate::names::XDS_CLUSTER;
use crate::store::{ApiKeyRow, ModelRow, ProviderKeyRow, ProviderRow};

/// Where the filter sends request records (on the control plane's xDS port).
pub use switchyard_contract::record::PATH as RECORDS_PATH;
/// `:authority` of those requests.
pub const RECORDS_AUTHORITY: &str = "switchyard-control-plane";

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
    /// What the limits service enforces (not sent to Envoy).
    pub limits: crate::limits::Table,
    /// Some provider's addresses are vetted by the control plane (a non-admin's provider):
    /// the configuration is worth recomputing now and then (see `Reconciler::follow_figures`).
    pub vetted: bool,
}

/// Everything the gateway state is computed from.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Providers, less those whose addresses failed vetting.
    pub providers: Vec<ProviderRow>,
    /// Provider keys with their secrets opened (a Vertex key's access token).
    pub keys: Vec<(ProviderKeyRow, String)>,
    /// Logical models.
    pub models: Vec<ModelRow>,
    pub catalog: Catalog,
    /// Gateway keys.
    pub api_keys: Vec<ApiKeyRow>,
    pub limits: crate::limits::Table,
    /// Health figures and prices: targets ranked, requests priced.
    pub figures: Figures,
    pub pins: Pins,
    /// How many providers were left out because their addresses failed vetting.
    pub refused: usize,
    /// Largest request body the filter accepts.
    pub max_body_bytes: usize,
    /// Unix seconds: keys expired by then are left out.
    pub now: i64,
    /// The state Envoy has: measured figures close to its own stay as they are (see
    /// [`crate::health::hold_steady`]).
    pub steady: Option<Arc<GatewayState>>,
}

/// The gateway state `input` describes.
pub fn compute(input: &Input) -> GatewayState {
    let mut providers = providers::providers(input);
    let routes = routes::routes(input, &providers.filter);
    let mut failover = failover::failover(&routes.table, &providers.clusters, &providers.filter);
    providers::price_served(
        &mut providers.filter,
        routes.table.values().flat_map(|(_, targets)| targets),
        &input.figures,
    );
    let keys = keys::gateway_keys(&input.api_keys, &input.limits, input.now);
    let mut models = model_routes(input, routes, &mut failover);
    if let Some(before) = &input.steady {
        crate::health::hold_steady(&mut models, &before.filter.models);
    }
    let mut clusters = providers.clusters;
    clusters.extend(failover.targets);
    let mut filter = FilterConfig {
        version: String::new(),
        max_body_bytes: input.max_body_bytes,
        max_response_bytes: switchyard_contract::config::default_max_response_bytes(),
        // Set by the caller, which holds the key (see `Secrets::prepare_for_dataplane`).
        key_digest_key: None,
        keys,
        providers: providers.filter,
        models,
        balance: BalanceWeights::default(),
        records: Some(RecordSink {
            cluster: XDS_CLUSTER.into(),
            authority: RECORDS_AUTHORITY.into(),
            path: RECORDS_PATH.into(),
        }),
        record_state: false,
        lease_timeout_ms: switchyard_contract::config::default_lease_timeout_ms(),
    };
    filter.version = content_version(&serde_json::to_vec(&filter).unwrap_or_default());
    GatewayState {
        filter,
        clusters,
        failover: failover.clusters,
        limits: input.limits.clone(),
        vetted: !input.pins.is_empty() || input.refused > 0,
    }
}

/// The filter's routes: each with its failover clusters, audience and card, then aliases.
fn model_routes(
    input: &Input,
    routes: routes::Routes<'_>,
    failover: &mut failover::Failover,
) -> Vec<ModelRoute> {
    let routes::Routes {
        table,
        mut cards,
        mut audiences,
        served,
    } = routes;
    let mut model_routes: BTreeMap<String, ModelRoute> = table
        .into_iter()
        .map(|(name, (strategy, targets))| {
            let route = ModelRoute {
                failover: failover.names.remove(&name).unwrap_or_default(),
                failover_capable: failover.capable.remove(&name).unwrap_or_default(),
                users: audiences.remove(&name).unwrap_or_default(),
                card: cards.remove(&name).unwrap_or_default(),
                name: name.clone(),
                targets,
                strategy,
            };
            (name, route)
        })
        .collect();
    let logical: HashSet<&str> = input.models.iter().map(|m| m.name.as_str()).collect();
    aliases::apply_aliases(&mut model_routes, &input.catalog.aliases, &served, &logical);
    model_routes.into_values().collect()
}

/// A short version string derived from content: equal content, equal version.
pub fn content_version(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

#[cfg(test)]
mod tests;
