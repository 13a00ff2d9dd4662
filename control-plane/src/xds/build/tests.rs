//! Tests of the resources as a whole: what each builds, read back from the packed protos.

use std::path::Path;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::header_mutation;
use envoy_types::pb::envoy::config::core::v3::{transport_socket, Address};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{header_matcher, route, Route, RouteConfiguration};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::http::early_header_mutation::header_mutation::v3::HeaderMutation as EarlyHeaderMutation;
use envoy_types::pb::envoy::extensions::transport_sockets::http_11_proxy::v3::Http11ProxyUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions as UpstreamHttpOptions;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher;
use envoy_types::pb::google::protobuf::{value, BoolValue};
use prost::Message as _;
use switchyard_contract::names::{
    CLIENT_API_HEADER, CLUSTER_HEADER, INTERNAL_HEADER_PREFIX, METADATA_NAMESPACE, STREAM_HEADER,
    UPSTREAM_ROOT_ID,
};

use super::endpoints::PROXY_ADDRESS_METADATA;
use super::*;
use crate::config::Gateway;
use crate::domain::Upstream;
use crate::names::XDS_CLUSTER;
use crate::snapshot::{FailoverCluster, GatewayState, ProviderCluster};

/// The same state gives the same versions: a configuration recomputed with nothing changed
/// (every 30 s, and with every health update) publishes nothing.
#[test]
fn building_twice_gives_the_same_bytes() {
    let provider = crate::store::ProviderRow {
        id: "p1".into(),
        name: "openai".into(),
        kind: crate::domain::ProviderKind::Openai,
        base_url: "https://api.openai.com/v1".into(),
        models: [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "o3-mini",
            "gpt-4.1-mini",
        ]
        .map(String::from)
        .to_vec(),
        settings: Default::default(),
        enabled: true,
        access: crate::store::ProviderAccess::public(),
    };
    let make = || {
        crate::snapshot::compute(&crate::snapshot::Input {
            providers: vec![provider.clone()],
            max_body_bytes: 1024,
            ..Default::default()
        })
    };
    let state = make();
    assert!(state.filter.providers[0].prices.len() >= 3, "priced models");
    let gw = Gateway::default();
    let a = resources(&gw, &state, Path::new("/f.wasm"));
    for _ in 0..5 {
        let b = resources(&gw, &make(), Path::new("/f.wasm"));
        assert_eq!(a.listeners, b.listeners);
        assert_eq!(a.routes, b.routes);
        assert_eq!(a.clusters, b.clusters);
        assert_eq!(a.extension_configs, b.extension_configs);
    }
}

fn state() -> GatewayState {
    GatewayState {
        limits: Default::default(),
        vetted: false,
        filter: Default::default(),
        clusters: vec![
            ProviderCluster {
                name: "provider-openai".into(),
                upstream: Upstream::parse("https://api.openai.com/v1").unwrap(),
                target: None,
                proxies: Vec::new(),
                pinned: Vec::new(),
            },
            ProviderCluster {
                name: "provider-local".into(),
                upstream: Upstream::parse("http://127.0.0.1:9000/v1").unwrap(),
                target: None,
                proxies: Vec::new(),
                pinned: Vec::new(),
            },
        ],
        failover: Vec::new(),
    }
}

#[test]
fn https_clusters_get_tls_with_sni_and_ip_clusters_are_static() {
    let gw = Gateway::default();
    let r = resources(&gw, &state(), Path::new("/x.wasm"));
    let openai = Cluster::decode(r.clusters[0].1.value.as_slice()).unwrap();
    let ts = openai.transport_socket.expect("tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = ts.config_type else {
        panic!("typed config")
    };
    let tls = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
    assert_eq!(tls.sni, "api.openai.com");
    assert_eq!(
        openai.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::LogicalDns as i32
        ))
    );
    let local = Cluster::decode(r.clusters[1].1.value.as_slice()).unwrap();
    assert!(local.transport_socket.is_none());
    assert_eq!(
        local.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32
        ))
    );
    assert_eq!(r.extension_configs[0].0, FILTER_NAME);
    assert_eq!(r.listeners[0].1.type_url, LISTENER_TYPE);
    assert_eq!(r.routes[0].1.type_url, ROUTE_TYPE);
    assert_eq!(r.clusters[0].1.type_url, CLUSTER_TYPE);
    assert_eq!(r.extension_configs[0].1.type_url, ECDS_TYPE);
}

