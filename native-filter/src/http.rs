//! The downstream filter role: one HTTP request read from and written to Envoy, every decision
//! left to its [`Exchange`]; at the end, the exchange's outcome published (cooldowns, the limits
//! charge, the request's record, metrics).

use std::sync::Arc;

use switchyard_core::config::USAGE_FILTER_STATE;
use switchyard_core::exchange::{Exchange, Shared as _, Step};
use switchyard_core::headers::HeaderBlock;
use switchyard_core::lease::NoGrant;
use switchyard_core::translate::ChunkOutcome;

use crate::ffi::{Body, HeaderMap, Stream};
use crate::shared::{self, Host};
use crate::{lease, plan, records, reply, state_key, Action, RequestOut, Settings};

pub(crate) struct Request {
    exchange: Exchange,
    settings: Arc<Settings>,
    /// The token of the failover plan handed to the upstream role.
    plan: Option<u64>,
}

impl Request {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        Request {
            exchange: Exchange::new(settings.index.clone()),
            settings,
            plan: None,
        }
    }

    /// Carries out the exchange's step.
    fn act(&mut self, stream: Stream, step: Step) -> Action {
        match step {
            Step::Continue => {
                if let (None, Some(p)) = (self.plan, self.exchange.plan()) {
                    let token = plan::insert(p.clone(), Arc::clone(&self.settings));
                    stream.set_filter_state(
                        &state_key(plan::PLAN_STATE),
                        token.to_string().as_bytes(),
                    );
                    self.plan = Some(token);
                }
                Action::Continue
            }
            Step::Pause => Action::Pause,
            Step::Reply(r) => {
                reply(stream, &r, Some(self.exchange.id()));
                Action::Replied
            }
            Step::Lease(ask) => {
                // The request waits for its key's lease (the answer comes to `lease_answered`);
                // an ask that cannot leave lets it go on (fail open), as a late answer does.
                let sent = self.exchange.index().is_some_and(|index| {
                    lease::ask(stream, index, &ask, self.settings.dataplane_key.as_ref())
                });
                if sent {
                    return Action::Pause;
                }
                crate::ffi::log(crate::ffi::LOG_WARN, NoGrant::NotSent.warning());
                let step = self.exchange.lease_answered(None, false, &Host);
                self.act(stream, step)
            }
        }
    }

    /// The answer to the request's lease ask (`answered`: it came; `ok`: with status 200).
    pub(crate) fn lease_answered(&mut self, stream: Stream, answered: bool, ok: bool, body: &[u8]) {
        let grant = lease::grant(answered, ok, body)
            .inspect_err(|why| crate::ffi::log(crate::ffi::LOG_WARN, why.warning()))
            .ok();
        let step = self.exchange.lease_answered(grant, true, &Host);
        if self.act(stream, step) == Action::Continue {
            stream.continue_decoding();
        }
    }

    pub(crate) fn request_headers(&mut self, stream: Stream, end_of_stream: bool) -> Action {
        let start_ns = Host.now_ns();
        let id = switchyard_core::outbox::next_request_id(start_ns);
        let headers = stream.with_headers(HeaderMap::Request, HeaderBlock::from_byte_pairs);
        let step = self
            .exchange
            .request_headers(start_ns, id, headers, end_of_stream);
        self.act(stream, step)
    }

    pub(crate) fn request_body(&mut self, stream: Stream, end_of_stream: bool) -> Action {
        // The body so far: what Envoy buffered while the filter paused, then this chunk.
        let size =
            stream.body_size(Body::BufferedRequest) + stream.body_size(Body::ReceivedRequest);
        let body = || {
            let mut all = Vec::with_capacity(size);
            stream.read_body(Body::BufferedRequest, &mut all);
            stream.read_body(Body::ReceivedRequest, &mut all);
            all
        };
        let settings = Arc::clone(&self.settings);
        let step = shared::cooldowns(&settings.target_keys, Host.now_ns(), |c| {
            self.exchange.request_body(
                size,
                end_of_stream,
                body,
                c,
                &Host,
                &mut RequestOut {
                    stream,
                    buffered: Body::BufferedRequest,
                    received: Body::ReceivedRequest,
                },
            )
        });
        self.act(stream, step)
    }

    pub(crate) fn request_trailers(&mut self, stream: Stream) -> Action {
        let step = self.exchange.request_trailers();
        self.act(stream, step)
    }

    pub(crate) fn response_headers(&mut self, stream: Stream) -> Action {
        let head = stream.with_headers(HeaderMap::Response, HeaderBlock::from_byte_pairs);
        let code_details = || stream.response_code_details();
        let out = self.exchange.response_headers(&head, code_details, &Host);
        for (name, value) in &out.each {
            stream.set_header(HeaderMap::Response, name, value.as_deref());
        }
        if let Some(map) = out.map(&head) {
            rewrite_map(stream, HeaderMap::Response, &map);
        }
        if out.pause {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    pub(crate) fn response_body(&mut self, stream: Stream, end_of_stream: bool) -> Action {
        let size = stream.body_size(Body::ReceivedResponse);
        let mut chunk = Vec::new();
        if self.exchange.reads_chunks() && size > 0 {
            chunk.reserve_exact(size);
            stream.read_body(Body::ReceivedResponse, &mut chunk);
        }
        let out = self
            .exchange
            .response_body(chunk, size, end_of_stream, &Host);
        for (name, value) in &out.headers {
            stream.set_header(HeaderMap::Response, name, value.as_deref());
        }
        if let ChunkOutcome::Replace(bytes) = &out.body {
            stream.drain_body(Body::ReceivedResponse);
            if !bytes.is_empty() {
                stream.append_body(Body::ReceivedResponse, bytes);
            }
        }
        if out.pause {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    pub(crate) fn complete(&mut self, stream: Stream) {
        let response_code = || u32::try_from(stream.response_code()).unwrap_or(0);
        let outcome = self.exchange.finish(response_code, &Host);
        if let Some(index) = self.exchange.index() {
            shared::observe(
                index,
                &outcome.observations,
                outcome.end_ns / 1_000_000_000,
                stream,
            );
        }
        if let Some(end) = &outcome.lease_end {
            switchyard_core::lease::request_ended(&Host, end);
        }
        if let Some(record) = &outcome.record {
            if outcome.record_to_state {
                stream.set_filter_state(&state_key(USAGE_FILTER_STATE), record.as_bytes());
            }
            if outcome.record_to_outbox {
                records::push(record.as_bytes());
            }
        }
        let metrics = &self.settings.metrics;
        self.exchange
            .samples(outcome.status, outcome.end_ns, |name, labels, value| {
                metrics.record(name, labels, value);
            });
        metrics.count(&outcome.counts);
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(token) = self.plan.take() {
            plan::remove(token);
        }
    }
}

/// Makes a header map hold exactly `wanted` (names in order, repeated names kept), writing
/// only the names whose values differ.
fn rewrite_map(stream: Stream, map: HeaderMap, wanted: &[(&str, &[u8])]) {
    let writes = stream.with_headers(map, |current| plan_rewrite(current, wanted));
    for (name, values) in writes {
        match values.split_first() {
            None => {
                stream.set_header(map, &name, None);
            }
            Some((first, rest)) => {
                stream.set_header(map, &name, Some(first));
                for value in rest {
                    stream.add_header(map, &name, value);
                }
            }
        }
    }
}

/// The writes that turn `current` into `wanted`: each name whose values differ, with its new
/// values (none: remove it). Compared in place: nothing is copied but what is written (the
/// copies made per header to compare them were a tenth of the module's work on a request).
fn plan_rewrite<'w>(
    current: &[(&[u8], &[u8])],
    wanted: &[(&'w str, &'w [u8])],
) -> Vec<(String, Vec<&'w [u8]>)> {
    fn values<'a, 'n>(
        pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + 'n,
        name: &'n [u8],
    ) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        pairs.filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }
    let now = |name| values(current.iter().copied(), name);
    let then = |name| values(wanted.iter().map(|(n, v)| (n.as_bytes(), *v)), name);
    let names: Vec<&[u8]> = current
        .iter()
        .map(|(n, _)| *n)
        .chain(wanted.iter().map(|(n, _)| n.as_bytes()))
        .collect();
    let mut writes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let first = !names[..i].contains(name);
        if first && !now(name).eq(then(name)) {
            if let Ok(text) = std::str::from_utf8(name) {
                writes.push((text.to_owned(), then(name).collect()));
            }
        }
    }
    writes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::plan_rewrite;

    #[test]
    fn only_differing_names_are_written_and_dropped_names_removed() {
        let current: &[(&[u8], &[u8])] = &[
            (b":status", b"200"),
            (b"content-type", b"application/json"),
            (b"x-secret", b"1"),
            (b"set-cookie", b"a"),
            (b"set-cookie", b"b"),
        ];
        let wanted: &[(&str, &[u8])] = &[
            (":status", b"200"),
            ("content-type", b"text/event-stream"),
            ("set-cookie", b"a"),
            ("set-cookie", b"b"),
            ("x-request-id", b"r1"),
        ];
        let writes = plan_rewrite(current, wanted);
        assert_eq!(
            writes,
            vec![
                ("content-type".to_owned(), vec![&b"text/event-stream"[..]]),
                ("x-secret".to_owned(), vec![]),
                ("x-request-id".to_owned(), vec![&b"r1"[..]]),
            ]
        );
    }
}
