//! Domain -> Envoy protobuf: the listener, route, provider clusters and the filter's ECDS config,
//! plus the bootstrap Envoy starts from.

use std::path::Path;

use envoy_types::pb::envoy::config::accesslog::v3::{
    access_log, access_log_filter, comparison_filter, AccessLog, AccessLogFilter, AndFilter,
    ComparisonFilter, HeaderFilter, ResponseFlagFilter, StatusCodeFilter,
};
use envoy_types::pb::envoy::config::bootstrap::v3::{bootstrap, Bootstrap};
use envoy_types::pb::envoy::config::cluster::v3::{circuit_breakers, CircuitBreakers};
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{header_mutation, HeaderMutation};
use envoy_types::pb::envoy::config::core::v3::{
    address, async_data_source, config_source, data_source, socket_address, transport_socket,
    Address, AggregatedConfigSource, ApiVersion, AsyncDataSource, ConfigSource, DataSource,
    ExtensionConfigSource, SocketAddress, SubstitutionFormatString, TransportSocket,
    TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::core::v3::{grpc_service, GrpcService};
use envoy_types::pb::envoy::config::core::v3::{health_check, HealthCheck, Metadata};
use envoy_types::pb::envoy::config::core::v3::{
    http_protocol_options, Http2ProtocolOptions, HttpProtocolOptions, RuntimeUInt32,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::ratelimit::v3::RateLimitServiceConfig;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, route, route_action, route_match, DirectResponseAction, HeaderMatcher, Route,
    RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::config::route::v3::{rate_limit, RateLimit};
use envoy_types::pb::envoy::config::route::v3::{retry_policy, RetryPolicy};
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter as CelFilter;
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stdout_access_log, StdoutAccessLog,
};
use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig as AggregateConfig;
use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::{
    RateLimit as RateLimitFilter, RateLimitPerRoute,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, LocalReplyConfig, Rds,
    ResponseMapper,
};
use envoy_types::pb::envoy::extensions::http::early_header_mutation::header_mutation::v3::HeaderMutation as EarlyHeaderMutation;
use envoy_types::pb::envoy::extensions::rate_limit_descriptors::expr::v3::{
    descriptor as expr_descriptor, Descriptor as ExprDescriptor,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::http_11_proxy::v3::Http11ProxyUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options as upstream_http, HttpProtocolOptions as UpstreamHttpOptions,
};
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, EnvironmentVariables, FailurePolicy, PluginConfig, VmConfig,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{
    value, Any, BoolValue, Duration, StringValue, Struct, UInt32Value, Value,
};
use envoy_types::util::pack_any;
use switchyard_filter::config::{CHARGE_STATE, COST_STATE, LIMITED_HEADER};
use switchyard_filter::config::{
    CLIENT_API_HEADER, CLUSTER_HEADER, INTERNAL_HEADER_PREFIX, LOCAL_REPLY_DETAILS,
    METADATA_NAMESPACE, RATE_LIMIT_HEADERS, STREAM_HEADER, UPSTREAM_ROOT_ID,
};

use crate::config::Gateway;
use crate::snapshot::{failover_prefix, FailoverCluster, GatewayState, ProviderCluster};

pub const LISTENER_NAME: &str = "switchyard";
pub const ROUTE_NAME: &str = "switchyard";
/// The ECDS resource name: equal to the HTTP filter's name in the listener.
pub const FILTER_NAME: &str = "switchyard";
pub const XDS_CLUSTER: &str = "switchyard_xds";
/// Where Envoy's HTTP/1.1 proxy transport socket reads an endpoint's proxy from.
const PROXY_ADDRESS_METADATA: &str = "envoy.http11_proxy_transport_socket.proxy_address";

pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ECDS_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Every resource of one snapshot, by type, each as (name, packed resource).
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub listeners: Vec<(String, Any)>,
    pub routes: Vec<(String, Any)>,
    pub clusters: Vec<(String, Any)>,
    pub extension_configs: Vec<(String, Any)>,
}

/// How the listener gets the filter's configuration and the route.
enum Delivery {
    /// Over ADS, by name: ECDS and RDS (the running gateway).
    Ads,
    /// Inline, with this filter config (a static config for `envoy --mode validate`).
    Inline(Box<Wasm>),
}

