//! The upstream HTTP filter of failover clusters: Envoy runs it once per attempt, after it has
//! chosen the attempt's endpoint. An attempt at another target than the one the downstream filter
//! prepared the request for is prepared here again, from the client's body, for that target's
//! provider; every attempt's answer counts towards its target's cooldown.

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::abi;
use super::plan::{self, Shared, Tried};
use crate::attempt::Attempt;
use crate::config::{CLIENT_API_HEADER, METADATA_NAMESPACE};
use crate::error::FilterError;
use crate::headers::{self, Change};
use crate::request::TopLevel;

/// Filter state naming the request's plan (see [`plan`]), set by the downstream filter.
pub(crate) const PLAN_STATE: &str = "switchyard_plan";

#[derive(Default)]
pub(crate) struct UpstreamAttempt {
    plan: Option<Shared>,
    /// This attempt's position in the plan's attempts.
    attempt: usize,
    /// The target (position in the model's targets) to prepare the request for, when the
    /// request does not already carry its headers and body.
    prepare_for: Option<usize>,
}

impl UpstreamAttempt {
    fn start(&mut self) -> Option<Action> {
        let token = hostcalls::get_property(vec![PLAN_STATE]).ok().flatten()?;
        let token: u64 = std::str::from_utf8(&token).ok()?.parse().ok()?;
        let shared = plan::get(token)?;
        let name = hostcalls::get_property(vec![
            "xds",
            "upstream_host_metadata",
            "filter_metadata",
            METADATA_NAMESPACE,
            "target",
        ])
        .ok()
        .flatten()?;
        let mut p = shared.borrow_mut();
        let entry = p.index.targets(&p.ask.model)?;
        let position = p.index.find_target(entry, &name)?;
        // Another try at a target this request already tried goes out afresh (with another
        // key, if its first one failed).
        let tried_before = p.attempts.iter().any(|a| a.target == position);
        let ready = position == p.primary && p.headers_for == p.primary && !tried_before;
        let key = if ready { p.primary_key } else { None };
        p.attempts.push(Tried {
            target: position,
            key,
            status: 0,
        });
        self.attempt = p.attempts.len() - 1;
        p.current = position;
        if ready {
            // The request is as the downstream filter prepared it: nothing to change. A
            // previous attempt may have switched; this one answers with the primary's translator.
            p.switched = None;
        } else {
            self.prepare_for = Some(position);
        }
        drop(p);
        self.plan = Some(shared);
        Some(if ready {
            Action::Continue
        } else {
            Action::Pause
        })
    }

    /// Rewrites the request for `position`'s provider.
    fn prepare(&self, position: usize, size: usize) -> Result<(), FilterError> {
        let Some(shared) = &self.plan else {
            return Ok(());
        };
        let mut p = shared.borrow_mut();
        let index = p.index.clone();
        let entry = index
            .targets(&p.ask.model)
            .ok_or_else(|| FilterError::unknown_model(&p.ask.model))?;
        let target = &entry.targets[position];
        let provider = index.provider(target.provider);
        let now = now();
        let key = super::keys::pick(&index, provider, now)
            .map_err(|e| e.error(provider, &p.ask.model))?;
        let top = TopLevel::parse(&p.body)?;
        let attempt = Attempt::prepare(&index, &p.ask, &p.body, &top, target, key, now)?;
        drop(top);
        let key_position = provider.keys.iter().position(|k| std::ptr::eq(k, key));
        if let Some(a) = p.attempts.get_mut(self.attempt) {
            a.key = key_position;
        }
        let body = attempt.body.as_deref().unwrap_or(&p.body);
        let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body);
        let current = abi::header_block(MapType::HttpRequestHeaders);
        let mut wanted = attempt.headers(provider);
        wanted.push((":authority", provider.authority.as_bytes()));
        // As in the downstream role: an OpenAI client's request now carrying `anthropic-version`
        // is marked, so that Envoy's own error replies keep the client's shape (the request's
        // headers are the downstream request's, carried from attempt to attempt).
        if !p.ask.endpoint.anthropic() && wanted.iter().any(|(n, _)| *n == "anthropic-version") {
            wanted.push((CLIENT_API_HEADER, b"openai"));
        }
        for change in headers::changes(&current, &wanted) {
            let _ = match change {
                Change::Set(name, value) => {
                    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value))
                }
                Change::Remove(name) => {
                    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None)
                }
            };
        }
        // What an earlier attempt set for another provider goes.
        for name in index.provider_headers() {
            if !wanted.iter().any(|(w, _)| w == name) && current.find(name).is_some() {
                let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None);
            }
        }
        p.headers_for = position;
        p.switched = Some(attempt.translator);
        Ok(())
    }
}

impl UpstreamAttempt {
    /// Answers this attempt with `error`, in the client's API shape.
    fn reply(&self, error: &FilterError) -> Action {
        let anthropic = self
            .plan
            .as_ref()
            .is_some_and(|p| p.borrow().ask.endpoint.anthropic());
        let body = if anthropic {
            error.anthropic_body()
        } else {
            error.body()
        };
        if let Err(e) =
            abi::send_local_response(error.status, &[("content-type", "application/json")], &body)
        {
            log::warn!("switchyard: local reply refused by the host: {e:?}");
        }
        Action::Pause
    }
}

impl Context for UpstreamAttempt {}

impl HttpContext for UpstreamAttempt {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        self.start().unwrap_or(Action::Continue)
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let Some(position) = self.prepare_for else {
            return Action::Continue;
        };
        if !end_of_stream {
            return Action::Pause;
        }
        self.prepare_for = None;
        if let Err(e) = self.prepare(position, size) {
            // This target cannot take the request (an endpoint its provider lacks): the
            // attempt answers with the reason, as the downstream filter would have.
            log::info!("switchyard: failover attempt not prepared: {}", e.message);
            return self.reply(&e);
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        // The downstream role refuses requests with trailers; should one get here all the same,
        // it is not sent on unprepared.
        if self.prepare_for.take().is_some() {
            return self.reply(&FilterError::invalid_request(
                "trailers_not_allowed",
                "Request trailers are not accepted.",
            ));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = &self.plan else {
            return Action::Continue;
        };
        let status: u32 = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
            .unwrap_or(0);
        let mut p = shared.borrow_mut();
        let Some(tried) = p.attempts.get_mut(self.attempt) else {
            return Action::Continue;
        };
        tried.status = status;
        let tried = *tried;
        let index = p.index.clone();
        let entry = index.targets(&p.ask.model);
        if let Some(t) = entry.and_then(|e| e.targets.get(tried.target)) {
            let provider = index.provider(t.provider);
            // With several keys, a rate limit is the key's, not the target's.
            if !(status == 429 && provider.keys.len() > 1) {
                super::cooldowns::observe(index.target_key(t), status, now());
            }
            if let Some(k) = tried.key.and_then(|k| provider.keys.get(k)) {
                super::cooldowns::observe_key(&k.id, status, now());
            }
        }
        Action::Continue
    }
}

fn now() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}
