//! The route configuration: to the cluster the filter chose, with failover retries.

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, route, route_action, route_match, DirectResponseAction, HeaderMatcher, Route,
    RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::config::route::v3::{retry_policy, RetryPolicy};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{BoolValue, Duration, UInt32Value};
use envoy_types::util::pack_any;
use switchyard_contract::names::{CLIENT_API_HEADER, CLUSTER_HEADER, STREAM_HEADER};

use super::names::ROUTE_NAME;
use super::seconds;
use crate::config::Gateway;
use crate::names::{cluster_name, failover_prefix};
use crate::snapshot::GatewayState;

/// Request headers the route removes before a provider gets the request: the internal headers
/// the filter writes for the route (they must stay until the route is chosen), and those Envoy
/// itself adds at the edge after a client's own (`use_remote_address`: where the client connects
/// from). The client's own headers that never reach a provider (cookies, proxy credentials, its
/// SDK's account headers...) the filter leaves out as it writes the request (see
/// `switchyard_core::headers`): removing a name here costs Envoy a lookup on every request,
/// present or not (about 650 instructions each), where the filter looks once at what it holds.
pub(super) const REQUEST_HEADERS_NOT_FORWARDED: &[&str] = &[
    CLUSTER_HEADER,
    STREAM_HEADER,
    CLIENT_API_HEADER,
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-envoy-external-address",
    "x-envoy-internal",
];

pub(super) fn header(name: &str, specifier: header_matcher::HeaderMatchSpecifier) -> HeaderMatcher {
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
pub(super) fn route_config(gw: &Gateway, state: &GatewayState) -> RouteConfiguration {
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
    let mut routes = Vec::new();
    let mut route = |headers: Vec<HeaderMatcher>, retry_policy: Option<RetryPolicy>| {
        routes.push(Route {
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
            ..Default::default()
        });
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
                match_pattern: Some(string_matcher::MatchPattern::Prefix(cluster_name(""))),
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
pub(super) fn retry_policy(attempts: usize, idle: Option<Duration>) -> RetryPolicy {
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
