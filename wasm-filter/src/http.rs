//! The downstream filter role: one HTTP request read from and written to Envoy, every decision
//! left to its [`Exchange`]; at the end, the exchange's outcome published (cooldowns, the end
//! for its key's lease, the request's record, metrics).

use std::sync::Arc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::abi::{self, RequestOut};
use super::lease;
use super::plan::{self, PLAN_STATE};
use super::shared::{self, Host};
use switchyard_core::config::USAGE_FILTER_STATE;
use switchyard_core::exchange::{Exchange, Shared as _, Step};
use switchyard_core::lease::NoGrant;
use switchyard_core::route::Index;
use switchyard_core::translate::ChunkOutcome;

pub(crate) struct Request {
    exchange: Exchange,
    /// The token of the failover plan handed to the upstream role.
    plan: Option<u64>,
    /// The data plane key (signs lease asks).
    dataplane_key: Option<[u8; 32]>,
}

impl Request {
    pub(crate) fn new(index: Option<Arc<Index>>, dataplane_key: Option<[u8; 32]>) -> Self {
        Request {
            exchange: Exchange::new(index),
            plan: None,
            dataplane_key,
        }
    }

    /// Sends the lease ask over the records' cluster; `false` if it could not leave.
    fn ask_lease(&self, ask: &switchyard_contract::lease::LeaseAsk) -> bool {
        let Some(index) = self.exchange.index() else {
            return false;
        };
        lease::send(index, ask, self.dataplane_key.as_ref()).is_some()
    }

    /// Carries out the exchange's step.
    fn act(&mut self, step: Step) -> Action {
        match step {
            Step::Continue => {
                if let (None, Some(p)) = (self.plan, self.exchange.plan()) {
                    let token = plan::insert(p.clone());
                    let _ = hostcalls::set_property(
                        vec![PLAN_STATE],
                        Some(token.to_string().as_bytes()),
                    );
                    self.plan = Some(token);
                }
                Action::Continue
            }
            Step::Pause => Action::Pause,
            Step::Reply(reply) => {
                abi::reply(&reply, Some(self.exchange.id()));
                Action::Pause
            }
            Step::Lease(ask) => {
                if self.ask_lease(&ask) {
                    return Action::Pause;
                }
                log::warn!("{}", NoGrant::NotSent.warning());
                let step = self.exchange.lease_answered(None, false, &Host);
                self.act(step)
            }
        }
    }
}

impl Context for Request {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body: usize, _: usize) {
        let grant = lease::grant(body)
            .inspect_err(|why| log::warn!("{}", why.warning()))
            .ok();
        let step = self.exchange.lease_answered(grant, true, &Host);
        if let Action::Continue = self.act(step) {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(token) = self.plan.take() {
            plan::remove(token);
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let start_ns = Host.now_ns();
        let id = switchyard_core::outbox::next_request_id(start_ns);
        // One host call for every header (see `headers`).
        let headers = abi::header_block(MapType::HttpRequestHeaders);
        let step = self
            .exchange
            .request_headers(start_ns, id, headers, end_of_stream);
        self.act(step)
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let body = || abi::body_chunk(BufferType::HttpRequestBody, size);
        let step = shared::cooldowns(|c| {
            self.exchange.request_body(
                size,
                end_of_stream,
                body,
                c,
                &Host,
                &mut RequestOut { size },
            )
        });
        self.act(step)
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        let step = self.exchange.request_trailers();
        self.act(step)
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        // Every response header in one host call; written back in one, allow-listed.
        let head = abi::header_block(MapType::HttpResponseHeaders);
        let code_details = || abi::property(vec!["response", "code_details"]);
        let out = self.exchange.response_headers(&head, code_details, &Host);
        abi::set_each(MapType::HttpResponseHeaders, &out.each);
        if let Some(map) = out.map(&head) {
            let _ = abi::set_header_map(MapType::HttpResponseHeaders, &map);
        }
        if out.pause {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let chunk = if self.exchange.reads_chunks() {
            abi::body_chunk(BufferType::HttpResponseBody, size)
        } else {
            Vec::new()
        };
        let out = self
            .exchange
            .response_body(chunk, size, end_of_stream, &Host);
        abi::set_each(MapType::HttpResponseHeaders, &out.headers);
        if let ChunkOutcome::Replace(bytes) = &out.body {
            let _ = abi::set_body(BufferType::HttpResponseBody, size, bytes);
        }
        if out.pause {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_log(&mut self) {
        let response_code = || {
            abi::property(vec!["response", "code"])
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, u64::from_le_bytes)
                .try_into()
                .unwrap_or(0)
        };
        let outcome = self.exchange.finish(response_code, &Host);
        if let Some(index) = self.exchange.index() {
            shared::observe(index, &outcome.observations, outcome.end_ns / 1_000_000_000);
        }
        if let Some(end) = &outcome.lease_end {
            switchyard_core::lease::request_ended(&Host, end);
        }
        if let Some(record) = &outcome.record {
            if outcome.record_to_state {
                let _ = hostcalls::set_property(vec![USAGE_FILTER_STATE], Some(record.as_bytes()));
            }
            if outcome.record_to_outbox {
                super::records::push(record.as_bytes());
            }
        }
        self.exchange
            .samples(outcome.status, outcome.end_ns, super::metrics::record);
        // Counted in the VM, flushed to Envoy's stats on the root context's tick.
        let c = outcome.counts;
        super::metrics::count(|m| {
            m.requests += 1;
            m.gateway_errors += u64::from(c.gateway_error);
            m.incomplete_streams += u64::from(c.incomplete_stream);
            m.prompt_tokens += c.prompt_tokens;
            m.completion_tokens += c.completion_tokens;
        });
    }
}
