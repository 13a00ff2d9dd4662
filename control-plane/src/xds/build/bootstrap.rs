//! What Envoy starts from: the bootstrap naming the control plane and its certificates, and the
//! whole snapshot as one static bootstrap for `envoy --mode validate`.

use std::path::Path;

use envoy_types::pb::envoy::config::bootstrap::v3::{bootstrap, Bootstrap};

use super::clusters::clusters;
use super::filter::http_filter;
use super::listener::{listener, Delivery};
use super::names::FILTER_NAME;
use super::socket;
use crate::config::Gateway;
use crate::names::XDS_CLUSTER;
use crate::snapshot::GatewayState;
use switchyard_contract::names::RECORDS_ROOT_ID;

/// How Envoy reaches the control plane's internal port.
#[derive(Debug, Clone)]
pub enum XdsUpstream {
    /// TCP with mutual TLS: Envoy presents the node's certificate and verifies the server
    /// against the CA bundle, both read from `certs` (see [`certificate_sds_yaml`]).
    Tls {
        addr: std::net::SocketAddr,
        certs: std::path::PathBuf,
    },
    /// A Unix socket on the same host.
    Unix(std::path::PathBuf),
}

/// The SDS file naming the node's certificate and key, in the certificates directory.
pub const CLIENT_SDS_FILE: &str = "xds-client.yaml";
/// The SDS file naming the CA bundle, in the certificates directory.
pub const CA_SDS_FILE: &str = "xds-ca.yaml";
const CLIENT_SECRET: &str = "switchyard_xds_client";
const CA_SECRET: &str = "switchyard_xds_ca";

/// The SDS file for the node's certificate and key. Envoy watches the directory: replacing
/// this file (by rename) with one naming new files takes a renewal without a restart, and both
/// files change at once.
pub fn certificate_sds_yaml(cert: &Path, key: &Path) -> String {
    format!(
        r#"resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: {CLIENT_SECRET}
  tls_certificate:
    certificate_chain: {{filename: "{cert}"}}
    private_key: {{filename: "{key}"}}
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

/// The SDS file for the CA bundle the server certificate is verified with.
pub fn ca_sds_yaml(bundle: &Path) -> String {
    format!(
        r#"resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: {CA_SECRET}
  validation_context:
    trusted_ca: {{filename: "{bundle}"}}
"#,
        bundle = bundle.display(),
    )
}

/// The transport socket of the control plane's cluster: TLS 1.3, the node's certificate and the
/// CA bundle from SDS files Envoy watches, the server checked for its fixed name.
fn xds_tls_yaml(certs: &Path) -> String {
    let dir = certs.display();
    format!(
        r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {server}
        common_tls_context:
          tls_params: {{tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3}}
          alpn_protocols: [h2]
          tls_certificate_sds_secret_configs:
          - name: {CLIENT_SECRET}
            sds_config:
              path_config_source: {{path: "{dir}/{CLIENT_SDS_FILE}", watched_directory: {{path: "{dir}"}}}}
              resource_api_version: V3
          combined_validation_context:
            default_validation_context:
              match_typed_subject_alt_names:
              - {{san_type: DNS, matcher: {{exact: {server}}}}}
            validation_context_sds_secret_config:
              name: {CA_SECRET}
              sds_config:
                path_config_source: {{path: "{dir}/{CA_SDS_FILE}", watched_directory: {{path: "{dir}"}}}}
                resource_api_version: V3
"#,
        server = crate::pki::SERVER_NAME,
    )
}

/// Envoy's overload manager: a cap on downstream connections (the admin listener exempt), and
/// memory actions from a fixed heap size, mildest first: shrink the heap, reset the streams
/// holding the most buffered memory (those above 1 MiB, more of them as the heap fills),
/// disable keep-alive, stop accepting connections, then answer new requests 503.
fn overload_yaml(gw: &Gateway) -> String {
    let mut out = String::new();
    if gw.max_connections == 0 && gw.max_heap_bytes == 0 {
        return out;
    }
    out.push_str("overload_manager:\n  refresh_interval: 0.25s\n");
    if gw.max_heap_bytes > 0 {
        out.push_str("  buffer_factory_config: {minimum_account_to_track_power_of_two: 20}\n");
    }
    out.push_str("  resource_monitors:\n");
    if gw.max_connections > 0 {
        out.push_str(&format!(
            r#"  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: {}
"#,
            gw.max_connections
        ));
    }
    if gw.max_heap_bytes > 0 {
        out.push_str(&format!(
            r#"  - name: envoy.resource_monitors.fixed_heap
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
      max_heap_size_bytes: {}
  actions:
  - name: envoy.overload_actions.shrink_heap
    triggers: [{{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.90}}}}]
  - name: envoy.overload_actions.reset_high_memory_stream
    triggers: [{{name: envoy.resource_monitors.fixed_heap, scaled: {{scaling_threshold: 0.85, saturation_threshold: 0.95}}}}]
  - name: envoy.overload_actions.disable_http_keepalive
    triggers: [{{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.92}}}}]
  - name: envoy.overload_actions.stop_accepting_connections
    triggers: [{{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.95}}}}]
  - name: envoy.overload_actions.stop_accepting_requests
    triggers: [{{name: envoy.resource_monitors.fixed_heap, threshold: {{value: 0.98}}}}]
