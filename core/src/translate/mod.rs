//! Translators between a client API and a provider API: pure code, one instance per request,
//! holding that request's stream state. Each is one pair's converter (a file per pair) inside
//! the framing every pair shares ([`driver`]).

pub mod anthropic_openai;
pub mod anthropic_passthrough;
pub mod driver;
pub mod embeddings;
#[cfg(test)]
pub(crate) mod golden;
pub mod images;
pub mod openai_anthropic;
pub mod openai_bedrock;
pub mod openai_gemini;
pub mod openai_passthrough;
pub mod openai_request;
pub mod schema;

pub use driver::ChunkOutcome;

use crate::error::FilterError;
use crate::usage::Usage;

/// One (client API, provider API) pair for one request.
pub trait Translator {
    /// Called once with the client's whole request body; returns the provider's body.
    fn request_body(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError>;

    /// Called once with the provider's response status and whether the body is an event stream;
    /// returns the status the client should see instead, if it differs.
    fn response_headers(&mut self, status: u32, event_stream: bool) -> Option<u32>;

    /// Called for every response chunk as it arrives; returns what the client receives.
    fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome;

    /// The request's usage, once known, with OpenAI semantics.
    fn usage(&self) -> Option<Usage>;

    /// In a [`Chain`], the provider's own usage as the inner translator read it: what OpenAI's
    /// format in between cannot carry (cache writes) is taken from here.
    fn provider_usage(&mut self, _usage: Usage) {}

    /// Whether the provider's answer arrived whole (a stream reached its end event).
    fn completed(&self) -> bool;

    /// Whether answers pass through as they come (read on the way, never rewritten), so that
    /// nothing needs to be held back until the answer is complete.
    fn passes_through(&self) -> bool {
        false
    }

    /// Seconds the provider asked the client to wait, when its error body says so (Google's
    /// `RetryInfo`); sent as `retry-after`.
    fn retry_after(&self) -> Option<u64> {
        None
    }

    /// The status an error should have, when only its body tells (Google answers a bad API key
    /// with 400 and `API_KEY_INVALID`; clients expect 401).
    fn error_status(&self) -> Option<u32> {
        None
    }

    /// Appends the path below the provider's base URL for this request (query included).
    fn upstream_path(&self, out: &mut String);

    /// Called with the provider's response headers: the `content-type` the client should see
    /// instead of the provider's (`upstream`), if it differs. A translated whole answer is
    /// JSON; a stream is SSE whatever framing the provider used.
    fn content_type(&self, event_stream: bool, upstream: &str) -> Option<&'static str> {
        client_content_type(event_stream, upstream)
    }
}

/// The `content-type` of a translated answer, when it differs from the provider's `upstream`.
fn client_content_type(event_stream: bool, upstream: &str) -> Option<&'static str> {
    if !event_stream {
        Some("application/json")
    } else if !upstream.starts_with("text/event-stream") {
        Some("text/event-stream")
    } else {
        None
    }
}

/// Two translators in a row: the client's API to OpenAI's (`outer`), then OpenAI's to the
/// provider's (`inner`); answers go back the other way. Any client API reaches any provider.
pub struct Chain {
    pub outer: Box<dyn Translator>,
    pub inner: Box<dyn Translator>,
}

impl Translator for Chain {
    fn request_body(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let openai = self.outer.request_body(body, upstream_model)?;
        self.inner.request_body(&openai, upstream_model)
    }

    fn response_headers(&mut self, status: u32, event_stream: bool) -> Option<u32> {
        let inner = self.inner.response_headers(status, event_stream);
        self.outer
            .response_headers(inner.unwrap_or(status), event_stream)
            .or(inner)
    }

    fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome {
        let inner = self.inner.response_body(chunk, end_of_stream);
        if let Some(u) = self.inner.usage() {
            self.outer.provider_usage(u);
        }
        match inner {
            ChunkOutcome::Unchanged => self.outer.response_body(chunk, end_of_stream),
            ChunkOutcome::Replace(openai) => self.outer.response_body(&openai, end_of_stream),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    fn completed(&self) -> bool {
        self.outer.completed() && self.inner.completed()
    }

    fn passes_through(&self) -> bool {
        self.outer.passes_through() && self.inner.passes_through()
    }

    fn retry_after(&self) -> Option<u64> {
        self.inner.retry_after()
    }

    fn error_status(&self) -> Option<u32> {
        self.inner.error_status()
    }

    fn upstream_path(&self, out: &mut String) {
        self.inner.upstream_path(out);
    }
}
