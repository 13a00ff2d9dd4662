//! One HTTP request through the filter: authenticate and route on the way in, pass the response
//! (or each stream chunk) back with usage taken from it, and publish the request's record.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use switchyard_contract::limits::{Charge, RefusalCode};
use switchyard_contract::names::TargetName;
use switchyard_contract::record::RequestRecord;

use super::abi;
use super::plan::{self, Plan};
use super::upstream::PLAN_STATE;
use crate::attempt::{Ask, Attempt};
use crate::auth;
use crate::config::{
    CHARGE_STATE, CLIENT_API_HEADER, CLUSTER_HEADER, COST_STATE, LIMITED_HEADER, REFUSAL_HEADER,
    STREAM_HEADER, USAGE_FILTER_STATE,
};
use crate::error::FilterError;
use crate::headers::{self, Change, HeaderBlock};
use crate::request::{Endpoint, TopLevel};
use crate::route::Index;
use crate::stream::{ChunkOutcome, OpenAiStream};
use crate::translate::Translator;
use crate::usage::{self, FieldScan, Usage};

/// How the response is being handled.
enum Response {
    /// Not ours to touch (a local reply, or nothing routed).
    Pass,
    /// A JSON answer passing through, its `usage` read on the way (nothing kept).
    Json(Box<FieldScan>),
    /// An SSE stream handled event by event.
    Stream(Box<OpenAiStream>),
    /// A provider with another API: every chunk goes through its translator.
    Translated(Box<dyn Translator>),
    /// An answer the client must not get (compressed, or too large to translate): its bytes
    /// are dropped and this error goes out instead when it ends.
    Refused(Vec<u8>),
}

pub(crate) struct Request {
    index: Option<Rc<Index>>,
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
    /// The failover plan shared with the upstream filter (models with several targets).
    plan: Option<(u64, plan::Shared)>,
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
    /// gateway's own time is the rest (see `metrics::OVERHEAD`).
    released_ns: u64,
    last_chunk_ns: u64,
    /// Status and error code of the filter's own reply.
    local_status: u32,
    error_code: &'static str,
    /// The request asked the rate limit service (its key is limited); its tokens and cost are
    /// charged when it ends.
    limits_asked: bool,
}

impl Request {
    pub(crate) fn new(index: Option<Rc<Index>>) -> Self {
        Request {
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
            local_status: 0,
            error_code: "",
            limits_asked: false,
        }
    }

    /// When a failover attempt went to another target than the one chosen here, the answer is
    /// that target's: take its provider, model and translator.
    fn follow_failover(&mut self) {
        let Some((_, shared)) = &self.plan else {
            return;
        };
        let mut p = shared.borrow_mut();
        if let Some(translator) = p.switched.take() {
            let target = p
                .index
                .targets(&p.ask.model)
                .and_then(|e| e.targets.get(p.current));
            if let Some(t) = target {
                self.provider = Some(t.provider);
                self.upstream_model.clone_from(&t.model);
                self.translator = translator;
                self.provider_key = p.attempts.last().and_then(|a| a.key);
            }
        }
    }

