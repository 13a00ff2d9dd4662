//! Anthropic Messages (client) to Anthropic (provider): the request goes as it came apart from
//! `model`; the answer passes untouched while its usage is read from it, and a stream cut short
//! gets Anthropic's error event instead of passing for complete.

use super::openai_anthropic::usage_from;
use super::schema::anthropic::{AnthropicStreamEvent, AnthropicUsage};
use super::Translator;
use crate::config::Quirks;
use crate::error::FilterError;
use crate::request::TopLevel;
use crate::sse::{event_data, EventSplitter};
use crate::stream::ChunkOutcome;
use crate::usage::Usage;

#[derive(Debug, Default)]
pub struct AnthropicPassthrough {
    status: u32,
    event_stream: bool,
    body: Vec<u8>,
    splitter: EventSplitter,
    raw_usage: AnthropicUsage,
    usage: Option<Usage>,
    done: bool,
    saw_error: bool,
}

/// Just the usage of a whole Messages response.
#[derive(serde::Deserialize)]
struct UsageOnly {
    usage: AnthropicUsage,
}

impl AnthropicPassthrough {
    fn on_event(&mut self, data: &[u8]) {
        let Ok(event) = serde_json::from_slice::<AnthropicStreamEvent>(data) else {
            return;
        };
        match event {
            AnthropicStreamEvent::MessageStart { message } => self.raw_usage = message.usage,
            AnthropicStreamEvent::MessageDelta { usage: Some(d), .. } => {
                // Cumulative figures: they replace message_start's, never add to them.
                let u = &mut self.raw_usage;
                u.output_tokens = d.output_tokens.unwrap_or(u.output_tokens);
                u.input_tokens = d.input_tokens.unwrap_or(u.input_tokens);
                u.cache_creation_input_tokens = d
                    .cache_creation_input_tokens
                    .or(u.cache_creation_input_tokens);
                u.cache_read_input_tokens = d.cache_read_input_tokens.or(u.cache_read_input_tokens);
            }
            AnthropicStreamEvent::MessageStop => self.done = true,
            AnthropicStreamEvent::Error { .. } => self.saw_error = true,
            _ => return,
        }
        self.usage = Some(usage_from(self.raw_usage));
    }
}

impl Translator for AnthropicPassthrough {
    fn request_body(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let top = TopLevel::parse(body)?;
        if top.model()? == upstream_model {
            return Ok(body.to_vec());
        }
        Ok(top.rewrite(upstream_model, false, &Quirks::default()))
    }

    fn response_headers(&mut self, status: u32, event_stream: bool) -> Option<u32> {
        self.status = status;
        self.event_stream = event_stream;
        None
    }

    fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkOutcome {
        if !self.event_stream || self.status >= 400 {
            self.body.extend_from_slice(chunk);
            if end_of_stream {
                if self.status < 400 {
                    if let Ok(u) = serde_json::from_slice::<UsageOnly>(&self.body) {
                        self.usage = Some(usage_from(u.usage));
                    }
                }
                self.done = true;
                self.body = Vec::new();
            }
            return ChunkOutcome::Unchanged;
        }
        let mut events = Vec::new();
        self.splitter.feed(chunk, |e| events.push(e.to_vec()));
        for event in events {
            if let Some(data) = event_data(&event) {
                self.on_event(&data);
            }
        }
        if end_of_stream && !self.done && !self.saw_error {
            let mut out = chunk.to_vec();
            out.extend_from_slice(super::anthropic_openai::INCOMPLETE);
            return ChunkOutcome::Replace(out);
        }
        ChunkOutcome::Unchanged
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn completed(&self) -> bool {
        self.done
    }

    fn upstream_path(&self, out: &mut String) {
        out.push_str("/v1/messages");
    }
}