pub fn resources(gw: &Gateway, state: &GatewayState, wasm_path: &Path) -> Resources {
    let wasm = wasm_filter(gw, state, wasm_path);
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
                typed_config: Some(pack_any(wasm)),
            }),
        )],
    }
}

fn socket(addr: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn seconds(s: u64) -> Duration {
    Duration {
        seconds: i64::try_from(s).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// The access-log line: Envoy's view of the request plus the filter's usage record.
const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\" %RESPONSE_CODE% %RESPONSE_FLAGS% cluster=%UPSTREAM_CLUSTER% attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% dur=%DURATION%ms ttfb=%RESPONSE_DURATION%ms usage=%FILTER_STATE(wasm.switchyard_usage:PLAIN)%\n";

/// Provider and target clusters, then the failover clusters over them.
fn clusters(gw: &Gateway, state: &GatewayState, wasm_path: &Path) -> Vec<Cluster> {
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

fn listener(gw: &Gateway, delivery: Delivery, state: &GatewayState) -> Listener {
    let (filter_config, route_specifier) = match delivery {
        Delivery::Ads => (
            http_filter::ConfigType::ConfigDiscovery(ExtensionConfigSource {
                config_source: Some(ads()),
                type_urls: vec![WASM_TYPE.into()],
                ..Default::default()
            }),
            http_connection_manager::RouteSpecifier::Rds(Rds {
                config_source: Some(ads()),
                route_config_name: ROUTE_NAME.into(),
            }),
        ),
        Delivery::Inline(wasm) => (
            http_filter::ConfigType::TypedConfig(pack_any(*wasm)),
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
                                        ACCESS_LOG_FORMAT.into(),
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
            // Global limits of limited keys (the control plane is the rate limit service; see
            // `crate::limits`). Only requests whose filter state asks (the virtual host's
            // rate limits) call it.
            HttpFilter {
                name: "envoy.filters.http.ratelimit".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                    rate_limit_filter(gw),
                ))),
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

/// The most Envoy reads from a provider connection before the answer moves on (the provider
/// clusters' buffer limit): one chunk of an answer is never larger.
const UPSTREAM_BUFFER_BYTES: usize = 1 << 20;

/// The early header mutation that removes every internal header a client sent (see the
/// listener).
fn strip_internal_headers() -> TypedExtensionConfig {
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

/// Client request headers that never reach a provider: its cookies and proxy credentials, where
/// it connects from, the encodings it accepts (an answer must arrive uncompressed: its usage is
/// read and it may be translated), and account headers of its own SDK's environment (the
/// provider gets the gateway's credentials, not a client's organisation). The internal headers
/// the filter writes for the route go too.
const REQUEST_HEADERS_NOT_FORWARDED: &[&str] = &[
    CLUSTER_HEADER,
    STREAM_HEADER,
    LIMITED_HEADER,
    CLIENT_API_HEADER,
    "cookie",
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
    "accept-encoding",
    "te",
    "openai-organization",
    "openai-project",
    // Added by Envoy itself at the edge.
    "x-envoy-external-address",
    "x-envoy-internal",
];

/// The rate limit filter: asks the control plane, allows requests when it cannot be reached
/// in time (limits must not take the gateway down with the control plane).
fn rate_limit_filter(gw: &Gateway) -> RateLimitFilter {
    RateLimitFilter {
        domain: RATE_LIMIT_DOMAIN.into(),
        timeout: Some(envoy_types::pb::google::protobuf::Duration {
            seconds: 0,
            nanos: i32::try_from(gw.limits_timeout_ms.min(10_000) * 1_000_000).unwrap_or(0),
        }),
        failure_mode_deny: false,
        rate_limit_service: Some(RateLimitServiceConfig {
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: XDS_CLUSTER.into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
        }),
        // The service adds OpenAI's `x-ratelimit-*` headers itself.
        disable_x_envoy_ratelimited_header: true,
        ..Default::default()
    }
}

/// The rate limit service's domain.
pub const RATE_LIMIT_DOMAIN: &str = "switchyard";

/// A descriptor from the filter's state: `descriptor_key = "<the state's text>"`, absent when the
/// filter did not set it (keys without limits: no call at all).
fn state_descriptor(descriptor_key: &str, state: &str) -> rate_limit::Action {
    rate_limit::Action {
        action_specifier: Some(rate_limit::action::ActionSpecifier::Extension(
            TypedExtensionConfig {
                name: "envoy.rate_limit_descriptors.expr".into(),
                typed_config: Some(pack_any(ExprDescriptor {
                    descriptor_key: descriptor_key.into(),
                    skip_if_error: true,
                    expr_specifier: Some(expr_descriptor::ExprSpecifier::Text(format!(
                        "filter_state['wasm.{state}']"
                    ))),
                })),
            },
        )),
    }
}

/// Admission before the request goes upstream (`admit = "{key} {api}"`, from the header the
/// filter set); tokens and cost charged when the stream is done (`charge = "{key} {request}
/// {tokens}"` from filter state, the cost as its hits).
fn rate_limits() -> Vec<RateLimit> {
    vec![
        RateLimit {
            actions: vec![rate_limit::Action {
                action_specifier: Some(rate_limit::action::ActionSpecifier::RequestHeaders(
                    rate_limit::action::RequestHeaders {
                        header_name: LIMITED_HEADER.into(),
                        descriptor_key: "admit".into(),
                        skip_if_absent: true,
                    },
                )),
            }],
            ..Default::default()
        },
        RateLimit {
            actions: vec![state_descriptor("charge", CHARGE_STATE)],
            hits_addend: Some(rate_limit::HitsAddend {
                number: None,
                format: format!("%FILTER_STATE(wasm.{COST_STATE}:PLAIN)%"),
                ..Default::default()
            }),
            apply_on_stream_done: true,
            ..Default::default()
        },
    ]
}

/// Every local reply is JSON in the client's API shape. The filter's own replies (response code
/// details [`LOCAL_REPLY_DETAILS`]) and the rate limit service's refusals are already, and pass
/// as they are; Envoy's own replies are mapped: upstream failures (connect failure, reset,
/// timeout) by their response flags, everything else (malformed HTTP, slow or oversized
/// requests, overload, no route) by status. Anthropic clients (requests with
/// `anthropic-version`) get Anthropic's shape, the rest OpenAI's. The first mapper that matches
/// wins.
fn local_replies() -> LocalReplyConfig {
    /// A constant JSON body. As text, not as a `Struct`: a `Struct`'s fields are a hash map
    /// whose encoding order changes from build to build, and so would the listener's version.
    fn json_body(body: serde_json::Value) -> SubstitutionFormatString {
        SubstitutionFormatString {
            format: Some(
                envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format::TextFormatSource(
                    DataSource {
                        specifier: Some(data_source::Specifier::InlineString(body.to_string())),
                        ..Default::default()
                    },
                ),
            ),
            content_type: "application/json".into(),
            ..Default::default()
        }
    }
    /// `{"error":{"message","type","param","code"}}`
    fn openai_body(message: &str, kind: &str, code: &str) -> SubstitutionFormatString {
        json_body(serde_json::json!({
            "error": {"message": message, "type": kind, "param": null, "code": code}
        }))
    }
    /// `{"type":"error","error":{"type","message"}}`
    fn anthropic_body(message: &str, kind: &str) -> SubstitutionFormatString {
        json_body(serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": message}
        }))
    }
    fn filter(specifier: access_log_filter::FilterSpecifier) -> AccessLogFilter {
        AccessLogFilter {
            filter_specifier: Some(specifier),
        }
    }
    fn cel(expression: &str) -> AccessLogFilter {
        filter(access_log_filter::FilterSpecifier::ExtensionFilter(
            envoy_types::pb::envoy::config::accesslog::v3::ExtensionFilter {
                name: "envoy.access_loggers.extension_filters.cel".into(),
                config_type: Some(
                    envoy_types::pb::envoy::config::accesslog::v3::extension_filter::ConfigType::TypedConfig(
                        pack_any(CelFilter {
                            expression: expression.into(),
                            ..Default::default()
                        }),
                    ),
                ),
            },
        ))
    }
    fn on_flags(flags: &[&str]) -> AccessLogFilter {
        filter(access_log_filter::FilterSpecifier::ResponseFlagFilter(
            ResponseFlagFilter {
                flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            },
        ))
    }
    fn on_status(status: u32) -> AccessLogFilter {
        filter(access_log_filter::FilterSpecifier::StatusCodeFilter(
            StatusCodeFilter {
                comparison: Some(ComparisonFilter {
                    op: comparison_filter::Op::Eq as i32,
                    value: Some(RuntimeUInt32 {
                        default_value: status,
                        runtime_key: "switchyard.local_reply.status".into(),
                    }),
                }),
            },
        ))
    }
    /// Requests from Anthropic clients. `:path` cannot tell (the filter has rewritten it to the
    /// provider's by now); `anthropic-version`, which every Anthropic SDK sends and the filter
    /// keeps, can.
    fn from_anthropic_client(and: AccessLogFilter) -> AccessLogFilter {
        let present = |name: &str, invert_match: bool| {
            filter(access_log_filter::FilterSpecifier::HeaderFilter(
                HeaderFilter {
                    header: Some(HeaderMatcher {
                        name: name.into(),
                        header_match_specifier: Some(
                            header_matcher::HeaderMatchSpecifier::PresentMatch(true),
                        ),
                        invert_match,
                        ..Default::default()
                    }),
                },
            ))
        };
        filter(access_log_filter::FilterSpecifier::AndFilter(AndFilter {
            // The filter marks OpenAI clients' requests to Anthropic providers, which carry
            // `anthropic-version` too.
            filters: vec![
                present("anthropic-version", false),
                present(CLIENT_API_HEADER, true),
                and,
            ],
        }))
    }
    let mapper = |filter, body, status: Option<u32>| ResponseMapper {
        filter: Some(filter),
        status_code: status.map(|value| UInt32Value { value }),
        body_format_override: body,
        ..Default::default()
    };
    let mut mappers = vec![
        // Already in the client's shape.
        mapper(
            cel(&format!(
                "response.code_details == '{LOCAL_REPLY_DETAILS}' || response.code_details == 'request_rate_limited'"
            )),
            None,
            None,
        ),
    ];
    const TIMEOUT: &[&str] = &["UT"];
    const UNREACHABLE: &[&str] = &["UF", "UH", "UO", "URX", "UC", "NC"];
    const TIMEOUT_TEXT: &str = "The provider did not answer in time.";
    const UNREACHABLE_TEXT: &str = "The provider could not be reached.";
    for (flags, text, code) in [
        (TIMEOUT, TIMEOUT_TEXT, "provider_timeout"),
        (UNREACHABLE, UNREACHABLE_TEXT, "provider_unreachable"),
    ] {
        mappers.push(mapper(
            from_anthropic_client(on_flags(flags)),
            Some(anthropic_body(text, "api_error")),
            None,
        ));
        mappers.push(mapper(
            on_flags(flags),
            Some(openai_body(text, "api_error", code)),
            None,
        ));
    }
    // An answer too large for Envoy's buffers is the provider's doing, not a gateway fault.
    let too_large = "The provider's answer is too large.";
    mappers.push(mapper(
        from_anthropic_client(cel("response.code_details == 'response_payload_too_large'")),
        Some(anthropic_body(too_large, "api_error")),
        Some(502),
    ));
    mappers.push(mapper(
        cel("response.code_details == 'response_payload_too_large'"),
        Some(openai_body(
            too_large,
            "api_error",
            "provider_response_too_large",
        )),
        Some(502),
    ));
    // (status, OpenAI code, Anthropic type, message)
    const BY_STATUS: &[(u32, &str, &str, &str)] = &[
        (
            400,
            "invalid_request",
            "invalid_request_error",
            "The request could not be read as HTTP.",
        ),
        (404, "unknown_path", "not_found_error", "Unknown API path."),
        (
            408,
            "request_timeout",
            "timeout_error",
            "The request did not arrive in time.",
        ),
        (
            413,
            "request_too_large",
            "request_too_large",
            "The request is larger than the gateway accepts.",
        ),
        (
            414,
            "request_too_large",
            "request_too_large",
            "The request's path is too long.",
        ),
        (
            429,
            "rate_limit_exceeded",
            "rate_limit_error",
            "Too many requests; try again shortly.",
        ),
        (
            431,
            "request_headers_too_large",
            "invalid_request_error",
            "The request's headers are too large.",
        ),
        (
            500,
            "gateway_error",
            "api_error",
            "The gateway could not handle the request.",
        ),
        (
            502,
            "provider_error",
            "api_error",
            "The provider's answer could not be read.",
        ),
        (
            503,
            "overloaded",
            "overloaded_error",
            "The gateway is overloaded; try again shortly.",
        ),
        (504, "provider_timeout", "timeout_error", TIMEOUT_TEXT),
    ];
    for (status, code, anthropic_type, text) in BY_STATUS {
        let kind = if *status >= 500 {
            "api_error"
        } else {
            "invalid_request_error"
        };
        mappers.push(mapper(
            from_anthropic_client(on_status(*status)),
            Some(anthropic_body(text, anthropic_type)),
            None,
        ));
        mappers.push(mapper(
            on_status(*status),
            Some(openai_body(text, kind, code)),
            None,
        ));
    }
    // Anything else Envoy might say.
    let other = "The gateway could not handle the request.";
    mappers.push(mapper(
        from_anthropic_client(cel("true")),
        Some(anthropic_body(other, "api_error")),
        None,
    ));
    mappers.push(mapper(
        cel("true"),
        Some(openai_body(other, "api_error", "gateway_error")),
        None,
    ));
    LocalReplyConfig {
        mappers,
        ..Default::default()
    }
}

fn header(name: &str, specifier: header_matcher::HeaderMatchSpecifier) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

/// The route: to the cluster the filter wrote in [`CLUSTER_HEADER`]. Failover clusters (one route
/// per target count, so that each model gets one attempt per target) retry a failed attempt on
/// the next target: 5xx, 429, connect failure, reset; for streams also a provider silent for
/// longer than `first_byte_timeout_secs`.
fn route_config(gw: &Gateway, state: &GatewayState) -> RouteConfiguration {
    let action = |retry_policy: Option<RetryPolicy>| {
        route::Action::Route(RouteAction {
            // Written by the filter after it has read the request; a client's value is
            // always overwritten or removed by the filter first.
            cluster_specifier: Some(route_action::ClusterSpecifier::ClusterHeader(
                CLUSTER_HEADER.into(),
            )),
            timeout: Some(seconds(gw.request_timeout_secs)),
            // `Host` comes from the chosen endpoint's hostname (the provider's authority),
            // so the filter does not have to write `:authority` on every request.
            host_rewrite_specifier: Some(route_action::HostRewriteSpecifier::AutoHostRewrite(
                BoolValue { value: true },
            )),
            retry_policy,
            ..Default::default()
        })
    };
    // Every route twice: first for limited keys' requests (the filter marks them), with the
    // rate limits, then for the rest, without (the rate limit filter then does nothing).
    let limited = header(
        LIMITED_HEADER,
        header_matcher::HeaderMatchSpecifier::PresentMatch(true),
    );
    let mut routes = Vec::new();
    let mut route = |headers: Vec<HeaderMatcher>, retry_policy: Option<RetryPolicy>| {
        let base = Route {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                headers,
                ..Default::default()
            }),
            action: Some(action(retry_policy)),
            request_headers_to_remove: REQUEST_HEADERS_NOT_FORWARDED
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            // The provider's rate limits for the gateway's key go as the answer arrives,
            // before the rate limit filter adds the client's own under the same names.
            response_headers_to_remove: RATE_LIMIT_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            ..Default::default()
        };
        let mut with_limits = base.clone();
        if let Some(m) = with_limits.r#match.as_mut() {
            m.headers.push(limited.clone());
        }
        // As the rate limit filter's own per-route configuration: only that form evaluates
        // `hits_addend` formats (the route-level `rate_limits` ignore them).
        with_limits.typed_per_filter_config = [(
            "envoy.filters.http.ratelimit".to_string(),
            pack_any(RateLimitPerRoute {
                rate_limits: rate_limits(),
                ..Default::default()
            }),
        )]
        .into();
        routes.push(with_limits);
        routes.push(base);
    };
    let mut counts: Vec<usize> = state.failover.iter().map(|f| f.attempts).collect();
    counts.sort_unstable();
    counts.dedup();
    for n in counts {
        let attempts = n.min(gw.failover_attempts.max(1) as usize);
        let to_failover = header(
            CLUSTER_HEADER,
            header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Prefix(failover_prefix(n))),
                ..Default::default()
            }),
        );
        let streaming = header(
            STREAM_HEADER,
            header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        );
        let first_byte =
            (gw.first_byte_timeout_secs > 0).then(|| seconds(gw.first_byte_timeout_secs));
        route(
            vec![to_failover.clone(), streaming],
            Some(retry_policy(attempts, first_byte)),
        );
        let mut answer = retry_policy(attempts, None);
        // A whole answer may take minutes: only an explicit `attempt_timeout_secs` bounds it.
        answer.per_try_timeout =
            (gw.attempt_timeout_secs > 0).then(|| seconds(gw.attempt_timeout_secs));
        route(vec![to_failover], Some(answer));
    }
    // Single-target models go to their provider's cluster; nothing else is routed: a request
    // the filter did not send on (whatever headers it carries) meets the JSON 404 below and can
    // never reach an internal cluster such as the control plane's.
    route(
        vec![header(
            CLUSTER_HEADER,
            header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Prefix(
                    crate::snapshot::cluster_name(""),
                )),
                ..Default::default()
            }),
        )],
        None,
    );
    routes.push(Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 404,
            ..Default::default()
        })),
        ..Default::default()
    });
    RouteConfiguration {
        name: ROUTE_NAME.into(),
        virtual_hosts: vec![VirtualHost {
            name: "switchyard".into(),
            domains: vec!["*".into()],
            routes,
            // A retry replays the request body, which Envoy keeps only up to this limit.
            request_body_buffer_limit: Some(envoy_types::pb::google::protobuf::UInt64Value {
                value: gw.max_body_bytes as u64 + 64 * 1024,
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One attempt per target: `previous_priorities` moves each retry to the aggregate's next
/// cluster; no backoff worth the name, since the next attempt goes elsewhere.
fn retry_policy(attempts: usize, idle: Option<Duration>) -> RetryPolicy {
    RetryPolicy {
        retry_on: "5xx,reset,connect-failure,refused-stream,retriable-status-codes".into(),
        num_retries: Some(UInt32Value {
            value: u32::try_from(attempts.saturating_sub(1)).unwrap_or(0),
        }),
        // A provider key refused or rate limited: the next attempt uses another key (or target).
        retriable_status_codes: vec![401, 403, 429],
        per_try_idle_timeout: idle,
        retry_priority: Some(retry_policy::RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".into(),
            config_type: Some(retry_policy::retry_priority::ConfigType::TypedConfig(
                pack_any(PreviousPrioritiesConfig {
                    update_frequency: 1,
                }),
            )),
        }),
        // Behind a pool of egress proxies, a retry goes through another one.
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                pack_any(PreviousHostsPredicate::default()),
            )),
        }],
        host_selection_retry_max_attempts: 3,
        retry_back_off: Some(retry_policy::RetryBackOff {
            base_interval: Some(Duration {
                seconds: 0,
                nanos: 1_000_000,
            }),
            max_interval: Some(Duration {
                seconds: 0,
                nanos: 10_000_000,
            }),
        }),
        ..Default::default()
    }
}