    /// Whether the answer is the rate limit service's refusal (then it is the client's answer
    /// as it stands, with the status its reason calls for); the request never went upstream.
    fn refused_by_limits(&mut self, head: &HeaderBlock) -> bool {
        let Some(reason) = head.find_str(REFUSAL_HEADER) else {
            return false;
        };
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, REFUSAL_HEADER, None);
        // Only Envoy's rate limit filter may say so, not a provider.
        let from_limits = hostcalls::get_property(vec!["response", "code_details"])
            .ok()
            .flatten()
            .is_some_and(|d| d == b"request_rate_limited");
        if !from_limits {
            return false;
        }
        let code = RefusalCode::from_header(reason);
        self.error_code = code.as_str();
        self.local_status = code.status();
        if self.local_status != 429 {
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                ":status",
                Some(&self.local_status.to_string()),
            );
        }
        self.local_error = true;
        self.local_reply = true;
        self.limits_asked = false;
        self.provider = None;
        true
    }

    /// The one place a gateway error becomes a local reply.
    fn reject(&mut self, error: FilterError) -> Action {
        self.local_error = true;
        self.local_reply = true;
        self.local_status = error.status;
        self.error_code = error.code;
        let body = self.error_body(&error);
        let retry_after = error.retry_after.map(|s| s.to_string());
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-request-id", self.id.as_str()),
        ];
        if let Some(secs) = &retry_after {
            headers.push(("retry-after", secs));
        }
        if let Err(e) = abi::send_local_response(error.status, &headers, &body) {
            log::warn!("switchyard: local reply refused by the host: {e:?}");
        }
        Action::Pause
    }

    /// An error's body in the client's API shape.
    fn error_body(&self, error: &FilterError) -> Vec<u8> {
        if self.endpoint.is_some_and(Endpoint::anthropic) {
            error.anthropic_body()
        } else {
            error.body()
        }
    }

    /// A gateway error in place of the provider's answer, whose headers have not left yet:
    /// the status and type are set now, the body when the answer ends.
    fn refuse_answer(&mut self, error: FilterError) -> Vec<(&'static str, Option<Vec<u8>>)> {
        self.local_error = true;
        self.error_code = error.code;
        self.response = Response::Refused(self.error_body(&error));
        vec![
            (":status", Some(error.status.to_string().into_bytes())),
            ("content-type", Some(b"application/json".to_vec())),
            ("content-length", None),
            ("content-encoding", None),
            ("retry-after", None),
        ]
    }

    fn on_request_headers(&mut self, end_of_stream: bool) -> Result<Action, FilterError> {
        self.start_ns = super::now_ns();
        self.id = super::records::next_id(self.start_ns);
        // One host call for every header (see `headers`).
        self.headers = abi::header_block(MapType::HttpRequestHeaders);
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
            let headers = [
                ("content-type", "application/json"),
                ("x-request-id", self.id.as_str()),
            ];
            if let Err(e) = abi::send_local_response(200, &headers, &body) {
                log::warn!("switchyard: local reply refused by the host: {e:?}");
            }
            self.local_reply = true;
            self.local_status = 200;
            return Ok(Action::Pause);
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
        Ok(Action::Pause)
    }

    fn on_request_body(&mut self, size: usize, end_of_stream: bool) -> Result<Action, FilterError> {
        let index = self.index.clone().ok_or_else(not_configured)?;
        if size > index.max_body_bytes {
            return Err(FilterError::body_too_large(index.max_body_bytes));
        }
        if !end_of_stream {
            return Ok(Action::Pause);
        }
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
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
        // Targets that cannot serve what the request needs (tools, images) are out from the
        // start; then the best target whose provider has a key to spare this second (QPS
        // limits): one whose keys are all spent, or that has no usable key at all (all refused
        // at their probes), is passed over for the next best.
        let now = self.start_ns / 1_000_000_000;
        let needs = top.needs();
        let mut spent: Vec<usize> = (0..entry.targets.len())
            .filter(|&i| entry.targets[i].capabilities & needs != needs)
            .collect();
        if spent.len() == entry.targets.len() {
            return Err(FilterError::not_capable(model, needs));
        }
        let mut no_key = None;
        let (position, key) = loop {
            let position =
                super::cooldowns::with(|c| index.choose_position_except(entry, now, c, &spent))
                    .ok_or_else(|| FilterError::unknown_model(model))?;
            let provider = index.provider(entry.targets[position].provider);
            if spent.contains(&position) {
                return Err(match no_key {
                    Some(super::keys::NoKey::Missing) => {
                        super::keys::NoKey::Missing.error(provider, model)
                    }
                    _ => FilterError::keys_saturated(model),
                });
            }
            match super::keys::pick(&index, provider, now) {
                Ok(key) => break (position, key),
                Err(e) => {
                    spent.push(position);
                    // A spent QPS limit is what the client hears of when nothing else works.
                    if !matches!(no_key, Some(super::keys::NoKey::Saturated)) {
                        no_key = Some(e);
                    }
                }
            }
        };
        let target = &entry.targets[position];
        let provider = index.provider(target.provider);
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
        let attempt = Attempt::prepare(&index, &ask, &body, &top, target, key, now)?;
        self.provider_key = provider.keys.iter().position(|k| std::ptr::eq(k, key));
        if let Some(new_body) = &attempt.body {
            let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, new_body);
        }
        // content-length always matches the body sent (Envoy does not fix it, and a chunked
        // request arrives without one); the gateway key never reaches the provider; `Host`
        // comes from the route (auto_host_rewrite). The headers are still paused, and only
        // what differs from the client's is written (each host call costs).
        let mut wanted = attempt.headers(provider);
        // A model with several targets goes to the failover cluster that starts with the chosen
        // one; Envoy moves a failed attempt on to the next, and the upstream filter prepares the
        // request for it from the client's body, kept in the plan.
        let failover = entry.failover_cluster(position, needs);
        let cluster = failover.unwrap_or(&provider.cluster);
        wanted.push((CLUSTER_HEADER, cluster.as_bytes()));
        if stream && failover.is_some() {
            wanted.push((STREAM_HEADER, b"1"));
        }
        // A limited key's request is admitted (or not) by the rate limit service next, which
        // holds the most it may cost from its owner's credits until its end is charged (under
        // the same request id).
        let limits = self
            .key
            .map(|k| index.key(k))
            .filter(|k| k.limited)
            .map(|k| {
                let price = provider.prices.get(&target.model);
                crate::reserve::Admit {
                    key: &k.id,
                    anthropic: endpoint.anthropic(),
                    request: &self.id,
                    reserve: crate::reserve::estimate(endpoint, &top, body.len(), price),
                }
                .value()
            });
        drop(top);
        if let Some(value) = &limits {
            wanted.push((LIMITED_HEADER, value.as_bytes()));
        }
        if !endpoint.anthropic() && wanted.iter().any(|(n, _)| *n == "anthropic-version") {
            wanted.push((CLIENT_API_HEADER, b"openai"));
        }
        for change in headers::changes(&self.headers, &wanted) {
            let _ = match change {
                Change::Set(name, value) => {
                    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value))
                }
                Change::Remove(name) => {
                    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None)
                }
            };
        }
        drop(wanted);
        self.provider = Some(target.provider);
        self.upstream_model.clone_from(&target.model);
        if failover.is_some() {
            let (token, shared) = plan::insert(Plan {
                index: index.clone(),
                ask,
                body,
                primary: position,
                primary_key: self.provider_key,
                headers_for: position,
                switched: None,
                current: position,
                attempts: Vec::new(),
            });
            let _ = hostcalls::set_property(vec![PLAN_STATE], Some(token.to_string().as_bytes()));
            self.plan = Some((token, shared));
        }
        self.limits_asked = limits.is_some();
        let translator = attempt.translator;
        // Not needed any more; a stream may live for minutes.
        self.headers = HeaderBlock::default();

        self.stream = stream;
        self.client_wants_usage = client_wants_usage;
        self.translator = translator;
        self.released_ns = super::now_ns();
        Ok(Action::Continue)
    }

    /// A stream the client left (or the provider cut) before the provider's own count arrived
    /// is charged for what was sent: the usage known so far (a translated stream may have the
    /// prompt's count), the completion at least the text the client received, and the prompt
    /// estimated from the request's size when unknown. The record says so (`estimated`).
    fn estimate_unfinished_stream(&mut self) {
        if !self.stream || self.complete || self.provider.is_none() || self.streamed_tokens == 0 {
            return;
        }
        let known = self.usage.or(match &self.response {
            Response::Stream(s) => s.usage(),
            Response::Translated(t) => t.usage(),
            _ => None,
        });
        let mut u = known.unwrap_or_default();
        if u.completion < self.streamed_tokens {
            u.completion = self.streamed_tokens;
            self.estimated = true;
        }
        if u.prompt == 0 {
            u.prompt = (self.request_bytes as u64).div_ceil(4);
            self.estimated = true;
        }
        u.total = u.prompt.saturating_add(u.completion);
        self.usage = Some(u);
    }

    /// The GenAI histograms of a request that reached a provider.
    fn observe(&self, status: u32, end_ns: u64) {
        use super::metrics::{self, record};
        let (Some(index), Some(provider)) = (self.index.as_deref(), self.provider) else {
            return;
        };
        let provider = index.provider(provider).name.as_str();
        let model = self.upstream_model.as_str();
        let class = match status {
            100..=599 => ["1xx", "2xx", "3xx", "4xx", "5xx"][(status / 100 - 1) as usize],
            _ => "none",
        };
        let ms = |from: u64, to: u64| (to.saturating_sub(from)) / 1_000_000;
        if let Some(u) = self.usage {
            for (kind, n) in [("input", u.prompt), ("output", u.completion)] {
                let labels = [
                    ("provider", provider),
                    ("model", model),
                    ("token_type", kind),
                ];
                record(metrics::TOKEN_USAGE, &labels, n);
            }
        }
        let labels = [("provider", provider), ("model", model), ("status", class)];
        record(metrics::DURATION, &labels, ms(self.start_ns, end_ns));
        let labels = &labels[..2];
        if self.first_token_ns != 0 {
            record(
                metrics::TIME_TO_FIRST_TOKEN,
                labels,
                ms(self.start_ns, self.first_token_ns),
            );
            let output = self.usage.map_or(0, |u| u.completion);
            if output > 1 && self.last_chunk_ns > self.first_token_ns {
                let per_token = (self.last_chunk_ns - self.first_token_ns) / 1_000 / (output - 1);
                record(metrics::TIME_PER_OUTPUT_TOKEN, labels, per_token);
            }
        }
        if self.released_ns != 0 && self.last_chunk_ns != 0 {
            let ours = self.released_ns.saturating_sub(self.start_ns)
                + end_ns.saturating_sub(self.last_chunk_ns);
            record(metrics::OVERHEAD, &[], ours / 1_000);
        }
    }

    /// What the request cost at its model's price (`None`: no price known, or no provider).
    fn cost(&self) -> Option<u64> {
        let index = self.index.as_deref()?;
        let provider = index.provider(self.provider?);
        let price = provider.prices.get(&self.upstream_model)?;
        Some(price.cost_micros(&self.usage.unwrap_or_default()))
    }

    /// The request's record: one JSON object (see `switchyard_contract::record`).
    fn record(&self, status: u32, end_ns: u64, cost: Option<u64>) -> String {
        let index = self.index.as_deref();
        let provider = match (index, self.provider) {
            (Some(index), Some(i)) => Some(index.provider(i)),
            _ => None,
        };
        let (key_id, user) = match (index, self.key) {
            (Some(index), Some(k)) => (index.key(k).id.as_str(), index.key(k).user.as_str()),
            _ => ("", ""),
        };
        let u = self.usage.unwrap_or_default();
        let ms = |ns: u64| ns / 1_000_000;
        let since_start = |ns: u64| (ns >= self.start_ns).then(|| ms(ns - self.start_ns));
        // Attempts before the last one failed (they were retried): the health figures count them.
        let mut attempts = usize::from(provider.is_some());
        let mut failed = Vec::new();
        if let (Some(index), Some((_, shared))) = (index, &self.plan) {
            let p = shared.borrow();
            let entry = index.targets(&p.ask.model);
            attempts = attempts.max(p.attempts.len());
            let tried = p.attempts.len().saturating_sub(1);
            for tried in p.attempts.iter().take(tried) {
                if let Some(t) = entry.and_then(|e| e.targets.get(tried.target)) {
                    failed.push(TargetName {
                        provider: index.provider(t.provider).name.as_str(),
                        model: t.model.as_str(),
                    });
                }
            }
        }
        let record = RequestRecord {
            id: self.id.as_str(),
            at: ms(self.start_ns),
            api: self.endpoint.map_or("", Endpoint::name),
            status,
            error: self.error_code,
            key: key_id,
            user,
            model: self.model.as_str(),
            provider: provider.map_or("", |p| p.name.as_str()),
            upstream_model: self.upstream_model.as_str(),
            failed,
            estimated: self.estimated,
            attempts: attempts as u64,
            stream: self.stream,
            complete: self.complete,
            prompt_tokens: u.prompt,
            completion_tokens: u.completion,
            total_tokens: u.total,
            cached_tokens: u.cached,
            cache_write_tokens: u.cache_write,
            reasoning_tokens: u.reasoning,
            cost_micros: cost,
            duration_ms: since_start(end_ns),
            upstream_ms: since_start(self.first_byte_ns),
            ttft_ms: since_start(self.first_token_ns),
        };
        let mut out = String::with_capacity(512);
        record.write(&mut out);
        out
    }
}

