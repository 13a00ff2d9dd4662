//! The upstream filter role of failover clusters, once per attempt: reads the request's plan
//! and the attempt's endpoint from Envoy and leaves every decision to a [`FailoverAttempt`].

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::abi::{self, RequestOut};
use super::plan::{self, PLAN_STATE};
use super::shared::{self, Host};
use switchyard_core::config::{METADATA_NAMESPACE, METADATA_TARGET_FIELD};
use switchyard_core::exchange::failover::FailoverAttempt;
use switchyard_core::exchange::{Reply, Shared as _, Step};

#[derive(Default)]
pub(crate) struct UpstreamAttempt {
    attempt: Option<FailoverAttempt>,
}

/// Answers the attempt with `reply` (Envoy hands it to the downstream role like an answer).
fn refuse(reply: &Reply) -> Action {
    abi::reply(reply, None);
    Action::Pause
}

impl Context for UpstreamAttempt {}

impl HttpContext for UpstreamAttempt {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let token = abi::property(vec![PLAN_STATE])
            .and_then(|t| std::str::from_utf8(&t).ok()?.parse::<u64>().ok());
        let Some(plan) = token.and_then(plan::get) else {
            return Action::Continue;
        };
        let target = abi::property(vec![
            "xds",
            "upstream_host_metadata",
            "filter_metadata",
            METADATA_NAMESPACE,
            METADATA_TARGET_FIELD,
        ]);
        let Some((attempt, step)) = target.and_then(|t| FailoverAttempt::start(plan, &t)) else {
            return Action::Continue;
        };
        self.attempt = Some(attempt);
        match step {
            Step::Pause => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let Some(attempt) = &mut self.attempt else {
            return Action::Continue;
        };
        let headers = || abi::header_block(MapType::HttpRequestHeaders);
        let result = shared::cooldowns(|c| {
            attempt.request_body(end_of_stream, headers, c, &Host, &mut RequestOut { size })
        });
        match result {
            Ok(Step::Pause) => Action::Pause,
            Ok(Step::Reply(reply)) => refuse(&reply),
            // Only the downstream role asks for leases.
            Ok(Step::Continue | Step::Lease(_)) => Action::Continue,
            Err(e) => {
                // This target cannot take the request (an endpoint its provider lacks): the
                // attempt answers with the reason, as the downstream role would have.
                log::info!("switchyard: failover attempt not prepared: {}", e.message);
                refuse(&attempt.reply(&e))
            }
        }
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        match self
            .attempt
            .as_mut()
            .and_then(FailoverAttempt::request_trailers)
        {
            Some(reply) => refuse(&reply),
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(attempt) = &self.attempt else {
            return Action::Continue;
        };
        let status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
            .unwrap_or(0);
        shared::observe(attempt.index(), &attempt.answered(status), Host.now_secs());
        Action::Continue
    }
}
