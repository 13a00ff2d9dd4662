//! Anthropic Messages (client) to Anthropic (provider): the request goes as it came apart from
//! `model`; the answer passes untouched while its usage is read from it, and a stream cut short
//! gets Anthropic's error event instead of passing for complete.

use super::driver::{ClientApi, Converter, ErrorHints, Event, Framed, Pass, Progress};
use super::openai_anthropic::{usage_from, vertex_path, VERTEX_ANTHROPIC_VERSION};
use super::schema::anthropic::{AnthropicStreamEvent, AnthropicUsage};
use crate::config::Quirks;
use crate::error::FilterError;
use crate::request::TopLevel;
use crate::usage::Usage;

/// One request from an Anthropic client to an Anthropic provider.
pub type AnthropicPassthrough = Framed<AnthropicAnthropic>;

/// Reading one request's answer from an Anthropic provider for an Anthropic client.
#[derive(Debug, Default)]
pub struct AnthropicAnthropic {
    /// The stream's usage as Anthropic reports it (message_start, then message_delta).
    raw_usage: AnthropicUsage,
    /// Claude on Vertex AI: the model goes in the path, `anthropic_version` in the body.
    vertex: bool,
    stream: bool,
    upstream_model: String,
}

impl AnthropicPassthrough {
    /// Claude models on Vertex AI (below `/v1/projects/{p}/locations/{l}`).
    pub fn vertex() -> Self {
        Framed::around(AnthropicAnthropic {
            vertex: true,
            ..Default::default()
        })
    }
}

impl Converter for AnthropicAnthropic {
    const CLIENT: ClientApi = ClientApi::Anthropic;
    const PASSES_THROUGH: bool = true;

    fn request(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
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

    /// Whole answers pass through unread but for their usage (see `passed_usage`).
    type Answer<'a> = serde::de::IgnoredAny;

    fn response(&mut self, _answer: Self::Answer<'_>, _out: &mut Vec<u8>) -> Option<Usage> {
        None
    }

    fn error(&mut self, _status: u32, _body: &[u8], _out: &mut Vec<u8>) -> ErrorHints {
        ErrorHints::default() // errors pass through
    }

    fn event(&mut self, event: Event<'_>, _out: &mut Vec<u8>, p: &mut Progress) -> Pass {
        let Some(event) = event.parse::<AnthropicStreamEvent>() else {
            return Pass::Keep;
        };
        match event {
            AnthropicStreamEvent::MessageStart { message } => self.raw_usage = message.usage,
            AnthropicStreamEvent::MessageDelta { usage: Some(d), .. } => {
                self.raw_usage.update(d);
            }
            AnthropicStreamEvent::MessageStop => p.done = true,
            AnthropicStreamEvent::Error { .. } => p.error_sent = true,
            _ => return Pass::Keep,
        }
        p.usage = Some(usage_from(self.raw_usage));
        Pass::Keep
    }

    fn passed_usage(&self, value: &[u8]) -> Option<Usage> {
        serde_json::from_slice::<AnthropicUsage>(value)
            .ok()
            .map(usage_from)
    }

    fn upstream_path(&self, out: &mut String) {
        if self.vertex {
            vertex_path(out, &self.upstream_model, self.stream);
        } else {
            out.push_str("/v1/messages");
        }
    }
}
