//! The answer's way back: its headers (a failover switch, how the body will be handled, which
//! headers the client gets) and each body chunk (read for usage, translated, or replaced by a
//! gateway error).

use crate::error::{ErrorSource, FilterError};
use crate::headers::{self, HeaderBlock};
use crate::translate::openai_passthrough::OpenAiPassthrough;
use crate::translate::{ChunkOutcome, Translator};
use crate::usage;

use super::{Exchange, Reply, Response, Shared};

/// Header values the exchange sets (`None`: removes).
pub type Writes = Vec<(&'static str, Option<Vec<u8>>)>;

/// What becomes of the answer's headers.
#[derive(Debug, Default)]
pub struct Head {
    /// Single header writes, made first and in order.
    pub each: Writes,
    /// The answer's headers are replaced by the allow-listed ones with these set (see
    /// [`Head::map`]).
    pub set: Option<Writes>,
    /// The headers wait for the body.
    pub pause: bool,
}

impl Head {
    /// The whole header map the client gets, if it differs from the `provider`'s.
    pub fn map<'a>(&'a self, provider: &'a HeaderBlock) -> Option<Vec<(&'a str, &'a [u8])>> {
        let set: Vec<(&str, Option<&[u8]>)> = self
            .set
            .as_ref()?
            .iter()
            .map(|(name, value)| (*name, value.as_deref()))
            .collect();
        headers::response_headers(provider, &set)
    }
}

/// What becomes of one body chunk.
#[derive(Debug)]
pub struct Chunk {
    pub body: ChunkOutcome,
    /// Header writes (only while the headers are held), made before the body's.
    pub headers: Writes,
    /// Hold the chunk (and the headers) until the answer is whole.
    pub pause: bool,
}

impl Exchange {
    /// A gateway error in place of the provider's answer, whose headers have not left yet:
    /// the status and type are set now, the body when the answer ends.
    fn refuse_answer(&mut self, error: &FilterError) -> Writes {
        let reply = Reply::error(error, self.anthropic());
        self.local_error = true;
        self.error_code = reply.code;
        if error.source == ErrorSource::Provider {
            // The provider's fault, whatever its status said: its target's health hears so.
            self.provider_fault = Some(reply.status);
        }
        let status = reply.status.to_string().into_bytes();
        self.response = Response::Refused(reply.body);
        vec![
            (":status", Some(status)),
            ("content-type", Some(b"application/json".to_vec())),
            ("content-length", None),
            ("content-encoding", None),
            ("retry-after", None),
        ]
    }

    /// When a failover attempt went to another target than the one chosen here, the answer is
    /// that target's: take its provider, model and translator.
    fn follow_failover(&mut self) {
        let Some(plan) = &self.plan else {
            return;
        };
        let Some(switch) = plan.take_switch() else {
            return;
        };
        if let Some(t) = plan.entry().and_then(|e| e.targets.get(switch.target)) {
            self.provider = Some(t.provider);
            self.upstream_model.clone_from(&t.model);
            self.translator = switch.translator;
            self.provider_key = switch.key;
        }
    }

