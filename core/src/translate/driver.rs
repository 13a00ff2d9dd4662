//! The framing every translator shares, around one pair's [`Converter`]: the status the client
//! sees, whole answers held until complete (and dropped when too costly to parse), streams split
//! into events (SSE, or the AWS event stream, events over 8 MiB skipped), usage and retry hints
//! kept, and a stream cut short marked as such in the client's API. The converter only converts.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::Translator;
use crate::error::FilterError;
use crate::sse::{event_data, EventSplitter};
use crate::usage::{FieldScan, Usage};
use switchyard_aws::eventstream::{Decoder, Message};

/// What to do with one response chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Forward the chunk as it came.
    Unchanged,
    /// Forward these bytes instead (possibly empty).
    Replace(Vec<u8>),
}

/// How a provider frames a streamed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-Sent Events (`text/event-stream`).
    Sse,
    /// The AWS event stream (`application/vnd.amazon.eventstream`), see [`switchyard_aws::eventstream`].
    AwsEventStream,
}

/// The client's API: how the driver itself tells a client that a stream went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    OpenAi,
    Anthropic,
}

impl ClientApi {
    /// The event ending a stream the provider cut short.
    fn incomplete_event(self) -> &'static [u8] {
        match self {
            ClientApi::OpenAi => super::schema::openai::OPENAI_INCOMPLETE_EVENT,
            ClientApi::Anthropic => super::schema::anthropic::ANTHROPIC_INCOMPLETE_EVENT,
        }
    }

    /// Appends the error event for a stream whose framing cannot be decoded.
    fn undecodable(self, out: &mut Vec<u8>) {
        const MESSAGE: &str = "The provider's stream could not be decoded.";
        match self {
            ClientApi::OpenAi => crate::sse::write_data(
                out,
                &super::schema::openai::OpenAiErrorOut::new(MESSAGE, "server_error", None),
            ),
            ClientApi::Anthropic => {
                super::schema::anthropic::AnthropicErrorOut::new("api_error", MESSAGE)
                    .write_event(out);
            }
        }
    }
}

/// One whole event of a provider's stream.
#[derive(Debug)]
pub enum Event<'a> {
    /// An SSE event: its bytes as they came (blank line included) and its `data`.
    Sse {
        raw: &'a [u8],
        data: Option<Cow<'a, [u8]>>,
    },
    /// An AWS event-stream message.
    Aws(Message),
}

impl Event<'_> {
    /// The `data` of an SSE event.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Event::Sse { data, .. } => data.as_deref(),
            Event::Aws(_) => None,
        }
    }

    /// The `data` of an SSE event as `T`; `None` when it is not one, or too costly to parse
    /// (skipped like an unknown event).
    pub fn parse<T: DeserializeOwned>(&self) -> Option<T> {
        parse_bounded(self.data()?)
    }
}

/// `json` as `T`, unless it holds more objects and arrays than a request may (a provider must
/// not keep a worker busy with an answer built to be costly to parse).
pub fn parse_bounded<T: DeserializeOwned>(json: &[u8]) -> Option<T> {
    if crate::request::too_complex(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// What a converter made of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The event goes to the client as it came.
    Keep,
    /// What the converter appended (possibly nothing) goes instead.
    Replaced,
}

/// What the driver and the converter know of a stream so far.
#[derive(Debug, Default)]
pub struct Progress {
    /// The usage, with OpenAI semantics, once the provider told it.
    pub usage: Option<Usage>,
    /// The stream reached its end marker.
    pub done: bool,
    /// An error event reached the client: the stream is not complete, and says so already.
    pub error_sent: bool,
}

/// What an error answer says beyond its body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ErrorHints {
    /// The status the client should see, when only the body tells.
    pub status: Option<u32>,
    /// Seconds the provider asked the client to wait.
    pub retry_after: Option<u64>,
}

/// One (client API, provider API) pair's conversion, framed by [`Framed`].
pub trait Converter {
    /// The client's API.
    const CLIENT: ClientApi;
    /// How the provider frames a streamed answer.
    const FRAMING: Framing = Framing::Sse;
    /// Whether the provider's answers may be streams; when not, every answer is taken whole
    /// whatever its content type.
    const STREAMS: bool = true;
    /// Answers pass as they come, read on the way: whole answers are never held, and their
    /// `usage` is read with [`Converter::passed_usage`].
    const PASSES_THROUGH: bool = false;

