//! One request through the gateway as pure decisions: the request in (authenticate, parse,
//! route, limits, target, attempt) and forward or reply out; the response's headers and chunks
//! in and the client's bytes out; at the end, the request's record, what it told of each target's
//! health, and what the limits service charges. The host (the `switchyard-filter` crate) only reads from and writes to
//! Envoy and calls this; everything here runs natively in tests.

pub mod failover;
mod finish;
mod forward;
pub mod health;
pub mod keys;
pub mod plan;
mod record;
pub mod reply;
mod response;
pub mod shared;
pub mod target;

use std::rc::Rc;
use std::sync::Arc;

use crate::attempt::Ask;
use crate::auth;
use crate::config::{CLUSTER_HEADER, STREAM_HEADER};
use crate::cooldown::Cooldowns;
use crate::error::FilterError;
use crate::headers::HeaderBlock;
use crate::request::{Endpoint, TopLevel};
use crate::route::Index;
use crate::translate::Translator;
use crate::usage::Usage;

pub use finish::{histogram, Counts, LeaseEnd, Outcome, COUNTERS};
pub use plan::Plan;
pub use reply::Reply;
pub use response::{Chunk, Head};
pub use shared::Shared;

/// Where the exchange writes the request on its way upstream: the host's request body and
/// headers (or, in tests, a list).
pub trait Outgoing {
    /// Replaces the whole request body.
    fn set_body(&mut self, body: &[u8]);
    /// Sets a request header, or with `None` removes it.
    fn set_header(&mut self, name: &str, value: Option<&[u8]>);
}

/// What the host does next with the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Wait for more of the request.
    Pause,
    /// Answer the client with this and send nothing upstream.
    Reply(Reply),
    /// The request is ready to go, but its key's lease has nothing left: ask the control plane
    /// with this (see [`crate::lease`]), keep the request paused, and hand the answer to
    /// [`Exchange::lease_answered`].
    Lease(switchyard_contract::lease::LeaseAsk),
}

/// A limited key's request under its lease: what it reserved, and the `x-ratelimit-*`
/// headers its answer carries.
struct Leased {
    reserve: u64,
    /// Its reservation was taken from the lease (else it was let through unchecked).
    leased: bool,
    headers: Vec<(&'static str, String)>,
    /// What its ask reported (put back if no answer comes).
    reported: Option<switchyard_contract::lease::LeaseAsk>,
}

/// How the response is being handled.
enum Response {
    /// Not ours to touch (a local reply, or nothing routed).
    Pass,
    /// The provider's answer, through its translator: the pair's converter, or the OpenAI
    /// pass-through one (which reads usage on the way and changes nothing else but what the
    /// gateway's own `include_usage` added).
    Translated(Box<dyn Translator>),
    /// An answer the client must not get (compressed, or too large to translate): its bytes
    /// are dropped and this error goes out instead when it ends.
    Refused(Vec<u8>),
}

/// One client request and its answer (the downstream filter role).
pub struct Exchange {
    index: Option<Arc<Index>>,
    endpoint: Option<Endpoint>,
    /// The client's request headers, read once.
    headers: HeaderBlock,
    /// The authenticated key's position in the index.
    key: Option<usize>,
    model: String,
    provider: Option<usize>,
    upstream_model: String,
    stream: bool,
    client_wants_usage: bool,
    /// The filter refused the request with an error.
    local_error: bool,
    /// The filter answered itself (an error or the model list).
    local_reply: bool,
    /// The status of a gateway error the provider's answer caused (compressed, too large): the
    /// client's status, and what the target's health is told whatever the provider's status.
    provider_fault: Option<u32>,
    /// Set for providers whose API is not OpenAI's; moves into `response` with the headers.
    translator: Option<Box<dyn Translator>>,
    response: Response,
    usage: Option<Usage>,
    complete: bool,
    /// A translated answer (not a stream) is held until it is whole: its headers wait for its
    /// body (which may change the status or say when to retry), and at most
    /// `max_response_bytes` of it are kept (`held`).
    hold_headers: bool,
    held: usize,
    /// The client's request body size (a prompt estimate when the provider's count is missing).
    request_bytes: usize,
    /// Tokens of text the client has received in a stream, estimated as it passes; what a
    /// stream the client left early is charged when the provider's count never came.
    streamed_tokens: u64,
    /// The usage in the record is (partly) that estimate.
    estimated: bool,
    /// The failover plan handed to the upstream role (models with several targets).
    plan: Option<Rc<Plan>>,
    /// The provider key sent (position in the provider's keys).
    provider_key: Option<usize>,
    /// This request's id (records, `x-request-id` to the client).
    id: String,
    /// When the request arrived, and when the answer's headers and first body bytes did
    /// (Unix ns; 0: not yet).
    start_ns: u64,
    first_byte_ns: u64,
    first_token_ns: u64,
    /// When the request left for the provider, and when its answer's last bytes arrived: the
    /// gateway's own time is the rest (see [`histogram::OVERHEAD`]).
    released_ns: u64,
    last_chunk_ns: u64,
    /// The status the client was sent with the answer's headers (0: none yet), and whether the
    /// answer's end passed through: then that is the response's code without asking Envoy.
    sent_status: u32,
    answer_ended: bool,
    /// Status and error code of the filter's own reply.
    local_status: u32,
    error_code: &'static str,
    /// The request was admitted under its key's lease (see [`crate::lease`]).
    leased: Option<Leased>,
}

impl Exchange {
    pub fn new(index: Option<Arc<Index>>) -> Self {
        Exchange {
            index,
            endpoint: None,
            headers: HeaderBlock::default(),
            key: None,
            model: String::new(),
            provider: None,
            upstream_model: String::new(),
            stream: false,
            client_wants_usage: false,
            local_error: false,
            local_reply: false,
            provider_fault: None,
            translator: None,
            response: Response::Pass,
            usage: None,
            complete: false,
            hold_headers: false,
            held: 0,
            request_bytes: 0,
            streamed_tokens: 0,
            estimated: false,
            plan: None,
            provider_key: None,
            id: String::new(),
            start_ns: 0,
            first_byte_ns: 0,
            first_token_ns: 0,
            released_ns: 0,
            last_chunk_ns: 0,
            sent_status: 0,
            answer_ended: false,
            local_status: 0,
            error_code: "",
            leased: None,
        }
    }