#[test]
fn failover_clusters_aggregate_targets_and_their_route_retries_on_the_next() {
    let mut state = state();
    state.clusters[1].target = Some("local/m1".into());
    state.failover = vec![FailoverCluster {
        name: "failover-2-0-smart".into(),
        clusters: vec!["provider-local".into(), "provider-openai".into()],
        attempts: 2,
    }];
    let gw = Gateway::default();
    let r = resources(&gw, &state, Path::new("/x.wasm"));
    let target = Cluster::decode(r.clusters[1].1.value.as_slice()).unwrap();
    assert!(
        target.outlier_detection.is_none(),
        "every target stays a fallback"
    );
    let endpoint = &target.load_assignment.unwrap().endpoints[0].lb_endpoints[0];
    let meta = &endpoint.metadata.as_ref().unwrap().filter_metadata[METADATA_NAMESPACE];
    assert_eq!(
        meta.fields["target"].kind,
        Some(value::Kind::StringValue("local/m1".into()))
    );
    let aggregate = Cluster::decode(r.clusters[2].1.value.as_slice()).unwrap();
    assert_eq!(
        aggregate.lb_policy,
        cluster::LbPolicy::ClusterProvided as i32
    );
    let Some(cluster::ClusterDiscoveryType::ClusterType(custom)) = aggregate.cluster_discovery_type
    else {
        panic!("custom cluster type")
    };
    assert_eq!(custom.name, "envoy.clusters.aggregate");
    let options = UpstreamHttpOptions::decode(
        aggregate.typed_extension_protocol_options
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            .value
            .as_slice(),
    )
    .unwrap();
    let filters: Vec<&str> = options
        .http_filters
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        filters,
        vec![UPSTREAM_ROOT_ID, "envoy.filters.http.upstream_codec"]
    );

    let routes = RouteConfiguration::decode(r.routes[0].1.value.as_slice()).unwrap();
    let all = &routes.virtual_hosts[0].routes;
    assert_eq!(
        all.len(),
        4,
        "streamed and not, then the default; then the 404"
    );
    assert!(
        all.iter().all(|r| r.typed_per_filter_config.is_empty()),
        "no rate limits: limited keys' requests spend from leases in the filter"
    );
    let routes: Vec<&Route> = all.iter().collect();
    let retry = |i: usize| match &routes[i].action {
        Some(route::Action::Route(a)) => a.retry_policy.clone(),
        _ => None,
    };
    let streamed = retry(0).expect("retries");
    assert_eq!(
        streamed.num_retries.unwrap().value,
        1,
        "one attempt per target"
    );
    assert_eq!(streamed.retriable_status_codes, vec![401, 403, 429]);
    assert_eq!(
        streamed.per_try_idle_timeout.unwrap().seconds,
        i64::try_from(gw.first_byte_timeout_secs).unwrap()
    );
    assert!(retry(1).unwrap().per_try_idle_timeout.is_none());
    assert!(retry(2).is_none(), "a single target is not retried");
}

fn hcm(r: &Resources) -> HttpConnectionManager {
    let listener = Listener::decode(r.listeners[0].1.value.as_slice()).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) =
        &listener.filter_chains[0].filters[0].config_type
    else {
        panic!("typed config")
    };
    HttpConnectionManager::decode(any.value.as_slice()).unwrap()
}

