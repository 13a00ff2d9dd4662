//! Domain -> Envoy protobuf, one file per resource: the listener (`listener`, with its local
//! replies in `local_replies`), the route (`routes`), provider and failover clusters (`clusters`,
//! their endpoints in `endpoints`), the filter's ECDS config (`filter`), and the bootstrap Envoy
//! starts from (`bootstrap`). Resource names and type URLs are in `names`.

mod bootstrap;
mod clusters;
mod endpoints;
mod filter;
mod listener;
mod local_replies;
mod names;
mod routes;

use std::path::Path;

use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion,
    ConfigSource, SocketAddress, TypedExtensionConfig,
};
use envoy_types::pb::google::protobuf::{value, Any, Duration, Value};
use envoy_types::util::pack_any;

pub use bootstrap::{
    bootstrap_yaml, ca_sds_yaml, certificate_sds_yaml, static_bootstrap, XdsUpstream, CA_SDS_FILE,
    CLIENT_SDS_FILE,
};
pub use names::*;

use crate::config::Gateway;
use crate::snapshot::GatewayState;
use clusters::clusters;
use filter::http_filter;
pub use filter::is_native;
use listener::{listener, Delivery};
use routes::route_config;

/// Every resource of one snapshot, by type, each as (name, packed resource).
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub listeners: Vec<(String, Any)>,
    pub routes: Vec<(String, Any)>,
    pub clusters: Vec<(String, Any)>,
    pub extension_configs: Vec<(String, Any)>,
}

/// The snapshot's resources as the gateway receives them over ADS.
pub fn resources(gw: &Gateway, state: &GatewayState, wasm_path: &Path) -> Resources {
    let filter = http_filter(gw, state, wasm_path);
    Resources {
        listeners: vec![(
            LISTENER_NAME.into(),
            pack_any(listener(gw, Delivery::Ads, state)),
        )],
        routes: vec![(ROUTE_NAME.into(), pack_any(route_config(gw, state)))],
        clusters: clusters(gw, state, wasm_path)
            .into_iter()
            .map(|c| (c.name.clone(), pack_any(c)))
            .collect(),
        extension_configs: vec![(
            FILTER_NAME.into(),
            pack_any(TypedExtensionConfig {
                name: FILTER_NAME.into(),
                typed_config: Some(filter),
            }),
        )],
    }
}

pub(super) fn socket(addr: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

pub(super) fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub(super) fn seconds(s: u64) -> Duration {
    Duration {
        seconds: i64::try_from(s).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

pub(super) fn text(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.into())),
    }
}

#[cfg(test)]
mod tests;