"#,
            gw.max_heap_bytes
        ));
    }
    out
}

/// The native filter's bootstrap extension, which owns its counters for Envoy's lifetime, the
/// runtime switch that exports its metrics under their own names (no `envoy_` prefix and
/// namespace), as the wasm filter's are, and the stats tags of its histograms (see
/// [`stats_tags_yaml`]).
fn native_yaml(module: &Path) -> String {
    format!(
        r#"{tags}# The native filter's counters: defined once per Envoy, exported under their own names.
bootstrap_extensions:
- name: envoy.bootstrap.dynamic_modules
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
    dynamic_module_config:
      module: {{local: {{filename: "{module}"}}}}
      do_not_close: true
    extension_name: {FILTER_NAME}
layered_runtime:
  layers:
  - name: static
    static_layer:
      envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true
"#,
        tags = stats_tags_yaml(),
        module = module.display(),
    )
}

/// The stats tags that turn the labels the filter's histograms carry in their names
/// (`;provider=...`, both builds) into Prometheus labels.
fn stats_tags_yaml() -> String {
    let tags: String = switchyard_contract::names::METRIC_TAGS
        .iter()
        .map(|(label, part)| format!("  - {{tag_name: {label}, regex: \"(;{part}=([^;]*))\"}}\n"))
        .collect();
    format!(
        "# The filter's histograms carry their labels in their names (`;provider=...`): these make\n\
         # them Prometheus labels.\nstats_config:\n  stats_tags:\n{tags}"
    )
}

/// What the wasm build needs: the stats tags and its records service.
fn wasm_yaml(wasm: &Path) -> String {
    format!("{}{}", stats_tags_yaml(), records_service_yaml(wasm))
}

/// The filter's records service: a singleton in its own VM on Envoy's main thread, to which the
/// workers hand their request records and which sends them to the control plane in batches
/// (signing a batch and the call never hold up a worker). The data plane key signs them.
fn records_service_yaml(wasm: &Path) -> String {
    format!(
        r#"# The filter's records service (on the main thread): sends the workers' request records.
bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: {RECORDS_ROOT_ID}
      root_id: {RECORDS_ROOT_ID}
      vm_config:
        vm_id: {RECORDS_ROOT_ID}
        runtime: envoy.wasm.runtime.v8
        code: {{local: {{filename: "{wasm}"}}}}
        environment_variables: {{host_env_keys: [{key_env}]}}
"#,
        wasm = wasm.display(),
        key_env = switchyard_contract::sealed::KEY_ENV,
    )
}

