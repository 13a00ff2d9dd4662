//! The OpenAI stream as the host reads it today: an adapter over the OpenAI pass-through
//! converter ([`crate::translate::openai_passthrough`]), which does the work.

use crate::translate::openai_passthrough::OpenAiPassthrough;
use crate::translate::Translator;
use crate::usage::Usage;

pub use crate::translate::driver::ChunkOutcome;

/// State of one OpenAI-style response stream.
#[derive(Debug)]
pub struct OpenAiStream(OpenAiPassthrough);

impl OpenAiStream {
    pub fn new(client_wants_usage: bool) -> Self {
        let mut t = OpenAiPassthrough::new(client_wants_usage);
        t.response_headers(200, true);
        OpenAiStream(t)
    }

    pub fn usage(&self) -> Option<Usage> {
        self.0.usage()
    }

    /// Whether the stream reached `[DONE]` with every event in it (none too long to keep).
    pub fn completed(&self) -> bool {
        self.0.completed()
    }

    /// Handles one chunk as it arrives; whole events are forwarded, a partial one waits.
    pub fn on_chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome {
        self.0.response_body(chunk, end_of_stream)
    }
}
