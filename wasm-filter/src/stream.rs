//! Pure OpenAI stream handling: usage taken from the stream; when the client did not ask for
//! usage, what the gateway's own `include_usage` added is taken out again (the usage-only chunk
//! and the `"usage":null` field of every other chunk); a stream the provider cut short is marked
//! as failed.
//!
//! Chat Completions streams end with `data: [DONE]`; with `stream_options.include_usage` the last
//! chunk before it has `"choices": []` and the usage.
//! <https://platform.openai.com/docs/api-reference/chat/streaming>

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::sse::{event_data, EventSplitter};
use crate::usage::{OpenAiUsage, Usage};

/// What to do with one response chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Forward the chunk as it came.
    Unchanged,
    /// Forward these bytes instead (possibly empty).
    Replace(Vec<u8>),
}

/// State of one OpenAI-style response stream.
#[derive(Debug)]
pub struct OpenAiStream {
    splitter: EventSplitter,
    client_wants_usage: bool,
    done: bool,
    saw_error: bool,
    usage: Option<Usage>,
}

/// Appended when the provider's stream ends without `[DONE]`, so no client takes it as complete.
pub const INCOMPLETE_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The provider's stream ended before it was complete.\",\"type\":\"api_error\",\"param\":null,\"code\":\"stream_incomplete\"}}\n\n";