    /// The configuration the request is served under.
    pub fn index(&self) -> Option<&Index> {
        self.index.as_deref()
    }

    /// This request's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The failover plan, once the request went to a failover cluster.
    pub fn plan(&self) -> Option<&Rc<Plan>> {
        self.plan.as_ref()
    }

    /// The one place a gateway error becomes the client's answer.
    fn reject(&mut self, error: &FilterError) -> Step {
        let reply = Reply::error(error, self.anthropic());
        self.local_error = true;
        self.local_reply = true;
        self.local_status = reply.status;
        self.error_code = reply.code;
        Step::Reply(reply)
    }

    /// Whether the client speaks Anthropic's API (its errors take that shape).
    fn anthropic(&self) -> bool {
        self.endpoint.is_some_and(Endpoint::anthropic)
    }

    /// The request's headers arrived at `start_ns` (Unix ns); `id` is the request's.
    pub fn request_headers(
        &mut self,
        start_ns: u64,
        id: String,
        headers: HeaderBlock,
        end_of_stream: bool,
    ) -> Step {
        self.start_ns = start_ns;
        self.id = id;
        self.headers = headers;
        match self.check_headers(end_of_stream) {
            Ok(step) => step,
            Err(e) => self.reject(&e),
        }
    }

    fn check_headers(&mut self, end_of_stream: bool) -> Result<Step, FilterError> {
        let h = &self.headers;
        let path = h.find_str(":path").unwrap_or_default();
        let mut endpoint = Endpoint::from_path(path).ok_or_else(FilterError::unknown_path)?;
        if endpoint == Endpoint::Models && h.find("anthropic-version").is_some() {
            endpoint = Endpoint::AnthropicModels;
        }
        self.endpoint = Some(endpoint);
        if h.find(":method") != Some(endpoint.method().as_bytes()) {
            return Err(FilterError::method_not_allowed());
        }
        let index = self.index.clone().ok_or_else(not_configured)?;

        let presented = auth::presented_key(h.find_str("authorization"), h.find_str("x-api-key"));
        let start_secs = self.start_ns / 1_000_000_000;
        let (key, position) = auth::authenticate(&index, presented, || start_secs)?;
        self.key = Some(position);

        if matches!(endpoint, Endpoint::Models | Endpoint::AnthropicModels) {
            let query = crate::models::ModelsQuery::parse(path)?;
            let anthropic = endpoint == Endpoint::AnthropicModels;
            let body = crate::models::answer(&index, key, &query, anthropic)?;
            self.local_reply = true;
            self.local_status = 200;
            return Ok(Step::Reply(Reply::ok(body)));
        }
        if end_of_stream {
            return Err(FilterError::invalid_request(
                "invalid_json",
                "The request has no body; a JSON object is required.",
            ));
        }
        let declared = h
            .find_str("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > index.max_body_bytes) {
            return Err(FilterError::body_too_large(index.max_body_bytes));
        }
        // Wait for the whole body: the route depends on its `model`. The client's routing
        // header cannot leak through: every path that continues rewrites the headers.
        Ok(Step::Pause)
    }