    /// Called once with the client's whole request body; returns the provider's body.
    fn request(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError>;

    /// The status the client sees for the provider's, when it differs.
    fn status(&self, _status: u32) -> Option<u32> {
        None
    }

    /// The provider's whole successful answer, as read.
    type Answer<'a>: Deserialize<'a>;

    /// Called with a whole successful answer; appends the client's answer and returns the
    /// usage, if the provider told it.
    fn response(&mut self, answer: Self::Answer<'_>, out: &mut Vec<u8>) -> Option<Usage>;

    /// Called instead of [`Converter::response`] when the answer cannot be read (or is too
    /// costly to parse): appends the client's error for this provider fault.
    fn unreadable(&mut self, out: &mut Vec<u8>) {
        self.error(502, b"", out);
    }

    /// Called with a whole error answer (status 400 and above); appends the client's error.
    fn error(&mut self, status: u32, body: &[u8], out: &mut Vec<u8>) -> ErrorHints;

    /// Called with each whole stream event; appends what the client receives for it, or keeps
    /// it as it came.
    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>, progress: &mut Progress) -> Pass;

    /// Called when a stream ends before its end marker and without an error: a provider that
    /// ends its streams by closing them appends the client's end here and returns `true`;
    /// otherwise the driver appends the client's incomplete-stream error.
    fn finish(&mut self, _out: &mut Vec<u8>, _progress: &Progress) -> bool {
        false
    }

    /// The usage of a whole answer passed through, from its top-level `usage` value.
    fn passed_usage(&self, _value: &[u8]) -> Option<Usage> {
        None
    }

    /// In a [`super::Chain`], the provider's own usage (see [`Translator::provider_usage`]).
    fn provider_usage(&mut self, _usage: Usage) {}

    /// Appends the path below the provider's base URL for this request (query included).
    fn upstream_path(&self, out: &mut String);
}

/// A whole answer held back chunk by chunk and converted once complete.
#[derive(Debug, Default)]
struct WholeBody(Vec<u8>);

impl WholeBody {
    /// Keeps `chunk`; the whole body once the stream ends, `None` before.
    fn complete(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        self.0.extend_from_slice(chunk);
        if !end_of_stream {
            return None;
        }
        let whole = std::mem::take(&mut self.0);
        // An answer too costly to parse is no answer: the converter reports a provider fault.
        Some(if crate::request::too_complex(&whole) {
            Vec::new()
        } else {
            whole
        })
    }
}

/// A [`Converter`] with the framing around it: the [`Translator`] the host drives.
#[derive(Debug, Default)]
pub struct Framed<C> {
    converter: C,
    status: u32,
    event_stream: bool,
    body: WholeBody,
    /// A passed-through answer's `usage`, read on the way (the answer is not kept).
    scan: Option<FieldScan>,
    splitter: EventSplitter,
    decoder: Decoder,
    progress: Progress,
    hints: ErrorHints,
}

impl<C: Converter> Framed<C> {
    pub fn around(converter: C) -> Self {
        Framed {
            converter,
            status: 0,
            event_stream: false,
            body: WholeBody::default(),
            scan: None,
            splitter: EventSplitter::default(),
            decoder: Decoder::default(),
            progress: Progress::default(),
            hints: ErrorHints::default(),
        }
    }

    fn whole(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome {
        if C::PASSES_THROUGH {
            let scan = self.scan.get_or_insert_with(|| FieldScan::new("usage"));
            if self.status < 400 {
                scan.feed(chunk);
            }
            if end_of_stream {
                if let Some(u) = scan.value().and_then(|v| self.converter.passed_usage(v)) {
                    self.progress.usage = Some(u);
                }
                self.progress.done = true;
                self.scan = None;
            }
            return ChunkOutcome::Unchanged;
        }
        let Some(body) = self.body.complete(chunk, end_of_stream) else {
            // Held back: the client receives nothing yet.
            return ChunkOutcome::Replace(Vec::new());
        };
        self.progress.done = true;
        let mut out = Vec::with_capacity(body.len());
        if self.status >= 400 {
            self.hints = self.converter.error(self.status, &body, &mut out);
        } else {
            match serde_json::from_slice::<C::Answer<'_>>(&body) {
                Ok(answer) => self.progress.usage = self.converter.response(answer, &mut out),
                Err(_) => self.converter.unreadable(&mut out),
            }
        }
        ChunkOutcome::Replace(out)
    }