impl OpenAiStream {
    pub fn new(client_wants_usage: bool) -> Self {
        OpenAiStream {
            splitter: EventSplitter::default(),
            client_wants_usage,
            done: false,
            saw_error: false,
            usage: None,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether the stream reached `[DONE]` with every event in it (none too long to keep).
    pub fn completed(&self) -> bool {
        self.done && self.splitter.skipped() == 0
    }

    /// Handles one chunk as it arrives; whole events are forwarded, a partial one waits.
    pub fn on_chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome {
        let mut out = Vec::with_capacity(chunk.len() + self.splitter_pending_hint());
        let mut dropped = false;
        let (client_wants_usage, done, saw_error, usage) = (
            self.client_wants_usage,
            &mut self.done,
            &mut self.saw_error,
            &mut self.usage,
        );
        let aligned = self.splitter.feed(chunk, |event| {
            match inspect(event, client_wants_usage, done, saw_error, usage) {
                Verdict::Keep => out.extend_from_slice(event),
                Verdict::Drop => dropped = true,
                Verdict::StripNullUsage(at, len) => {
                    out.extend_from_slice(&event[..at]);
                    out.extend_from_slice(&event[at + len..]);
                    dropped = true;
                }
            }
        });
        if end_of_stream {
            if self.splitter.has_pending() {
                // A partial event at the end cannot be valid; it is not forwarded half-written.
                self.splitter.take_pending();
            }
            if !self.done && !self.saw_error {
                out.extend_from_slice(INCOMPLETE_EVENT);
                return ChunkOutcome::Replace(out);
            }
        }
        if aligned && !dropped {
            ChunkOutcome::Unchanged
        } else {
            ChunkOutcome::Replace(out)
        }
    }

    fn splitter_pending_hint(&self) -> usize {
        if self.splitter.has_pending() {
            256
        } else {
            0
        }
    }
}

/// What to do with one event.
enum Verdict {
    Keep,
    Drop,
    /// Forward it without the bytes at `(offset, len)`: the `"usage":null` the client did not
    /// ask for.
    StripNullUsage(usize, usize),
}

/// Where `"usage":null` (with the comma that joins it) sits in an event, if it does. As raw
/// bytes this cannot occur inside a JSON string, whose quotes are escaped.
fn null_usage(event: &[u8]) -> Option<(usize, usize)> {
    const TRAILING: &[u8] = b",\"usage\":null";
    const LEADING: &[u8] = b"\"usage\":null,";
    memchr::memmem::find(event, TRAILING)
        .map(|at| (at, TRAILING.len()))
        .or_else(|| memchr::memmem::find(event, LEADING).map(|at| (at, LEADING.len())))
}

/// Looks at one whole event and decides what reaches the client.
fn inspect(
    event: &[u8],
    client_wants_usage: bool,
    done: &mut bool,
    saw_error: &mut bool,
    usage: &mut Option<Usage>,
) -> Verdict {
    let Some(data) = event_data(event) else {
        return Verdict::Keep;
    };
    if data.as_ref() == b"[DONE]" {
        *done = true;
        return Verdict::Keep;
    }
    if !client_wants_usage {
        if let Some((at, len)) = null_usage(event) {
            return Verdict::StripNullUsage(at, len);
        }
    }
    let has_usage = memchr::memmem::find(&data, b"\"usage\"").is_some();
    let has_error = memchr::memmem::find(&data, b"\"error\"").is_some();
    if !has_usage && !has_error {
        return Verdict::Keep;
    }
    #[derive(Deserialize)]
    struct Chunk {
        #[serde(default)]
        choices: Option<Vec<IgnoredAny>>,
        #[serde(default)]
        usage: Option<OpenAiUsage>,
        #[serde(default)]
        error: Option<IgnoredAny>,
    }
    if crate::request::too_complex(&data) {
        return Verdict::Keep;
    }
    let Ok(chunk) = serde_json::from_slice::<Chunk>(&data) else {
        return Verdict::Keep;
    };
    if chunk.error.is_some() {
        *saw_error = true;
    }
    match chunk.usage {
        Some(u) => {
            *usage = Some(u.into());
            let usage_only = chunk.choices.as_ref().is_none_or(Vec::is_empty);
            if client_wants_usage || !usage_only {
                Verdict::Keep
            } else {
                Verdict::Drop
            }
        }
        None => Verdict::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTENT: &[u8] = b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    const FINISH: &[u8] = b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    const USAGE: &[u8] = b"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";

    fn whole() -> Vec<u8> {
        [CONTENT, FINISH, USAGE, DONE].concat()
    }

    /// Feeds `stream` cut at `cuts`, returning what the client receives.
    fn run(stream: &[u8], cuts: &[usize], wants_usage: bool) -> (Vec<u8>, OpenAiStream) {
        let mut s = OpenAiStream::new(wants_usage);
        let mut out = Vec::new();
        let mut prev = 0;
        let mut bounds: Vec<usize> = cuts.to_vec();
        bounds.push(stream.len());
        for (i, &b) in bounds.iter().enumerate() {
            let chunk = &stream[prev..b];
            match s.on_chunk(chunk, i == bounds.len() - 1) {
                ChunkOutcome::Unchanged => out.extend_from_slice(chunk),
                ChunkOutcome::Replace(bytes) => out.extend_from_slice(&bytes),
            }
            prev = b;
        }
        (out, s)
    }

    #[test]
    fn usage_chunk_kept_when_asked_and_passed_unchanged() {
        let mut s = OpenAiStream::new(true);
        assert_eq!(s.on_chunk(&whole(), false), ChunkOutcome::Unchanged);
        assert_eq!(s.on_chunk(b"", true), ChunkOutcome::Unchanged);
        assert_eq!(s.usage().map(|u| u.total), Some(12));
        assert!(s.completed());
    }

    fn without_null_usage(event: &[u8]) -> Vec<u8> {
        String::from_utf8_lossy(event)
            .replace(",\"usage\":null", "")
            .into_bytes()
    }

    #[test]
    fn usage_chunk_dropped_when_not_asked_at_every_split() {
        let stream = whole();
        let expected = [
            without_null_usage(CONTENT),
            without_null_usage(FINISH),
            DONE.to_vec(),
        ]
        .concat();
        for i in 0..=stream.len() {
            let (out, s) = run(&stream, &[i], false);
            assert_eq!(out, expected, "split at {i}");
            assert_eq!(s.usage().map(|u| u.prompt), Some(9));
        }
    }

    #[test]
    fn cut_stream_ends_with_an_error_event() {
        let stream = [CONTENT, &FINISH[..20]].concat();
        let (out, s) = run(&stream, &[CONTENT.len()], true);
        assert_eq!(out, [CONTENT, INCOMPLETE_EVENT].concat());
        assert!(!s.completed());
    }

    #[test]
    fn provider_error_event_is_not_doubled() {
        let err = b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
        let stream = [CONTENT, &err[..]].concat();
        let (out, _) = run(&stream, &[], true);
        assert_eq!(out, stream);
    }

    #[test]
    fn usage_inside_a_content_chunk_is_counted_and_kept() {
        let chunk = b"data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n";
        let stream = [&chunk[..], DONE].concat();
        let (out, s) = run(&stream, &[], false);
        assert_eq!(out, stream);
        assert_eq!(s.usage().map(|u| u.total), Some(2));
    }
}