    /// `size` bytes of request body have arrived; `body` reads them, and is called only once the
    /// body is whole. The request is then routed and written to `out`.
    pub fn request_body(
        &mut self,
        size: usize,
        end_of_stream: bool,
        body: impl FnOnce() -> Vec<u8>,
        cooldowns: &Cooldowns,
        shared: &impl Shared,
        out: &mut impl Outgoing,
    ) -> Step {
        if self.local_reply {
            return Step::Pause;
        }
        match self.route(size, end_of_stream, body, cooldowns, shared, out) {
            Ok(step) => step,
            Err(Routed::Error(e)) => self.reject(&e),
            Err(Routed::Refused(Refused(e, headers))) => {
                let mut step = self.reject(&e);
                if let Step::Reply(r) = &mut step {
                    r.extra = headers;
                }
                step
            }
        }
    }

    fn route(
        &mut self,
        size: usize,
        end_of_stream: bool,
        body: impl FnOnce() -> Vec<u8>,
        cooldowns: &Cooldowns,
        shared: &impl Shared,
        out: &mut impl Outgoing,
    ) -> Result<Step, Routed> {
        let index = self.index.clone().ok_or_else(not_configured)?;
        if size > index.max_body_bytes {
            return Err(FilterError::body_too_large(index.max_body_bytes).into());
        }
        if !end_of_stream {
            return Ok(Step::Pause);
        }
        let body = body();
        self.request_bytes = body.len();
        let endpoint = self.endpoint.unwrap_or(Endpoint::ChatCompletions);
        let top = TopLevel::parse(&body)?;
        // Kept from here on so that the record names the model even when it is refused.
        self.model = top.model()?.into_owned();
        let model = self.model.as_str();
        let stream = matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Messages)
            && top.flag("stream")?.unwrap_or(false);
        let client_wants_usage = stream && top.stream_usage_requested()?;

        let key = self.key.map(|k| index.key(k));
        // A model the key may not use answers exactly as one that does not exist (a private
        // provider's model for keys it does not serve, or one outside the key's scope): a
        // scoped key cannot find out which models exist.
        let entry = index
            .targets(model)
            .filter(|e| key.is_some_and(|k| e.serves(&k.user) && k.allows(model)))
            .ok_or_else(|| FilterError::unknown_model(model))?;
        let now = self.start_ns / 1_000_000_000;
        let needs = top.needs();
        let choice = target::choose(&index, entry, model, needs, cooldowns, shared, now)?;
        let ask = Ask {
            endpoint,
            model: self.model.clone(),
            stream,
            request_id: self
                .headers
                .find_str("x-request-id")
                .unwrap_or_default()
                .to_owned(),
        };
        // A model with several targets goes to the failover cluster that starts with the chosen
        // one; Envoy moves a failed attempt on to the next, and the upstream role prepares the
        // request for it from the client's body, kept in the plan.
        let failover = entry.failover_cluster(choice.position, needs);
        let cluster = failover.unwrap_or(&choice.provider.cluster);
        // A limited key's request spends from its key's lease (shared by this Envoy's
        // workers), which holds the most it may cost from its owner's credits; with nothing
        // left the request goes once the control plane renewed the lease.
        let mut lease_ask = None;
        if let Some(k) = key.filter(|k| k.limited) {
            let price = choice.provider.prices.get(&choice.target.model);
            let reserve = crate::reserve::estimate(endpoint, &top, body.len(), price);
            let now_ms = shared.now_ns() / 1_000_000;
            match crate::lease::admit(shared, "", &k.id, reserve, now_ms) {
                crate::lease::Admission::Admitted(headers, leased) => {
                    self.leased = Some(Leased {
                        reserve,
                        leased,
                        headers,
                        reported: None,
                    });
                }
                crate::lease::Admission::Refused(refusal, headers) => {
                    return Err(Refused(refusal_error(&refusal), headers).into());
                }
                crate::lease::Admission::Ask(mut a) => {
                    a.instance = crate::lease::instance(shared);
                    self.leased = Some(Leased {
                        reserve,
                        leased: false,
                        headers: Vec::new(),
                        reported: Some(a.clone()),
                    });
                    lease_ask = Some(a);
                }
            }
        }
        let mut extra: Vec<(&str, &[u8])> = Vec::with_capacity(3);
        extra.push((CLUSTER_HEADER, cluster.as_bytes()));
        if stream && failover.is_some() {
            extra.push((STREAM_HEADER, b"1"));
        }
        let extra = forward::Extra {
            headers: &extra,
            stale: &[],
        };
        let translator = forward::send(
            &index,
            &ask,
            &body,
            &top,
            &choice,
            now,
            &self.headers,
            extra,
            out,
        )?;
        drop(top);
        self.provider_key = choice.key_position();
        self.provider = Some(choice.target.provider);
        self.upstream_model.clone_from(&choice.target.model);
        if failover.is_some() {
            let plan = Plan::new(index.clone(), ask, body, choice.position, self.provider_key);
            self.plan = Some(Rc::new(plan));
        }
        // Not needed any more; a stream may live for minutes.
        self.headers = HeaderBlock::default();
        self.stream = stream;
        self.client_wants_usage = client_wants_usage;
        self.translator = translator;
        self.released_ns = shared.now_ns();
        Ok(match lease_ask {
            Some(ask) => Step::Lease(ask),
            None => Step::Continue,
        })
    }

