//! Provider, target and failover clusters.

use std::path::Path;

use envoy_types::pb::envoy::config::cluster::v3::{circuit_breakers, CircuitBreakers};
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TransportSocket,
};
use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig as AggregateConfig;
use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::http_11_proxy::v3::Http11ProxyUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options as upstream_http, HttpProtocolOptions as UpstreamHttpOptions,
};
use envoy_types::pb::envoy::extensions::wasm::v3::{plugin_config, FailurePolicy, PluginConfig};
use envoy_types::pb::google::protobuf::{BoolValue, StringValue, UInt32Value};
use envoy_types::util::pack_any;
use switchyard_contract::names::UPSTREAM_ROOT_ID;

use super::endpoints;
use super::filter::{native_filter, vm_config};
use super::seconds;
use crate::config::Gateway;
use crate::snapshot::{FailoverCluster, GatewayState, ProviderCluster};

/// The most Envoy reads from a provider connection before the answer moves on (the provider
/// clusters' buffer limit): one chunk of an answer is never larger.
pub(super) const UPSTREAM_BUFFER_BYTES: usize = 1 << 20;

/// Provider and target clusters, then the failover clusters over them.
pub(super) fn clusters(gw: &Gateway, state: &GatewayState, wasm_path: &Path) -> Vec<Cluster> {
    state
        .clusters
        .iter()
        .map(|c| provider_cluster(gw, c))
        .chain(
            state
                .failover
                .iter()
                .map(|f| failover_cluster(gw, f, wasm_path)),
        )
        .collect()
}

pub(super) fn provider_cluster(gw: &Gateway, c: &ProviderCluster) -> Cluster {
    let u = &c.upstream;
    let discovery = if u.is_ip() || !c.pinned.is_empty() {
        cluster::DiscoveryType::Static
    } else if c.proxies.is_empty() {
        cluster::DiscoveryType::LogicalDns
    } else {
        // One endpoint per proxy (LOGICAL_DNS takes only one).
        cluster::DiscoveryType::StrictDns
    };
    let tls = u.tls.then(|| TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
            UpstreamTlsContext {
                sni: u.host.clone(),
                common_tls_context: Some(CommonTlsContext {
                    alpn_protocols: vec!["http/1.1".into()],
                    validation_context_type: Some(
                        common_tls_context::ValidationContextType::ValidationContext(
                            CertificateValidationContext {
                                trusted_ca: Some(DataSource {
                                    specifier: Some(data_source::Specifier::Filename(
                                        gw.ca_file.display().to_string(),
                                    )),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                        ),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))),
    });
    // Through egress proxies: Envoy connects to the endpoint's proxy, sends `CONNECT
    // host:port`, and speaks TLS (or plain HTTP) to the provider inside the tunnel.
    let transport_socket = if c.proxies.is_empty() {
        tls
    } else {
        let inner = tls.unwrap_or_else(|| TransportSocket {
            name: "envoy.transport_sockets.raw_buffer".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                RawBuffer::default(),
            ))),
        });
        Some(TransportSocket {
            name: "envoy.transport_sockets.http_11_proxy".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                Http11ProxyUpstreamTransport {
                    transport_socket: Some(inner),
                    ..Default::default()
                },
            ))),
        })
    };
    Cluster {
        name: c.name.clone(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        connect_timeout: Some(seconds(5)),
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(endpoints::load_assignment(c)),
        transport_socket,
        health_checks: endpoints::health_checks(c),
        circuit_breakers: Some(generous_limits()),
        per_connection_buffer_limit_bytes: Some(UInt32Value {
            value: UPSTREAM_BUFFER_BYTES as u32,
        }),
        // No outlier detection: an ejected endpoint is not even tried as a fallback, and a
        // target ejected while failing stays out after it has recovered (ejections grow to
        // minutes); when the one target Envoy still trusts fails too, requests fail that a
        // recovered target could have served (seen in `make chaos`). The filter's cooldowns
        // steer the first choice instead, and every target stays a fallback.
        ..Default::default()
    }
}

/// Envoy's default circuit breakers (1,024 requests, 3 concurrent retries per cluster) suit
/// short RPCs, not answers that stream for minutes: a busy gateway would refuse requests and,
/// worse, skip failovers. These bounds are far above what one Envoy can carry.
pub(super) fn generous_limits() -> CircuitBreakers {
    let many = |n: u32| Some(UInt32Value { value: n });
    CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            max_connections: many(100_000),
            max_pending_requests: many(100_000),
            max_requests: many(100_000),
            max_retries: many(100_000),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An aggregate cluster over target clusters, with the filter's upstream role as its upstream
/// HTTP filter: Envoy runs it per attempt, on the aggregate (not on the member clusters).
pub(super) fn failover_cluster(gw: &Gateway, f: &FailoverCluster, wasm_path: &Path) -> Cluster {
    let upstream_filter = if super::is_native(wasm_path) {
        pack_any(native_filter(wasm_path, UPSTREAM_ROOT_ID, "{}".into()))
    } else {
        pack_any(Wasm {
            config: Some(PluginConfig {
                name: UPSTREAM_ROOT_ID.into(),
                root_id: UPSTREAM_ROOT_ID.into(),
                configuration: Some(pack_any(StringValue { value: "{}".into() })),
                failure_policy: FailurePolicy::FailReload as i32,
                // The request body is rewritten before the attempt's headers leave.
                allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
                vm: Some(plugin_config::Vm::VmConfig(vm_config(wasm_path))),
                ..Default::default()
            }),
        })
    };
    let options = UpstreamHttpOptions {
        upstream_protocol_options: Some(
            envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                upstream_http::ExplicitHttpConfig {
                    protocol_config: Some(
                        upstream_http::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                            Default::default(),
                        ),
                    ),
                },
            ),
        ),
        http_filters: vec![
            HttpFilter {
                name: UPSTREAM_ROOT_ID.into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(upstream_filter)),
                ..Default::default()
            },
            HttpFilter {
                name: "envoy.filters.http.upstream_codec".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                    UpstreamCodec::default(),
                ))),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let _ = gw;
    Cluster {
        name: f.name.clone(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::ClusterType(
            cluster::CustomClusterType {
                name: "envoy.clusters.aggregate".into(),
                typed_config: Some(pack_any(AggregateConfig {
                    clusters: f.clusters.clone(),
                })),
            },
        )),
        connect_timeout: Some(seconds(5)),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        circuit_breakers: Some(generous_limits()),
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            pack_any(options),
        )]
        .into(),
        ..Default::default()
    }
}
