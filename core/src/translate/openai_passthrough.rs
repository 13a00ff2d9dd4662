//! OpenAI Chat Completions (client) to an OpenAI-style provider: the request goes with only
//! `model` (and the provider's quirks) changed, by the host; the answer passes as it comes,
//! read on the way for its usage. When the client did not ask for usage, what the gateway's own
//! `include_usage` added is taken out again (the usage-only chunk and the `"usage":null` field
//! of every other chunk); a stream the provider cut short is marked as failed.
//!
//! Chat Completions streams end with `data: [DONE]`; with `stream_options.include_usage` the last
//! chunk before it has `"choices": []` and the usage.
//! <https://platform.openai.com/docs/api-reference/chat/streaming>

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::driver::{ClientApi, Converter, ErrorHints, Event, Framed, Pass, Progress};
use crate::error::FilterError;
use crate::needle::Needle;
use crate::usage::{OpenAiUsage, Usage};

/// One answer from an OpenAI-style provider to an OpenAI client.
pub type OpenAiPassthrough = Framed<OpenAiOpenAi>;

/// Reading one answer from an OpenAI-style provider for an OpenAI client.
#[derive(Debug, Default)]
pub struct OpenAiOpenAi {
    client_wants_usage: bool,
}

impl OpenAiPassthrough {
    /// `client_wants_usage`: the client asked for `stream_options.include_usage` itself.
    pub fn new(client_wants_usage: bool) -> Self {
        Framed::around(OpenAiOpenAi { client_wants_usage })
    }
}

/// Where `"usage":null` (with the comma that joins it) sits in an event, if it does. As raw
/// bytes this cannot occur inside a JSON string, whose quotes are escaped.
fn null_usage(event: &[u8]) -> Option<(usize, usize)> {
    static TRAILING: Needle = Needle::new(b",\"usage\":null");
    static LEADING: Needle = Needle::new(b"\"usage\":null,");
    TRAILING
        .find(event)
        .map(|at| (at, TRAILING.len()))
        .or_else(|| LEADING.find(event).map(|at| (at, LEADING.len())))
}

impl Converter for OpenAiOpenAi {
    const CLIENT: ClientApi = ClientApi::OpenAi;
    const PASSES_THROUGH: bool = true;

    /// The host rewrites the request itself (`model` and the provider's quirks), in place.
    fn request(&mut self, body: &[u8], _upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        Ok(body.to_vec())
    }

    /// Whole answers pass through unread but for their usage (see `passed_usage`).
    type Answer<'a> = serde::de::IgnoredAny;

    fn response(&mut self, _answer: Self::Answer<'_>, _out: &mut Vec<u8>) -> Option<Usage> {
        None
    }

    fn error(&mut self, _status: u32, _body: &[u8], _out: &mut Vec<u8>) -> ErrorHints {
        ErrorHints::default() // errors pass through
    }

    /// Looks at one whole event and decides what reaches the client: only events that mention
    /// `usage` or `error` are parsed.
    fn event(&mut self, event: Event<'_>, out: &mut Vec<u8>, p: &mut Progress) -> Pass {
        let Event::Sse {
            raw,
            data: Some(data),
        } = event
        else {
            return Pass::Keep;
        };
        if data.as_ref() == b"[DONE]" {
            p.done = true;
            return Pass::Keep;
        }
        if !self.client_wants_usage {
            if let Some((at, len)) = null_usage(raw) {
                out.extend_from_slice(&raw[..at]);
                out.extend_from_slice(&raw[at + len..]);
                return Pass::Replaced;
            }
        }
        static USAGE: Needle = Needle::new(b"\"usage\"");
        static ERROR: Needle = Needle::new(b"\"error\"");
        let has_usage = USAGE.find(&data).is_some();
        let has_error = ERROR.find(&data).is_some();
        if !has_usage && !has_error {
            return Pass::Keep;
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
        let Some(chunk) = super::driver::parse_bounded::<Chunk>(&data) else {
            return Pass::Keep;
        };
        if chunk.error.is_some() {
            p.error_sent = true;
        }
        match chunk.usage {
            Some(u) => {
                p.usage = Some(u.into());
                let usage_only = chunk.choices.as_ref().is_none_or(Vec::is_empty);
                if self.client_wants_usage || !usage_only {
                    Pass::Keep
                } else {
                    Pass::Replaced // dropped: the client did not ask for it
                }
            }
            None => Pass::Keep,
        }
    }

    fn passed_usage(&self, value: &[u8]) -> Option<Usage> {
        crate::usage::from_openai_usage_value(value)
    }

    /// The host builds OpenAI-style paths itself (they depend on the provider's path style).
    fn upstream_path(&self, out: &mut String) {
        out.push_str("/chat/completions");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::driver::ChunkOutcome;
    use crate::translate::schema::openai::OPENAI_INCOMPLETE_EVENT as INCOMPLETE_EVENT;
    use crate::translate::Translator;

    const CONTENT: &[u8] = b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    const FINISH: &[u8] = b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    const USAGE: &[u8] = b"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";

    fn streaming(wants_usage: bool) -> OpenAiPassthrough {
        let mut s = OpenAiPassthrough::new(wants_usage);
        s.response_headers(200, true);
        s
    }

    fn whole() -> Vec<u8> {
        [CONTENT, FINISH, USAGE, DONE].concat()
    }

    /// Feeds `stream` cut at `cuts`, returning what the client receives.
    fn run(stream: &[u8], cuts: &[usize], wants_usage: bool) -> (Vec<u8>, OpenAiPassthrough) {
        let mut s = streaming(wants_usage);
        let mut out = Vec::new();
        let mut prev = 0;
        let mut bounds: Vec<usize> = cuts.to_vec();
        bounds.push(stream.len());
        for (i, &b) in bounds.iter().enumerate() {
            let chunk = &stream[prev..b];
            match s.response_body(chunk, i == bounds.len() - 1) {
                ChunkOutcome::Unchanged => out.extend_from_slice(chunk),
                ChunkOutcome::Replace(bytes) => out.extend_from_slice(&bytes),
            }
            prev = b;
        }
        (out, s)
    }

    #[test]
    fn usage_chunk_kept_when_asked_and_passed_unchanged() {
        let mut s = streaming(true);
        assert_eq!(s.response_body(&whole(), false), ChunkOutcome::Unchanged);
        assert_eq!(s.response_body(b"", true), ChunkOutcome::Unchanged);
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

    #[test]
    fn a_whole_answer_passes_untouched_with_its_usage_read() {
        let body = br#"{"id":"c","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#;
        let mut s = OpenAiPassthrough::new(false);
        assert_eq!(s.response_headers(200, false), None);
        assert_eq!(s.content_type(false, "application/json"), None);
        assert_eq!(s.response_body(&body[..9], false), ChunkOutcome::Unchanged);
        assert_eq!(s.response_body(&body[9..], true), ChunkOutcome::Unchanged);
        assert_eq!(s.usage().map(|u| u.total), Some(6));
        assert!(s.completed() && s.passes_through());
    }
}
