//! A provider cluster's endpoints: the provider's host, its vetted addresses, or one per egress
//! proxy (health-checked), each naming the target an attempt reached.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::{health_check, HealthCheck, Metadata};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::{Struct, UInt32Value};
use envoy_types::util::pack_any;
use switchyard_contract::names::{METADATA_NAMESPACE, METADATA_TARGET_FIELD};

use super::{seconds, socket, text};
use crate::snapshot::ProviderCluster;

/// Where Envoy's HTTP/1.1 proxy transport socket reads an endpoint's proxy from.
pub(super) const PROXY_ADDRESS_METADATA: &str = "envoy.http11_proxy_transport_socket.proxy_address";

/// Vetted addresses (see `crate::ssrf`) stand for the host; proxies are the operator's only.
pub(super) fn load_assignment(c: &ProviderCluster) -> ClusterLoadAssignment {
    let lb_endpoints = if !c.pinned.is_empty() {
        c.pinned
            .iter()
            .map(|a| endpoint(c, Some(a), None))
            .collect()
    } else if c.proxies.is_empty() {
        vec![endpoint(c, None, None)]
    } else {
        c.proxies
            .iter()
            .map(|p| endpoint(c, None, Some(p)))
            .collect()
    };
    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One endpoint: at `address` (else the provider's host), through `proxy` if any.
fn endpoint(
    c: &ProviderCluster,
    address: Option<&SocketAddr>,
    proxy: Option<&SocketAddr>,
) -> LbEndpoint {
    let u = &c.upstream;
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(match address {
                Some(a) => socket(&a.ip().to_string(), a.port()),
                None => socket(&u.host, u.port),
            }),
            // Used as `Host` by the route's auto_host_rewrite. Behind a proxy it is also the
            // CONNECT target's host (Envoy adds the port), so it must not carry the port.
            hostname: if proxy.is_some() {
                u.host.clone()
            } else {
                u.authority()
            },
            ..Default::default()
        })),
        metadata: (c.target.is_some() || proxy.is_some()).then(|| Metadata {
            // Read by the upstream filter: which target this attempt reached.
            filter_metadata: c
                .target
                .iter()
                .map(|t| {
                    (
                        METADATA_NAMESPACE.to_string(),
                        Struct {
                            fields: [(METADATA_TARGET_FIELD.to_string(), text(t))].into(),
                        },
                    )
                })
                .collect(),
            typed_filter_metadata: proxy
                .map(|p| {
                    (
                        PROXY_ADDRESS_METADATA.to_string(),
                        pack_any(socket(&p.ip().to_string(), p.port())),
                    )
                })
                .into_iter()
                .collect(),
        }),
        ..Default::default()
    }
}

/// A proxy that cannot be reached is taken out of the pool until it can again.
pub(super) fn health_checks(c: &ProviderCluster) -> Vec<HealthCheck> {
    if c.proxies.is_empty() {
        return Vec::new();
    }
    vec![HealthCheck {
        timeout: Some(seconds(2)),
        interval: Some(seconds(5)),
        unhealthy_threshold: Some(UInt32Value { value: 1 }),
        healthy_threshold: Some(UInt32Value { value: 1 }),
        health_checker: Some(health_check::HealthChecker::TcpHealthCheck(
            health_check::TcpHealthCheck::default(),
        )),
        ..Default::default()
    }]
}