/// The bootstrap Envoy starts from: node id, admin, the overload manager, the records service
/// (the filter at `wasm`), the control plane as its only static cluster (mutual TLS or a Unix
/// socket), and ADS for everything else.
pub fn bootstrap_yaml(gw: &Gateway, upstream: &XdsUpstream, node_id: &str, wasm: &Path) -> String {
    let (address, tls) = match upstream {
        XdsUpstream::Tls { addr, certs } => (
            format!(
                "socket_address: {{address: {}, port_value: {}}}",
                addr.ip(),
                addr.port()
            ),
            xds_tls_yaml(certs),
        ),
        XdsUpstream::Unix(path) => (
            format!("pipe: {{path: \"{}\"}}", path.display()),
            String::new(),
        ),
    };
    format!(
        r#"# Envoy bootstrap for Switchyard: everything else arrives over ADS from the control plane.
# Generated by `switchyard bootstrap`; edit the control plane's config, not this file.
node:
  id: {node_id}
  cluster: switchyard
admin:
  address:
    socket_address: {{address: {admin_ip}, port_value: {admin_port}}}
  ignore_global_conn_limit: true
{overload}{filter}dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
    - envoy_grpc: {{cluster_name: {XDS_CLUSTER}}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: {XDS_CLUSTER}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options:
            connection_keepalive: {{interval: 10s, timeout: 5s}}
{tls}    load_assignment:
      cluster_name: {XDS_CLUSTER}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              {address}
"#,
        admin_ip = gw.admin.ip(),
        admin_port = gw.admin.port(),
        overload = overload_yaml(gw),
        filter = if super::is_native(wasm) {
            native_yaml(wasm)
        } else {
            wasm_yaml(wasm)
        },
    )
}

/// The whole snapshot as one static bootstrap (filter config inline), so that
/// `envoy --mode validate` can check exactly what the control plane would push.
pub fn static_bootstrap(gw: &Gateway, state: &GatewayState, wasm_path: &Path) -> Bootstrap {
    use envoy_types::pb::envoy::config::bootstrap::v3::Admin;
    use envoy_types::pb::envoy::config::core::v3::Node;
    let hcm_listener = listener(
        gw,
        Delivery::Inline(Box::new(http_filter(gw, state, wasm_path))),
        state,
    );
    Bootstrap {
        node: Some(Node {
            id: "validate".into(),
            cluster: "switchyard".into(),
            ..Default::default()
        }),
        admin: Some(Admin {
            address: Some(socket(&gw.admin.ip().to_string(), gw.admin.port())),
            ..Default::default()
        }),
        static_resources: Some(bootstrap::StaticResources {
            listeners: vec![hcm_listener],
            clusters: clusters(gw, state, wasm_path),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_names_the_ports_from_config() {
        let gw = Gateway::default();
        let upstream = XdsUpstream::Tls {
            addr: "127.0.0.1:18000".parse().unwrap(),
            certs: "/etc/switchyard/certs".into(),
        };
        let y = bootstrap_yaml(&gw, &upstream, "node-1", Path::new("/f.wasm"));
        assert!(y.contains("id: node-1"));
        assert!(y.contains("port_value: 9901"));
        assert!(y.contains("port_value: 18000"));
        assert!(y.contains("sni: switchyard-xds"));
        assert!(y.contains("path: \"/etc/switchyard/certs/xds-client.yaml\""));
        assert!(y.contains("max_active_downstream_connections: 10000"));
        assert!(y.contains("max_heap_size_bytes: 1073741824"));
        // The records service runs the same filter, as a singleton of its own.
        assert!(y.contains("singleton: true"));
        assert!(y.contains("root_id: switchyard-records"));
        assert!(y.contains("filename: \"/f.wasm\""));
        let y = bootstrap_yaml(
            &gw,
            &XdsUpstream::Unix("/run/xds.sock".into()),
            "node-1",
            Path::new("/f.wasm"),
        );
        assert!(y.contains("pipe: {path: \"/run/xds.sock\"}"));
        assert!(!y.contains("transport_socket"));
        let off = Gateway {
            max_connections: 0,
            max_heap_bytes: 0,
            ..Gateway::default()
        };
        assert!(!bootstrap_yaml(&off, &upstream, "n", Path::new("/f.wasm"))
            .contains("overload_manager"));
    }
}