impl Context for Request {}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some((token, _)) = self.plan.take() {
            plan::remove(token);
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        match self.on_request_headers(end_of_stream) {
            Ok(action) => action,
            Err(e) => self.reject(e),
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.local_reply {
            return Action::Pause;
        }
        match self.on_request_body(size, end_of_stream) {
            Ok(action) => action,
            Err(e) => self.reject(e),
        }
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.local_reply {
            return Action::Pause;
        }
        // Trailers end a request whose body never said `end_of_stream`: the body decisions
        // (model, scope, route, key) have not been taken, and continuing would send the
        // client's own headers on. Refused; no API the gateway serves uses request trailers.
        self.reject(FilterError::invalid_request(
            "trailers_not_allowed",
            "Request trailers are not accepted.",
        ))
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.local_reply || self.provider.is_none() {
            return Action::Continue;
        }
        self.first_byte_ns = super::now_ns();
        // Every response header in one host call; written back in one, allow-listed.
        let head = abi::header_block(MapType::HttpResponseHeaders);
        if self.limits_asked && head.find(REFUSAL_HEADER).is_some() && self.refused_by_limits(&head)
        {
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                "x-request-id",
                Some(&self.id),
            );
            return Action::Continue;
        }
        self.follow_failover();
        let status: u32 = head
            .find_str(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let content_type = head.find_str("content-type").unwrap_or_default();
        let event_stream = content_type.starts_with("text/event-stream")
            || content_type.starts_with("application/vnd.amazon.eventstream");
        // Envoy's own replies (already JSON in the client's shape) are not the provider's.
        let envoy_reply = status >= 400
            && hostcalls::get_property(vec!["response", "code_details"])
                .ok()
                .flatten()
                .is_none_or(|d| d != b"via_upstream");
        let encoded = !envoy_reply
            && head
                .find("content-encoding")
                .is_some_and(|e| !e.eq_ignore_ascii_case(b"identity"));
        let mut changes: Vec<(&'static str, Option<Vec<u8>>)> = Vec::new();
        let mut action = Action::Continue;
        if encoded {
            // The gateway asks for identity (the route drops the client's Accept-Encoding): a
            // compressed answer would hide its usage and could not be translated.
            changes = self.refuse_answer(FilterError::provider_encoding());
        } else if let Some(mut translator) = self.translator.take() {
            if envoy_reply {
                // Nothing to translate; the usage is none.
            } else {
                let client_status = translator.response_headers(status, event_stream);
                let passes = translator.passes_through();
                if event_stream || !passes {
                    // The translated body has another length.
                    changes.push(("content-length", None));
                }
                if !event_stream {
                    changes.push(("content-type", Some(b"application/json".to_vec())));
                } else if !content_type.starts_with("text/event-stream") {
                    changes.push(("content-type", Some(b"text/event-stream".to_vec())));
                }
                if let Some(client_status) = client_status {
                    changes.push((":status", Some(client_status.to_string().into_bytes())));
                }
                if !event_stream && !passes {
                    // A whole answer: held until it is complete (and within bounds), so that
                    // its status can still change and a retry delay found in it be sent.
                    self.hold_headers = true;
                    action = Action::Pause;
                }
                self.response = Response::Translated(translator);
            }
        } else if self.stream && content_type.starts_with("text/event-stream") {
            // The body may change (usage chunk dropped, error appended): the length is unknown.
            changes.push(("content-length", None));
            self.response = Response::Stream(Box::new(OpenAiStream::new(self.client_wants_usage)));
        } else {
            self.response = Response::Json(Box::new(FieldScan::new("usage")));
        }
        changes.push(("x-request-id", Some(self.id.clone().into_bytes())));
        let set: Vec<(&str, Option<&[u8]>)> = changes
            .iter()
            .map(|(name, value)| (*name, value.as_deref()))
            .collect();
        if let Some(out) = headers::response_headers(&head, &set) {
            let _ = abi::set_header_map(MapType::HttpResponseHeaders, &out);
        }
        action
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.stream && self.first_token_ns == 0 && size > 0 {
            self.first_token_ns = super::now_ns();
        }
        if end_of_stream && self.provider.is_some() {
            self.last_chunk_ns = super::now_ns();
        }
        let limit = self
            .index
            .as_deref()
            .map_or(usize::MAX, |i| i.max_response_bytes);
        if self.hold_headers && matches!(self.response, Response::Translated(_)) {
            self.held = self.held.saturating_add(size);
            if self.held > limit {
                // Nothing has reached the client yet: a clear error instead of the answer.
                for (name, value) in self.refuse_answer(FilterError::provider_too_large(limit)) {
                    let _ =
                        abi::set_map_value(MapType::HttpResponseHeaders, name, value.as_deref());
                }
            }
        }
        match &mut self.response {
            Response::Pass => {}
            Response::Json(scan) => {
                if size > 0 {
                    if let Ok(Some(chunk)) =
                        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
                    {
                        scan.feed(&chunk);
                    }
                }
                if end_of_stream {
                    self.usage = scan.value().and_then(usage::from_openai_usage_value);
                    self.complete = true;
                }
            }
            Response::Refused(error) => {
                // The provider's bytes are dropped unread.
                let out = if end_of_stream {
                    std::mem::take(error)
                } else {
                    Vec::new()
                };
                let _ = abi::set_body(BufferType::HttpResponseBody, size, &out);
                if self.hold_headers && !end_of_stream {
                    return Action::Pause;
                }
            }
            Response::Translated(translator) => {
                let chunk = response_chunk(size);
                let out = translator.response_body(&chunk, end_of_stream);
                if self.hold_headers {
                    if !end_of_stream {
                        // The translator keeps what it needs; Envoy keeps nothing.
                        let _ = abi::set_body(BufferType::HttpResponseBody, size, &[]);
                        return Action::Pause;
                    }
                    let body = match out {
                        ChunkOutcome::Replace(bytes) => bytes,
                        ChunkOutcome::Unchanged => chunk,
                    };
                    let _ = abi::set_body(BufferType::HttpResponseBody, size, &body);
                    // The headers have waited for this: the exact length, and what only the
                    // body told (a retry delay, the status an error should have).
                    let set = [
                        ("content-length", Some(body.len() as u64)),
                        ("retry-after", translator.retry_after()),
                        (":status", translator.error_status().map(u64::from)),
                    ];
                    for (name, value) in set {
                        if let Some(value) = value {
                            let value = value.to_string();
                            let _ = abi::set_map_value(
                                MapType::HttpResponseHeaders,
                                name,
                                Some(value.as_bytes()),
                            );
                        }
                    }
                } else {
                    let sent = match &out {
                        ChunkOutcome::Replace(bytes) => {
                            let _ = abi::set_body(BufferType::HttpResponseBody, size, bytes);
                            bytes.as_slice()
                        }
                        ChunkOutcome::Unchanged => chunk.as_slice(),
                    };
                    if self.stream {
                        self.streamed_tokens = self
                            .streamed_tokens
                            .saturating_add(usage::estimate_streamed_tokens(sent));
                    }
                }
                if end_of_stream {
                    self.usage = translator.usage();
                    self.complete = translator.completed();
                }
            }
            Response::Stream(stream) => {
                let chunk = response_chunk(size);
                let out = stream.on_chunk(&chunk, end_of_stream);
                let sent = match &out {
                    ChunkOutcome::Replace(bytes) => {
                        let _ = abi::set_body(BufferType::HttpResponseBody, size, bytes);
                        bytes.as_slice()
                    }
                    ChunkOutcome::Unchanged => chunk.as_slice(),
                };
                self.streamed_tokens = self
                    .streamed_tokens
                    .saturating_add(usage::estimate_streamed_tokens(sent));
                if end_of_stream {
                    self.usage = stream.usage();
                    self.complete = stream.completed();
                }
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.estimate_unfinished_stream();
        let status = if self.local_reply {
            self.local_status
        } else {
            let code = hostcalls::get_property(vec!["response", "code"])
                .ok()
                .flatten()
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, u64::from_le_bytes);
            u32::try_from(code).unwrap_or(0)
        };
        let end_ns = super::now_ns();
        let now = end_ns / 1_000_000_000;
        if let (Some(index), Some(provider), false) = (&self.index, self.provider, self.local_reply)
        {
            // Every answer from (or about) a provider tells on the target's health.
            match &self.plan {
                // The upstream filter saw each attempt's answer; attempts that got none (connect
                // failure, reset, timeout) failed, the last one as Envoy told the client.
                Some((_, shared)) if !shared.borrow().attempts.is_empty() => {
                    let p = shared.borrow();
                    if let Some(entry) = index.targets(&p.ask.model) {
                        let last = p.attempts.len() - 1;
                        for (i, tried) in p.attempts.iter().enumerate() {
                            if tried.status != 0 {
                                continue;
                            }
                            let failed = if i == last && status != 0 {
                                status
                            } else {
                                503
                            };
                            if let Some(t) = entry.targets.get(tried.target) {
                                super::cooldowns::observe(index.target_key(t), failed, now);
                            }
                        }
                    }
                }
                _ => {
                    let p = index.provider(provider);
                    // With several keys, a rate limit is the key's, not the target's.
                    if !(status == 429 && p.keys.len() > 1) {
                        let key = index.key_of(provider, &self.upstream_model);
                        super::cooldowns::observe(key, status, now);
                    }
                    if let Some(k) = self.provider_key.and_then(|k| p.keys.get(k)) {
                        super::cooldowns::observe_key(&k.id, status, now);
                    }
                }
            }
        }
        let cost = self.cost();
        if self.limits_asked && self.provider.is_some() {
            // What the rate limit service charges when the stream is done: tokens against
            // per-minute limits, cost against spend caps and credits.
            if let Some(k) = self.key.zip(self.index.as_deref()).map(|(k, i)| i.key(k)) {
                let charge = Charge {
                    key: &k.id,
                    request: &self.id,
                    tokens: self.usage.map_or(0, |u| u.total),
                }
                .value();
                let micros = cost.unwrap_or(0).to_string();
                for (name, value) in [
                    (CHARGE_STATE, charge.as_bytes()),
                    (COST_STATE, micros.as_bytes()),
                ] {
                    let _ = hostcalls::set_property(vec![name], Some(value));
                }
            }
        }
        if let Some(index) = self.index.as_deref() {
            if index.records.is_some() || index.record_state {
                let record = self.record(status, end_ns, cost);
                if index.record_state {
                    let _ =
                        hostcalls::set_property(vec![USAGE_FILTER_STATE], Some(record.as_bytes()));
                }
                if index.records.is_some() {
                    super::records::push(record.as_bytes());
                }
            }
        }
        self.observe(status, end_ns);
        // Counted in the VM, flushed to Envoy's stats on the root context's tick.
        super::metrics::count(|m| {
            m.requests += 1;
            if self.local_error {
                m.gateway_errors += 1;
            }
            if self.stream && self.provider.is_some() && !self.complete {
                m.incomplete_streams += 1;
            }
            if let Some(u) = self.usage {
                m.prompt_tokens += u.prompt;
                m.completion_tokens += u.completion;
            }
        });
    }
}

fn not_configured() -> FilterError {
    let mut e = FilterError::no_provider_key("switchyard");
    e.message = "The gateway has no configuration yet.".into();
    e.code = "not_configured";
    e
}

/// The response chunk being processed (the last callback of a stream may be empty).
fn response_chunk(size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}
