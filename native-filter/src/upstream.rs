//! The upstream filter role of failover clusters, once per attempt: reads the request's plan
//! and the attempt's endpoint from Envoy and leaves every decision to a [`FailoverAttempt`].

use std::sync::Arc;

use switchyard_core::config::{METADATA_NAMESPACE, METADATA_TARGET_FIELD};
use switchyard_core::exchange::failover::FailoverAttempt;
use switchyard_core::exchange::{Shared as _, Step};
use switchyard_core::headers::HeaderBlock;

use crate::ffi::{self, Body, HeaderMap, Stream};
use crate::shared::{self, Host};
use crate::{plan, reply, state_key, Action, RequestOut, Settings};

pub(crate) struct UpstreamAttempt {
    attempt: Option<FailoverAttempt>,
    settings: Option<Arc<Settings>>,
}

impl UpstreamAttempt {
    pub(crate) fn new() -> Self {
        UpstreamAttempt {
            attempt: None,
            settings: None,
        }
    }

    pub(crate) fn request_headers(&mut self, stream: Stream) -> Action {
        let token = stream
            .filter_state(&state_key(plan::PLAN_STATE))
            .and_then(|t| std::str::from_utf8(&t).ok()?.parse::<u64>().ok());
        let Some((plan, settings)) = token.and_then(plan::get) else {
            return Action::Continue;
        };
        let target = stream.host_metadata(METADATA_NAMESPACE, METADATA_TARGET_FIELD);
        let Some((attempt, step)) = target.and_then(|t| FailoverAttempt::start(plan, &t)) else {
            return Action::Continue;
        };
        self.attempt = Some(attempt);
        self.settings = Some(settings);
        match step {
            Step::Pause => Action::Pause,
            _ => Action::Continue,
        }
    }

    pub(crate) fn request_body(&mut self, stream: Stream, end_of_stream: bool) -> Action {
        let (Some(attempt), Some(settings)) = (&mut self.attempt, &self.settings) else {
            return Action::Continue;
        };
        let headers = || stream.with_headers(HeaderMap::Request, HeaderBlock::from_byte_pairs);
        let result = shared::cooldowns(&settings.target_keys, Host.now_ns(), |c| {
            attempt.request_body(
                end_of_stream,
                headers,
                c,
                &Host,
                &mut RequestOut {
                    stream,
                    buffered: Body::BufferedRequest,
                    received: Body::ReceivedRequest,
                },
            )
        });
        match result {
            Ok(Step::Pause) => Action::Pause,
            Ok(Step::Reply(r)) => {
                reply(stream, &r, None);
                Action::Replied
            }
            // Only the downstream role asks for leases.
            Ok(Step::Continue | Step::Lease(_)) => Action::Continue,
            Err(e) => {
                // This target cannot take the request (an endpoint its provider lacks): the
                // attempt answers with the reason, as the downstream role would have.
                ffi::log(
                    ffi::LOG_INFO,
                    &format!("switchyard: failover attempt not prepared: {}", e.message),
                );
                reply(stream, &attempt.reply(&e), None);
                Action::Replied
            }
        }
    }

    pub(crate) fn request_trailers(&mut self, stream: Stream) -> Action {
        match self
            .attempt
            .as_mut()
            .and_then(FailoverAttempt::request_trailers)
        {
            Some(r) => {
                reply(stream, &r, None);
                Action::Replied
            }
            None => Action::Continue,
        }
    }

    pub(crate) fn response_headers(&mut self, stream: Stream) -> Action {
        let Some(attempt) = &self.attempt else {
            return Action::Continue;
        };
        let status = stream
            .header(HeaderMap::Response, ":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
            .unwrap_or(0);
        shared::observe(
            attempt.index(),
            &attempt.answered(status),
            Host.now_secs(),
            stream,
        );
        Action::Continue
    }
}
