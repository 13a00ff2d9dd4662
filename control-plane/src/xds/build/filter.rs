//! The filter's configuration as Envoy receives it over ECDS (or inline), and the VM it runs in.

use std::path::Path;

use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, data_source, AsyncDataSource, DataSource,
};
use envoy_types::pb::envoy::extensions::dynamic_modules::v3::DynamicModuleConfig;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, EnvironmentVariables, FailurePolicy, PluginConfig, VmConfig,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue, StringValue};
use envoy_types::util::pack_any;

use super::names::FILTER_NAME;
use crate::config::Gateway;
use crate::snapshot::GatewayState;

/// Whether the filter at `path` is the native build (an Envoy dynamic module, `.so`) rather
/// than the wasm one.
pub fn is_native(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "so")
}

/// The downstream filter's configuration as Envoy receives it: the dynamic module's or the
/// wasm filter's, as the filter at `path` is.
pub(super) fn http_filter(gw: &Gateway, state: &GatewayState, path: &Path) -> Any {
    let configuration = filter_configuration(gw, state);
    if is_native(path) {
        pack_any(native_filter(path, FILTER_NAME, configuration))
    } else {
        pack_any(wasm_filter(configuration, path))
    }
}

/// The filter's JSON configuration.
fn filter_configuration(gw: &Gateway, state: &GatewayState) -> String {
    // Envoy's own access log shows each request's record when it is on.
    let mut filter = state.filter.clone();
    filter.record_state = gw.access_log;
    filter.max_response_bytes = gw.max_response_bytes.max(64 << 10);
    filter.lease_timeout_ms = gw.limits_timeout_ms.clamp(1, 10_000);
    serde_json::to_string(&filter).unwrap_or_default()
}

/// The native filter (one role of it, by name) with its JSON configuration.
pub(super) fn native_filter(path: &Path, name: &str, configuration: String) -> DynamicModuleFilter {
    DynamicModuleFilter {
        dynamic_module_config: Some(DynamicModuleConfig {
            module: Some(AsyncDataSource {
                specifier: Some(async_data_source::Specifier::Local(DataSource {
                    specifier: Some(data_source::Specifier::Filename(path.display().to_string())),
                    ..Default::default()
                })),
            }),
            // Loaded once and kept: its process-wide state (shared cooldowns, the request
            // records on their way, the ticker thread) outlives each configuration.
            do_not_close: true,
            // The default namespace (`dynamicmodulescustom`), which Prometheus exports without
            // a prefix: the metrics keep the wasm filter's names.
            ..Default::default()
        }),
        filter_name: name.into(),
        filter_config: Some(pack_any(StringValue {
            value: configuration,
        })),
        terminal_filter: false,
    }
}

fn wasm_filter(configuration: String, wasm_path: &Path) -> Wasm {
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