    /// The control plane's answer to the lease this request asked for (`None`: none came;
    /// `sent`: the ask had left, so the control plane may have applied it): the request goes
    /// on, or is refused in its client's shape.
    pub fn lease_answered(
        &mut self,
        grant: Option<switchyard_contract::lease::LeaseGrant>,
        sent: bool,
        shared: &impl Shared,
    ) -> Step {
        let (Some(leased), Some(index), Some(k)) = (&mut self.leased, &self.index, self.key) else {
            return Step::Continue;
        };
        let key = &index.key(k).id;
        let now_ms = shared.now_ns() / 1_000_000;
        if let (None, Some(ask)) = (&grant, leased.reported.take()) {
            crate::lease::put_back(shared, key, &ask, sent);
        }
        match crate::lease::answered(shared, key, grant, leased.reserve, now_ms) {
            crate::lease::Admission::Refused(refusal, headers) => {
                self.leased = None;
                self.provider = None;
                self.plan = None;
                let mut reply = self.reject(&refusal_error(&refusal));
                if let Step::Reply(r) = &mut reply {
                    r.extra = headers;
                }
                reply
            }
            crate::lease::Admission::Admitted(headers, taken) => {
                leased.headers = headers;
                leased.leased = taken;
                Step::Continue
            }
            crate::lease::Admission::Ask(_) => Step::Continue,
        }
    }

    /// Request trailers arrived.
    pub fn request_trailers(&mut self) -> Step {
        if self.local_reply {
            return Step::Pause;
        }
        // Trailers end a request whose body never said `end_of_stream`: the body decisions
        // (model, scope, route, key) have not been taken, and continuing would send the
        // client's own headers on. Refused; no API the gateway serves uses request trailers.
        self.reject(&trailers_not_allowed())
    }
}

/// The answer to request trailers, in either role.
pub fn trailers_not_allowed() -> FilterError {
    FilterError::invalid_request("trailers_not_allowed", "Request trailers are not accepted.")
}

/// A refusal by the key's limits: the error and its `x-ratelimit-*` headers.
struct Refused(FilterError, Vec<(&'static str, String)>);

/// Why routing stopped.
enum Routed {
    Error(FilterError),
    Refused(Refused),
}

impl From<FilterError> for Routed {
    fn from(e: FilterError) -> Routed {
        Routed::Error(e)
    }
}

impl From<Refused> for Routed {
    fn from(r: Refused) -> Routed {
        Routed::Refused(r)
    }
}

/// A lease refusal as the client's error (the status and codes of the control plane's refusal).
fn refusal_error(refusal: &switchyard_contract::lease::LeaseRefusal) -> FilterError {
    use switchyard_contract::limits::RefusalCode;
    let code = refusal.code();
    FilterError {
        status: code.status(),
        kind: if code == RefusalCode::InsufficientCredits {
            "insufficient_quota"
        } else {
            "rate_limit_error"
        },
        code: code.as_str(),
        message: refusal.message.clone(),
        source: crate::error::ErrorSource::Client,
        retry_after: refusal
            .retry_after
            .map(|s| u64::try_from(s.max(1)).unwrap_or(1)),
    }
}

fn not_configured() -> FilterError {
    let mut e = FilterError::no_provider_key("switchyard");
    e.message = "The gateway has no configuration yet.".into();
    e.code = "not_configured";
    e
}

#[cfg(test)]
mod tests;
