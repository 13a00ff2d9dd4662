//! Envoy's own local replies as JSON in the client's API shape (OpenAI's or Anthropic's).

use envoy_types::pb::envoy::config::accesslog::v3::{
    access_log_filter, comparison_filter, AccessLogFilter, AndFilter, ComparisonFilter,
    HeaderFilter, ResponseFlagFilter, StatusCodeFilter,
};
use envoy_types::pb::envoy::config::core::v3::RuntimeUInt32;
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource, SubstitutionFormatString};
use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher};
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter as CelFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    LocalReplyConfig, ResponseMapper,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;
use switchyard_contract::names::{CLIENT_API_HEADER, LOCAL_REPLY_DETAILS};

/// Every local reply is JSON in the client's API shape. The filter's own replies (response code
/// details [`LOCAL_REPLY_DETAILS`], limits refusals among them) are already, and pass as they
/// are; Envoy's own replies are mapped: upstream failures (connect failure, reset,
/// timeout) by their response flags, everything else (malformed HTTP, slow or oversized
/// requests, overload, no route) by status. Anthropic clients (requests with
/// `anthropic-version`) get Anthropic's shape, the rest OpenAI's. The first mapper that matches
/// wins.
pub(super) fn local_replies() -> LocalReplyConfig {
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
            cel(&format!("response.code_details == '{LOCAL_REPLY_DETAILS}'")),
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
