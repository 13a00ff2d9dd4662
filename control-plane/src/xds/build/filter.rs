//! The filter's configuration as Envoy receives it over ECDS (or inline), and the VM it runs in.

use std::path::Path;

use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, data_source, AsyncDataSource, DataSource,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, EnvironmentVariables, FailurePolicy, PluginConfig, VmConfig,
};
use envoy_types::pb::google::protobuf::{BoolValue, StringValue};
use envoy_types::util::pack_any;

use super::names::FILTER_NAME;
use crate::config::Gateway;
use crate::snapshot::GatewayState;

pub(super) fn wasm_filter(gw: &Gateway, state: &GatewayState, wasm_path: &Path) -> Wasm {
    // Envoy's own access log shows each request's record when it is on.
    let mut filter = state.filter.clone();
    filter.record_state = gw.access_log;
    filter.max_response_bytes = gw.max_response_bytes.max(64 << 10);
    filter.lease_timeout_ms = gw.limits_timeout_ms.clamp(1, 10_000);
    let configuration = serde_json::to_string(&filter).unwrap_or_default();
    Wasm {
        config: Some(PluginConfig {
            name: FILTER_NAME.into(),
            root_id: FILTER_NAME.into(),
            configuration: Some(pack_any(StringValue {
                value: configuration,
            })),
            // A trap rebuilds the VM instead of failing every later request on the worker.
            failure_policy: FailurePolicy::FailReload as i32,
            // Required to choose the route after reading the body (notes/envoy-facts.md §1).
            allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
            vm: Some(plugin_config::Vm::VmConfig(vm_config(wasm_path))),
            ..Default::default()
        }),
    }
}

/// The VM both roles of the filter run in: equal settings, so Envoy gives them one VM per worker
/// and they share thread-local state (the failover plans).
pub(super) fn vm_config(wasm_path: &Path) -> VmConfig {
    VmConfig {
        vm_id: FILTER_NAME.into(),
        runtime: "envoy.wasm.runtime.v8".into(),
        code: Some(AsyncDataSource {
            specifier: Some(async_data_source::Specifier::Local(DataSource {
                specifier: Some(data_source::Specifier::Filename(
                    wasm_path.display().to_string(),
                )),
                ..Default::default()
            })),
        }),
        // The data plane key that opens sealed provider keys, from Envoy's own environment
        // (never in its configuration).
        environment_variables: Some(EnvironmentVariables {
            host_env_keys: vec![switchyard_contract::sealed::KEY_ENV.into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}