    fn stream(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome {
        let mut out = Vec::with_capacity(if C::PASSES_THROUGH {
            0
        } else {
            chunk.len() * 2
        });
        // Whether `out` holds what the client receives: until an event is replaced, a chunk
        // passed through is not copied (its kept events are `chunk[..kept]`).
        let mut rewriting = !C::PASSES_THROUGH || self.splitter.carries();
        match C::FRAMING {
            Framing::Sse => {
                let (converter, progress) = (&mut self.converter, &mut self.progress);
                let mut kept = 0;
                let aligned = self.splitter.feed(chunk, |raw| {
                    let event = Event::Sse {
                        raw,
                        data: event_data(raw),
                    };
                    let at = out.len();
                    match converter.event(event, &mut out, progress) {
                        Pass::Keep if rewriting => out.extend_from_slice(raw),
                        Pass::Keep => kept += raw.len(),
                        Pass::Replaced if rewriting => {}
                        Pass::Replaced => {
                            // The first change: what was kept so far goes before it.
                            out.splice(at..at, chunk[..kept].iter().copied());
                            rewriting = true;
                        }
                    }
                });
                if !aligned && !rewriting {
                    out.extend_from_slice(&chunk[..kept]);
                    rewriting = true;
                }
                if end_of_stream {
                    // A partial event at the end cannot be valid; it is not forwarded.
                    self.splitter.take_pending();
                }
            }
            Framing::AwsEventStream => {
                let mut messages = Vec::new();
                let framing = self.decoder.feed(chunk, |m| messages.push(m));
                for m in messages {
                    self.converter
                        .event(Event::Aws(m), &mut out, &mut self.progress);
                }
                if framing.is_err() && !self.progress.error_sent {
                    C::CLIENT.undecodable(&mut out);
                    self.progress.error_sent = true;
                }
                rewriting = true;
            }
        }
        if end_of_stream && !self.progress.done && !self.progress.error_sent {
            if self.converter.finish(&mut out, &self.progress) {
                self.progress.done = true;
            } else {
                if !rewriting {
                    out.splice(0..0, chunk.iter().copied());
                    rewriting = true;
                }
                out.extend_from_slice(C::CLIENT.incomplete_event());
            }
        }
        if rewriting {
            ChunkOutcome::Replace(out)
        } else {
            ChunkOutcome::Unchanged
        }
    }
}

impl<C: Converter> Translator for Framed<C> {
    fn request_body(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        self.converter.request(body, upstream_model)
    }

    fn response_headers(&mut self, status: u32, event_stream: bool) -> Option<u32> {
        self.status = status;
        self.event_stream = event_stream;
        self.converter.status(status)
    }

    fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome {
        if !C::STREAMS || !self.event_stream || self.status >= 400 {
            self.whole(chunk, end_of_stream)
        } else {
            self.stream(chunk, end_of_stream)
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.progress.usage
    }

    fn provider_usage(&mut self, usage: Usage) {
        self.converter.provider_usage(usage);
    }

    fn completed(&self) -> bool {
        // A stream missing an event (one too long to keep) is not whole either.
        self.progress.done && self.splitter.skipped() == 0
    }

    fn passes_through(&self) -> bool {
        C::PASSES_THROUGH
    }

    fn retry_after(&self) -> Option<u64> {
        self.hints.retry_after
    }

    fn error_status(&self) -> Option<u32> {
        self.hints.status
    }

    fn upstream_path(&self, out: &mut String) {
        self.converter.upstream_path(out);
    }

    fn content_type(&self, event_stream: bool, upstream: &str) -> Option<&'static str> {
        if C::PASSES_THROUGH && !event_stream {
            // A whole answer passed through is the provider's, headers included.
            return None;
        }
        super::client_content_type(event_stream && C::STREAMS, upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass-through that ends at `end`, drops `drop` and replaces `swap`.
    #[derive(Default)]
    struct Echo;

    impl Converter for Echo {
        const CLIENT: ClientApi = ClientApi::OpenAi;
        const PASSES_THROUGH: bool = true;

        fn request(&mut self, body: &[u8], _: &str) -> Result<Vec<u8>, FilterError> {
            Ok(body.to_vec())
        }

        type Answer<'a> = serde::de::IgnoredAny;

        fn response(&mut self, _: Self::Answer<'_>, _: &mut Vec<u8>) -> Option<Usage> {
            None
        }

        fn error(&mut self, _: u32, _: &[u8], _: &mut Vec<u8>) -> ErrorHints {
            ErrorHints::default()
        }

        fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>, p: &mut Progress) -> Pass {
            match event.data() {
                Some(b"end") => {
                    p.done = true;
                    Pass::Keep
                }
                Some(b"drop") => Pass::Replaced,
                Some(b"swap") => {
                    out.extend_from_slice(b"data: swapped\n\n");
                    Pass::Replaced
                }
                _ => Pass::Keep,
            }
        }

        fn passed_usage(&self, value: &[u8]) -> Option<Usage> {
            crate::usage::from_openai_usage_value(value)
        }

        fn upstream_path(&self, out: &mut String) {
            out.push_str("/echo");
        }
    }

    fn feed(t: &mut Framed<Echo>, body: &[u8], cut: usize) -> (Vec<u8>, Vec<bool>) {
        let mut out = Vec::new();
        let mut unchanged = Vec::new();
        for (chunk, end) in [(&body[..cut], false), (&body[cut..], true)] {
            match t.response_body(chunk, end) {
                ChunkOutcome::Unchanged => {
                    unchanged.push(true);
                    out.extend_from_slice(chunk);
                }
                ChunkOutcome::Replace(b) => {
                    unchanged.push(false);
                    out.extend_from_slice(&b);
                }
            }
        }
        (out, unchanged)
    }

    #[test]
    fn passed_events_are_copied_only_once_one_changes_at_every_split() {
        let stream = b"data: a\n\ndata: swap\n\ndata: b\n\n: note\n\ndata: drop\n\ndata: end\n\n";
        let expected = b"data: a\n\ndata: swapped\n\ndata: b\n\n: note\n\ndata: end\n\n";
        for cut in 0..=stream.len() {
            let mut t = Framed::around(Echo);
            t.response_headers(200, true);
            let (out, _) = feed(&mut t, stream, cut);
            assert_eq!(out, expected, "split at {cut}");
            assert!(t.completed());
        }
        let mut t = Framed::around(Echo);
        t.response_headers(200, true);
        let plain = b"data: a\n\ndata: end\n\n";
        assert_eq!(feed(&mut t, plain, 9), (plain.to_vec(), vec![true, true]));
    }

    #[test]
    fn a_passed_stream_cut_short_gets_the_incomplete_event() {
        for cut in 0..=12 {
            let mut t = Framed::around(Echo);
            t.response_headers(200, true);
            let (out, _) = feed(&mut t, b"data: a\n\ndata: b", cut);
            assert_eq!(
                out,
                [
                    &b"data: a\n\n"[..],
                    super::super::schema::openai::OPENAI_INCOMPLETE_EVENT
                ]
                .concat(),
                "split at {cut}"
            );
            assert!(!t.completed());
        }
    }

    #[test]
    fn a_passed_whole_answer_is_read_for_its_usage() {
        let mut t = Framed::around(Echo);
        t.response_headers(200, false);
        let body = br#"{"usage":{"prompt_tokens":2,"completion_tokens":1}}"#;
        assert_eq!(feed(&mut t, body, 7).1, vec![true, true]);
        assert_eq!(t.usage().map(|u| u.total), Some(3));
        assert!(t.completed());
    }

    /// A hostile provider (a user's own) must not keep a worker busy with an answer built to
    /// be costly to parse: the whole answer, or a stream event, is dropped instead.
    #[test]
    fn answers_too_costly_to_parse_are_dropped() {
        let costly = format!(
            r#"{{"content":[{}]}}"#,
            vec!["{}"; crate::request::MAX_CONTAINERS].join(",")
        );
        let mut body = WholeBody::default();
        assert_eq!(body.complete(costly.as_bytes(), false), None);
        assert_eq!(body.complete(b"", true), Some(Vec::new()));
        assert_eq!(parse_bounded::<serde_json::Value>(costly.as_bytes()), None);
        assert_eq!(
            parse_bounded::<serde_json::Value>(b"{\"ok\":1}"),
            Some(serde_json::json!({"ok": 1}))
        );
    }
}