    /// The answer's headers arrived (`head`); `code_details` reads Envoy's response code details.
    pub fn response_headers(
        &mut self,
        head: &HeaderBlock,
        code_details: impl Fn() -> Option<Vec<u8>>,
        clock: &impl Shared,
    ) -> Head {
        let out = self.answer_headers(head, code_details, clock);
        // The status the client is sent: the answer's unless written here.
        self.sent_status = written_status(&out.each)
            .or_else(|| out.set.as_deref().and_then(written_status))
            .or_else(|| head.find_str(":status").and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        out
    }

    fn answer_headers(
        &mut self,
        head: &HeaderBlock,
        code_details: impl Fn() -> Option<Vec<u8>>,
        clock: &impl Shared,
    ) -> Head {
        let mut out = Head::default();
        if self.local_reply || self.provider.is_none() {
            return out;
        }
        self.first_byte_ns = clock.now_ns();
        self.follow_failover();
        let status: u32 = head
            .find_str(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let content_type = head.find_str("content-type").unwrap_or_default();
        let event_stream = content_type.starts_with("text/event-stream")
            || content_type.starts_with("application/vnd.amazon.eventstream");
        // Envoy's own replies (already JSON in the client's shape) are not the provider's.
        let envoy_reply = status >= 400 && code_details().is_none_or(|d| d != b"via_upstream");
        let encoded = !envoy_reply
            && head
                .find("content-encoding")
                .is_some_and(|e| !e.eq_ignore_ascii_case(b"identity"));
        let mut changes: Writes = Vec::new();
        if encoded {
            // The gateway asks for identity (the route drops the client's Accept-Encoding): a
            // compressed answer would hide its usage and could not be translated.
            changes = self.refuse_answer(&FilterError::provider_encoding());
        } else if !envoy_reply {
            // An OpenAI-style provider's answer goes through the pass-through converter.
            let mut translator = self.translator.take().unwrap_or_else(|| {
                Box::new(OpenAiPassthrough::new(self.client_wants_usage)) as Box<dyn Translator>
            });
            let client_status = translator.response_headers(status, event_stream);
            let passes = translator.passes_through();
            if event_stream || !passes {
                // The body may change (translated, a usage chunk dropped, an error
                // appended): its length is unknown.
                changes.push(("content-length", None));
            }
            if let Some(client_type) = translator.content_type(event_stream, content_type) {
                changes.push(("content-type", Some(client_type.as_bytes().to_vec())));
            }
            if let Some(client_status) = client_status {
                changes.push((":status", Some(client_status.to_string().into_bytes())));
            }
            if !event_stream && !passes {
                // A whole answer: held until it is complete (and within bounds), so that
                // its status can still change and a retry delay found in it be sent.
                self.hold_headers = true;
                out.pause = true;
            }
            self.response = Response::Translated(translator);
        }
        // An Envoy reply: nothing to translate, and no usage.
        changes.push(("x-request-id", Some(self.id.clone().into_bytes())));
        if let Some(leased) = &self.leased {
            for (name, value) in &leased.headers {
                changes.push((name, Some(value.clone().into_bytes())));
            }
        }
        out.set = Some(changes);
        out
    }

    /// Whether [`Exchange::response_body`] reads the chunks' bytes (else the host need not
    /// fetch them).
    pub fn reads_chunks(&self) -> bool {
        matches!(self.response, Response::Translated(_))
    }

    /// One chunk of the answer: `chunk` holds its `size` bytes when [`Exchange::reads_chunks`]
    /// (the last one may be empty).
    pub fn response_body(
        &mut self,
        chunk: Vec<u8>,
        size: usize,
        end_of_stream: bool,
        clock: &impl Shared,
    ) -> Chunk {
        let out = self.answer_body(chunk, size, end_of_stream, clock);
        if let Some(status) = written_status(&out.headers) {
            self.sent_status = status;
        }
        self.answer_ended |= end_of_stream;
        out
    }

    fn answer_body(
        &mut self,
        chunk: Vec<u8>,
        size: usize,
        end_of_stream: bool,
        clock: &impl Shared,
    ) -> Chunk {
        let mut out = Chunk {
            body: ChunkOutcome::Unchanged,
            headers: Vec::new(),
            pause: false,
        };
        if self.stream && self.first_token_ns == 0 && size > 0 {
            self.first_token_ns = clock.now_ns();
        }
        if end_of_stream && self.provider.is_some() {
            self.last_chunk_ns = clock.now_ns();
        }
        let limit = self
            .index
            .as_deref()
            .map_or(usize::MAX, |i| i.max_response_bytes);
        if self.hold_headers && matches!(self.response, Response::Translated(_)) {
            self.held = self.held.saturating_add(size);
            if self.held > limit {
                // Nothing has reached the client yet: a clear error instead of the answer.
                out.headers = self.refuse_answer(&FilterError::provider_too_large(limit));
            }
        }
        match &mut self.response {
            Response::Pass => {}
            Response::Refused(error) => {
                // The provider's bytes are dropped unread.
                out.body = ChunkOutcome::Replace(if end_of_stream {
                    std::mem::take(error)
                } else {
                    Vec::new()
                });
                out.pause = self.hold_headers && !end_of_stream;
            }
            Response::Translated(translator) => {
                let translated = translator.response_body(&chunk, end_of_stream);
                if self.hold_headers {
                    if !end_of_stream {
                        // The translator keeps what it needs; Envoy keeps nothing.
                        out.body = ChunkOutcome::Replace(Vec::new());
                        out.pause = true;
                        return out;
                    }
                    let body = match translated {
                        ChunkOutcome::Replace(bytes) => bytes,
                        ChunkOutcome::Unchanged => chunk,
                    };
                    // The headers have waited for this: the exact length, and what only the
                    // body told (a retry delay, the status an error should have).
                    let set = [
                        ("content-length", Some(body.len() as u64)),
                        ("retry-after", translator.retry_after()),
                        (":status", translator.error_status().map(u64::from)),
                    ];
                    for (name, value) in set {
                        if let Some(value) = value {
                            out.headers
                                .push((name, Some(value.to_string().into_bytes())));
                        }
                    }
                    out.body = ChunkOutcome::Replace(body);
                } else {
                    let sent = match &translated {
                        ChunkOutcome::Replace(bytes) => bytes.as_slice(),
                        ChunkOutcome::Unchanged => chunk.as_slice(),
                    };
                    if self.stream {
                        self.streamed_tokens = self
                            .streamed_tokens
                            .saturating_add(usage::estimate_streamed_tokens(sent));
                    }
                    out.body = translated;
                }
                if end_of_stream {
                    self.usage = translator.usage();
                    self.complete = translator.completed();
                }
            }
        }
        out
    }
}

/// The `:status` among header writes, if one is written.
fn written_status(writes: &[(&str, Option<Vec<u8>>)]) -> Option<u32> {
    writes
        .iter()
        .rev()
        .find(|(name, _)| *name == ":status")
        .and_then(|(_, value)| std::str::from_utf8(value.as_deref()?).ok()?.parse().ok())
}
