//! Names and type URLs of the resources the builder makes, as Envoy and the cache refer to
//! them.

pub const LISTENER_NAME: &str = "switchyard";
pub const ROUTE_NAME: &str = "switchyard";
/// The ECDS resource name: equal to the HTTP filter's name in the listener.
pub const FILTER_NAME: &str = "switchyard";

pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ECDS_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub(super) const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub(super) const NATIVE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
