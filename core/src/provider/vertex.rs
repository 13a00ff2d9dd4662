//! Google Vertex AI (below `/v1/projects/{p}/locations/{l}`): it serves Google's models and
//! Anthropic's, each in its publisher's format, told apart by the model name.

use super::ProviderApi;
use crate::config::Provider;
use crate::error::FilterError;
use crate::request::Endpoint;
use crate::translate::anthropic_openai::AnthropicToOpenAi;
use crate::translate::anthropic_passthrough::AnthropicPassthrough;
use crate::translate::openai_anthropic::OpenAiToAnthropic;
use crate::translate::openai_gemini::OpenAiToGemini;
use crate::translate::{Chain, Translator};

pub struct Vertex;

impl ProviderApi for Vertex {
    fn translator(
        &self,
        provider: &Provider,
        endpoint: Endpoint,
        upstream_model: &str,
        _request_id: &str,
        now: u64,
    ) -> Result<Option<Box<dyn Translator>>, FilterError> {
        let claude = upstream_model.starts_with("claude");
        Ok(Some(match endpoint {
            Endpoint::ChatCompletions if claude => Box::new(OpenAiToAnthropic::vertex(now)),
            Endpoint::ChatCompletions => Box::new(OpenAiToGemini::vertex(now)),
            Endpoint::Messages if claude => Box::new(AnthropicPassthrough::vertex()),
            Endpoint::Messages => Box::new(Chain {
                outer: Box::new(AnthropicToOpenAi::new(true)),
                inner: Box::new(OpenAiToGemini::vertex(now)),
            }),
            _ => return Err(super::not_reachable(provider)),
        }))
    }
}
