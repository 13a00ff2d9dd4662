//! The gateway's listener: its HTTP connection manager, the filter chain (the filter, the
//! router) and what it removes from clients' requests before any filter runs.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{header_mutation, HeaderMutation};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, DataSource, ExtensionConfigSource, SubstitutionFormatString, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::core::v3::{
    http_protocol_options, Http2ProtocolOptions, HttpProtocolOptions,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stdout_access_log, StdoutAccessLog,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::http::early_header_mutation::header_mutation::v3::HeaderMutation as EarlyHeaderMutation;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use envoy_types::util::pack_any;
use switchyard_contract::names::INTERNAL_HEADER_PREFIX;
use switchyard_contract::record::USAGE_FILTER_STATE;

use super::clusters::UPSTREAM_BUFFER_BYTES;
use super::local_replies::local_replies;
use super::names::{FILTER_NAME, LISTENER_NAME, NATIVE_TYPE, ROUTE_NAME, WASM_TYPE};
use super::routes::route_config;
use super::{ads, seconds, socket};
use crate::config::Gateway;
use crate::snapshot::GatewayState;

/// The access-log line: Envoy's view of the request plus the filter's usage record.
pub(super) fn access_log_format() -> String {
    format!(
        "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\" %RESPONSE_CODE% %RESPONSE_FLAGS% cluster=%UPSTREAM_CLUSTER% attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% dur=%DURATION%ms ttfb=%RESPONSE_DURATION%ms usage=%FILTER_STATE(wasm.{USAGE_FILTER_STATE}:PLAIN)%\n"
    )
}

pub(super) fn listener(gw: &Gateway, delivery: Delivery, state: &GatewayState) -> Listener {
    let (filter_config, route_specifier) = match delivery {
        Delivery::Ads => (
            http_filter::ConfigType::ConfigDiscovery(ExtensionConfigSource {
                config_source: Some(ads()),
                type_urls: vec![WASM_TYPE.into(), NATIVE_TYPE.into()],
                ..Default::default()
            }),
            http_connection_manager::RouteSpecifier::Rds(Rds {
                config_source: Some(ads()),
                route_config_name: ROUTE_NAME.into(),
            }),
        ),
        Delivery::Inline(filter) => (
            http_filter::ConfigType::TypedConfig(*filter),
            http_connection_manager::RouteSpecifier::RouteConfig(route_config(gw, state)),
        ),
    };
    let access_log = if gw.access_log {
        vec![AccessLog {
            name: "envoy.access_loggers.stdout".into(),
            config_type: Some(access_log::ConfigType::TypedConfig(pack_any(StdoutAccessLog {
                access_log_format: Some(stdout_access_log::AccessLogFormat::LogFormat(
                    SubstitutionFormatString {
                        format: Some(
                            envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format::TextFormatSource(
                                DataSource {
                                    specifier: Some(data_source::Specifier::InlineString(
                                        access_log_format(),
                                    )),
                                    ..Default::default()
                                },
                            ),
                        ),
                        ..Default::default()
                    },
                )),
            }))),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "switchyard".into(),
        route_specifier: Some(route_specifier),
        // Before any filter and before the route is chosen, whatever the framing (trailers,
        // HTTP/2, pipelining): a client's `x-switchyard-*` headers (routing, limits) and
        // `x-envoy-*` headers (Envoy's own retry, timeout and tracing controls) are removed, so
        // those the filter and Envoy act on can only be their own.
        early_header_mutation_extensions: vec![strip_internal_headers()],
        // The client is the peer (or what `trusted_hops` proxies in front say it is), never a
        // forwarded-for header it wrote itself.
        use_remote_address: Some(BoolValue { value: true }),
        xff_num_trusted_hops: gw.trusted_hops,
        // Slow clients hold no resources for long: headers, then the whole request, must
        // arrive in time; idle connections are closed.
        request_headers_timeout: Some(seconds(gw.request_headers_timeout_secs.max(1))),
        request_timeout: Some(seconds(gw.request_receive_timeout_secs.max(1))),
        common_http_protocol_options: Some(HttpProtocolOptions {
            idle_timeout: Some(seconds(gw.idle_timeout_secs.max(1))),
            max_headers_count: Some(UInt32Value { value: 100 }),
            // `x_switchyard_cluster` is not our header, but some servers read it as if it were.
            headers_with_underscores_action:
                http_protocol_options::HeadersWithUnderscoresAction::DropHeader as i32,
            ..Default::default()
        }),
        http2_protocol_options: Some(Http2ProtocolOptions {
            max_concurrent_streams: Some(UInt32Value {
                value: gw.max_concurrent_streams.clamp(1, 1024),
            }),
            // Envoy's defaults (256 MiB) let one connection push far more than one request.
            initial_stream_window_size: Some(UInt32Value { value: 1 << 20 }),
            initial_connection_window_size: Some(UInt32Value { value: 2 << 20 }),
            ..Default::default()
        }),
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        http_filters: vec![
            HttpFilter {
                name: FILTER_NAME.into(),
                config_type: Some(filter_config),
                ..Default::default()
            },
            HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(Router {
                    // No `x-envoy-*` headers to providers (timeouts, attempt counts) nor to
                    // clients (upstream service time).
                    suppress_envoy_headers: true,
                    ..Default::default()
                }))),
                ..Default::default()
            },
        ],
        access_log,
        local_reply_config: Some(local_replies()),
        // LLM answers stream for minutes (and a reasoning model's whole answer may be silent
        // that long); the route's timeout bounds a request as a whole.
        stream_idle_timeout: Some(seconds(gw.stream_idle_timeout_secs.max(1))),
        ..Default::default()
    };
    Listener {
        name: LISTENER_NAME.into(),
        address: Some(socket(&gw.listen.ip().to_string(), gw.listen.port())),
        // The filter buffers request bodies up to its own limit and answers 413 in JSON;
        // Envoy's buffer must not give up first. A translated answer passes through it one
        // upstream read at a time (the filter keeps what it needs and drains it), and those
        // reads are bounded by the provider clusters' buffer limit.
        per_connection_buffer_limit_bytes: Some(UInt32Value {
            value: u32::try_from(gw.max_body_bytes.max(UPSTREAM_BUFFER_BYTES) + 64 * 1024)
                .unwrap_or(u32::MAX),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The early header mutation that removes every internal header a client sent (see the
/// listener).
pub(super) fn strip_internal_headers() -> TypedExtensionConfig {
    let prefix = |p: &str| HeaderMutation {
        action: Some(header_mutation::Action::RemoveOnMatch(
            header_mutation::RemoveOnMatch {
                key_matcher: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Prefix(p.into())),
                    ..Default::default()
                }),
            },
        )),
    };
    TypedExtensionConfig {
        name: "envoy.http.early_header_mutation.header_mutation".into(),
        typed_config: Some(pack_any(EarlyHeaderMutation {
            mutations: vec![prefix(INTERNAL_HEADER_PREFIX), prefix("x-envoy-")],
        })),
    }
}

/// How the listener gets the filter's configuration and the route.
pub(super) enum Delivery {
    /// Over ADS, by name: ECDS and RDS (the running gateway).
    Ads,
    /// Inline, with this filter config (a static config for `envoy --mode validate`).
    Inline(Box<envoy_types::pb::google::protobuf::Any>),
}