fn provider_cluster(gw: &Gateway, c: &ProviderCluster) -> Cluster {
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
    let endpoint = |address: Option<&std::net::SocketAddr>,
                    proxy: Option<&std::net::SocketAddr>| LbEndpoint {
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
                            fields: [("target".to_string(), text(t))].into(),
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
    };
    // Vetted addresses (see `crate::ssrf`) stand for the host; proxies are the operator's only.
    let lb_endpoints = if !c.pinned.is_empty() {
        c.pinned.iter().map(|a| endpoint(Some(a), None)).collect()
    } else if c.proxies.is_empty() {
        vec![endpoint(None, None)]
    } else {
        c.proxies.iter().map(|p| endpoint(None, Some(p))).collect()
    };
    // A proxy that cannot be reached is taken out of the pool until it can again.
    let health_checks = if c.proxies.is_empty() {
        Vec::new()
    } else {
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
    };
    Cluster {
        name: c.name.clone(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        connect_timeout: Some(seconds(5)),
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: c.name.clone(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket,
        health_checks,
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
fn generous_limits() -> CircuitBreakers {
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

fn text(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.into())),
    }
}

/// An aggregate cluster over target clusters, with the filter's upstream role as its upstream
/// HTTP filter: Envoy runs it per attempt, on the aggregate (not on the member clusters).
fn failover_cluster(gw: &Gateway, f: &FailoverCluster, wasm_path: &Path) -> Cluster {
    let upstream_filter = Wasm {
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
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                    upstream_filter,
                ))),
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

fn wasm_filter(gw: &Gateway, state: &GatewayState, wasm_path: &Path) -> Wasm {
    // Envoy's own access log shows each request's record when it is on.
    let mut filter = state.filter.clone();
    filter.record_state = gw.access_log;
    filter.max_response_bytes = gw.max_response_bytes.max(64 << 10);
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
fn vm_config(wasm_path: &Path) -> VmConfig {
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
            host_env_keys: vec![switchyard_filter::sealed::KEY_ENV.into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

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

/// The bootstrap Envoy starts from: node id, admin, the overload manager, the control plane as
/// its only static cluster (mutual TLS or a Unix socket), and ADS for everything else.
pub fn bootstrap_yaml(gw: &Gateway, upstream: &XdsUpstream, node_id: &str) -> String {
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
{overload}# The filter's histograms carry their labels in their names (`;provider=...`): these make
# them Prometheus labels.
stats_config:
  stats_tags:
{stats_tags}dynamic_resources:
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
        stats_tags = switchyard_filter::config::METRIC_TAGS
            .iter()
            .map(|(label, part)| format!(
                "  - {{tag_name: {label}, regex: \"(;{part}=([^;]*))\"}}\n"
            ))
            .collect::<String>(),
    )
}

/// The whole snapshot as one static bootstrap (filter config inline), so that
/// `envoy --mode validate` can check exactly what the control plane would push.
pub fn static_bootstrap(gw: &Gateway, state: &GatewayState, wasm_path: &Path) -> Bootstrap {
    use envoy_types::pb::envoy::config::bootstrap::v3::Admin;
    use envoy_types::pb::envoy::config::core::v3::Node;
    let hcm_listener = listener(
        gw,
        Delivery::Inline(Box::new(wasm_filter(gw, state, wasm_path))),
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
            crate::snapshot::compute(
                std::slice::from_ref(&provider),
                &[],
                &[],
                &[],
                1024,
                &crate::health::Figures::default(),
                &crate::snapshot::Pins::new(),
                &crate::snapshot::Catalog::default(),
            )
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
    use crate::domain::Upstream;
    use prost::Message as _;

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
    fn bootstrap_names_the_ports_from_config() {
        let gw = Gateway::default();
        let upstream = XdsUpstream::Tls {
            addr: "127.0.0.1:18000".parse().unwrap(),
            certs: "/etc/switchyard/certs".into(),
        };
        let y = bootstrap_yaml(&gw, &upstream, "node-1");
        assert!(y.contains("id: node-1"));
        assert!(y.contains("port_value: 9901"));
        assert!(y.contains("port_value: 18000"));
        assert!(y.contains("sni: switchyard-xds"));
        assert!(y.contains("path: \"/etc/switchyard/certs/xds-client.yaml\""));
        assert!(y.contains("max_active_downstream_connections: 10000"));
        assert!(y.contains("max_heap_size_bytes: 1073741824"));
        let y = bootstrap_yaml(&gw, &XdsUpstream::Unix("/run/xds.sock".into()), "node-1");
        assert!(y.contains("pipe: {path: \"/run/xds.sock\"}"));
        assert!(!y.contains("transport_socket"));
        let off = Gateway {
            max_connections: 0,
            max_heap_bytes: 0,
            ..Gateway::default()
        };
        assert!(!bootstrap_yaml(&off, &upstream, "n").contains("overload_manager"));
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
        let Some(cluster::ClusterDiscoveryType::ClusterType(custom)) =
            aggregate.cluster_discovery_type
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
            7,
            "streamed and not, then the default; each for limited keys first; then the 404"
        );
        for pair in all[..6].chunks(2) {
            let (limited, plain) = (&pair[0], &pair[1]);
            assert_eq!(limited.action, plain.action);
            let headers = |r: &Route| r.r#match.as_ref().unwrap().headers.len();
            assert_eq!(
                headers(limited),
                headers(plain) + 1,
                "and the limited header"
            );
            assert!(limited
                .typed_per_filter_config
                .contains_key("envoy.filters.http.ratelimit"));
            assert!(
                plain.typed_per_filter_config.is_empty(),
                "no limits, no calls"
            );
        }
        let routes: Vec<&Route> = all.iter().skip(1).step_by(2).collect();
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
            EarlyHeaderMutation::decode(early.typed_config.as_ref().unwrap().value.as_slice())
                .unwrap();
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
        for internal in [
            CLUSTER_HEADER,
            STREAM_HEADER,
            LIMITED_HEADER,
            CLIENT_API_HEADER,
        ] {
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
                                    Some(string_matcher::MatchPattern::Prefix(p)) => {
                                        Some(p.clone())
                                    }
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
                    assert!(route
                        .request_headers_to_remove
                        .iter()
                        .any(|h| h == "accept-encoding"));
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
}
