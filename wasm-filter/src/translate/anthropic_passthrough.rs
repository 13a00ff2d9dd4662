//! Anthropic Messages (client) to Anthropic (provider): the request goes as it came apart from
//! `model`; the answer passes untouched while its usage is read from it, and a stream cut short
//! gets Anthropic's error event instead of passing for complete.

use super::common::sse_data;
use super::openai_anthropic::{usage_from, vertex_path, VERTEX_ANTHROPIC_VERSION};
use super::schema::anthropic::{AnthropicStreamEvent, AnthropicUsage};
use super::Translator;
use crate::config::Quirks;
use crate::error::FilterError;
use crate::request::TopLevel;
use crate::sse::EventSplitter;
use crate::stream::ChunkOutcome;
use crate::usage::{FieldScan, Usage};

#[derive(Debug, Default)]
pub struct AnthropicPassthrough {
    status: u32,
    event_stream: bool,
    /// A whole answer's `usage`, read as it passes (the answer is not kept).
    body_usage: Option<FieldScan>,
    splitter: EventSplitter,
    raw_usage: AnthropicUsage,
    usage: Option<Usage>,
    done: bool,
    saw_error: bool,
    /// Claude on Vertex AI: the model goes in the path, `anthropic_version` in the body.
    vertex: bool,
    stream: bool,
    upstream_model: String,
}

impl AnthropicPassthrough {
    /// Claude models on Vertex AI (below `/v1/projects/{p}/locations/{l}`).
    pub fn vertex() -> Self {
        AnthropicPassthrough {
            vertex: true,
            ..Default::default()
        }
    }

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
        self.stream = top.flag("stream")?.unwrap_or(false);
        upstream_model.clone_into(&mut self.upstream_model);
        if self.vertex {
            // The model moves to the path; Vertex wants its version in the body.
            let drop_model = Quirks {
                drop: vec!["model".into(), "anthropic_version".into()],
                ..Quirks::default()
            };
            let mut out = top.rewrite(upstream_model, false, &drop_model);
            out.pop(); // the closing brace
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(b"\"anthropic_version\":\"");
            out.extend_from_slice(VERTEX_ANTHROPIC_VERSION.as_bytes());
            out.extend_from_slice(b"\"}");
            return Ok(out);
        }
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
            let scan = self
                .body_usage
                .get_or_insert_with(|| FieldScan::new("usage"));
            if self.status < 400 {
                scan.feed(chunk);
            }
            if end_of_stream {
                let usage = scan
                    .value()
                    .and_then(|v| serde_json::from_slice::<AnthropicUsage>(v).ok());
                if let Some(u) = usage {
                    self.usage = Some(usage_from(u));
                }
                self.done = true;
                self.body_usage = None;
            }
            return ChunkOutcome::Unchanged;
        }
        for data in sse_data(&mut self.splitter, chunk) {
            self.on_event(&data);
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

    fn passes_through(&self) -> bool {
        true
    }

    fn upstream_path(&self, out: &mut String) {
        if self.vertex {
            vertex_path(out, &self.upstream_model, self.stream);
        } else {
            out.push_str("/v1/messages");
        }
    }
}