/// Issue 16: what a client sends cannot reach the filter's routing and limit headers nor
/// Envoy's own controls, and slow clients are cut off.
#[test]
fn the_listener_strips_internal_headers_before_any_filter() {
    let r = resources(&Gateway::default(), &state(), Path::new("/x.wasm"));
    let hcm = hcm(&r);
    let early = &hcm.early_header_mutation_extensions[0];
    let mutation =
        EarlyHeaderMutation::decode(early.typed_config.as_ref().unwrap().value.as_slice()).unwrap();
    let prefixes: Vec<String> = mutation
        .mutations
        .iter()
        .filter_map(|m| match &m.action {
            Some(header_mutation::Action::RemoveOnMatch(r)) => {
                match r.key_matcher.as_ref()?.match_pattern.as_ref()? {
                    string_matcher::MatchPattern::Prefix(p) => Some(p.clone()),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    assert_eq!(prefixes, vec!["x-switchyard-", "x-envoy-"]);
    for internal in [CLUSTER_HEADER, STREAM_HEADER, CLIENT_API_HEADER] {
        assert!(internal.starts_with(INTERNAL_HEADER_PREFIX), "{internal}");
    }
    assert_eq!(hcm.use_remote_address, Some(BoolValue { value: true }));
    assert_eq!(hcm.request_headers_timeout.unwrap().seconds, 10);
    assert_eq!(hcm.request_timeout.unwrap().seconds, 60);
    let common = hcm.common_http_protocol_options.unwrap();
    assert_eq!(common.idle_timeout.unwrap().seconds, 60);
    let router = hcm.http_filters.last().unwrap();
    let Some(http_filter::ConfigType::TypedConfig(any)) = &router.config_type else {
        panic!("router config")
    };
    assert!(
        Router::decode(any.value.as_slice())
            .unwrap()
            .suppress_envoy_headers
    );
    // The filter's own replies pass, Envoy's are made JSON, and the last mapper catches all.
    let mappers = hcm.local_reply_config.unwrap().mappers;
    assert!(mappers.len() > 20);
    assert!(mappers
        .iter()
        .skip(1)
        .all(|m| m.body_format_override.is_some()));
}

/// Whatever the cluster header says, a route reaches a provider or failover cluster, or
/// nothing (the JSON 404): never the control plane's cluster.
#[test]
fn no_route_reaches_an_internal_cluster() {
    let mut state = state();
    state.failover = vec![FailoverCluster {
        name: "failover-2-0-smart".into(),
        clusters: vec!["provider-local".into(), "provider-openai".into()],
        attempts: 2,
    }];
    let r = resources(&Gateway::default(), &state, Path::new("/x.wasm"));
    let routes = RouteConfiguration::decode(r.routes[0].1.value.as_slice()).unwrap();
    let all = &routes.virtual_hosts[0].routes;
    for route in all {
        match &route.action {
            Some(route::Action::Route(_)) => {
                let m = route.r#match.as_ref().unwrap();
                let prefix = m
                    .headers
                    .iter()
                    .find(|h| h.name == CLUSTER_HEADER)
                    .and_then(|h| match &h.header_match_specifier {
                        Some(header_matcher::HeaderMatchSpecifier::StringMatch(s)) => {
                            match &s.match_pattern {
                                Some(string_matcher::MatchPattern::Prefix(p)) => Some(p.clone()),
                                _ => None,
                            }
                        }
                        _ => None,
                    })
                    .expect("every routed route checks the cluster header");
                assert!(
                    prefix.starts_with("provider-") || prefix.starts_with("failover-"),
                    "{prefix}"
                );
                assert!(!XDS_CLUSTER.starts_with(&prefix));
                for internal in [CLUSTER_HEADER, "x-forwarded-for", "x-envoy-internal"] {
                    assert!(route
                        .request_headers_to_remove
                        .iter()
                        .any(|h| h == internal));
                }
                // The provider's rate limit headers are the filter's to drop (it writes the
                // answer's headers anyway): none is removed here on every answer.
                assert!(route.response_headers_to_remove.is_empty());
            }
            Some(route::Action::DirectResponse(d)) => assert_eq!(d.status, 404),
            other => panic!("unexpected action {other:?}"),
        }
    }
    assert!(matches!(
        all.last().unwrap().action,
        Some(route::Action::DirectResponse(_))
    ));
}

#[test]
fn a_provider_behind_proxies_gets_one_health_checked_endpoint_per_proxy() {
    let mut state = state();
    state.clusters[0].proxies = vec![
        "10.0.0.8:3128".parse().unwrap(),
        "10.0.0.9:3128".parse().unwrap(),
    ];
    let r = resources(&Gateway::default(), &state, Path::new("/x.wasm"));
    let c = Cluster::decode(r.clusters[0].1.value.as_slice()).unwrap();
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32
        ))
    );
    let ts = c.transport_socket.unwrap();
    assert_eq!(ts.name, "envoy.transport_sockets.http_11_proxy");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = ts.config_type else {
        panic!("typed config")
    };
    let proxy = Http11ProxyUpstreamTransport::decode(any.value.as_slice()).unwrap();
    assert_eq!(
        proxy.transport_socket.unwrap().name,
        "envoy.transport_sockets.tls"
    );
    let endpoints = &c.load_assignment.unwrap().endpoints[0].lb_endpoints;
    assert_eq!(endpoints.len(), 2);
    let meta = endpoints[1].metadata.as_ref().unwrap();
    let address = Address::decode(
        meta.typed_filter_metadata[PROXY_ADDRESS_METADATA]
            .value
            .as_slice(),
    )
    .unwrap();
    assert_eq!(address, socket("10.0.0.9", 3128));
    let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &endpoints[0].host_identifier else {
        panic!("endpoint")
    };
    assert_eq!(
        e.hostname, "api.openai.com",
        "the CONNECT target's host, without a port"
    );
    assert_eq!(c.health_checks.len(), 1);
}

/// A `.so` filter is the native build: Envoy gets its dynamic module filter (kept loaded, with
/// the same JSON configuration), and its bootstrap no wasm records service but the runtime
/// switch that keeps the metrics' names.
#[test]
fn a_native_filter_is_configured_as_a_dynamic_module() {
    use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
    use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
    use envoy_types::pb::google::protobuf::StringValue;

    let gw = Gateway::default();
    let so = Path::new("/opt/libswitchyard_native.so");
    assert!(is_native(so));
    assert!(!is_native(Path::new("/opt/switchyard_filter.wasm")));
    let r = resources(&gw, &state(), so);
    let ext = TypedExtensionConfig::decode(r.extension_configs[0].1.value.as_slice()).unwrap();
    let any = ext.typed_config.expect("typed config");
    assert!(
        any.type_url.ends_with("DynamicModuleFilter"),
        "{}",
        any.type_url
    );
    let filter = DynamicModuleFilter::decode(any.value.as_slice()).unwrap();
    assert_eq!(filter.filter_name, "switchyard");
    let module = filter.dynamic_module_config.expect("module");
    assert!(module.do_not_close);
    let config = StringValue::decode(filter.filter_config.expect("config").value.as_slice())
        .unwrap()
        .value;
    assert!(config.starts_with('{'), "{config}");

    let upstream = XdsUpstream::Unix("/run/xds.sock".into());
    let y = bootstrap_yaml(&gw, &upstream, "n", so);
    assert!(!y.contains("switchyard-records"));
    assert!(y.contains("dynamic_modules_strip_custom_stat_prefix: true"));
    assert!(y.contains("DynamicModuleBootstrapExtension"));
}
