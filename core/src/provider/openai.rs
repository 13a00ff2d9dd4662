//! OpenAI's own API, and what every OpenAI-style kind shares: OpenAI clients' requests pass as
//! they are; Anthropic clients' are translated. Paths follow the provider's path style.

use super::ProviderApi;
use crate::config::Provider;
use crate::error::FilterError;
use crate::request::Endpoint;
use crate::translate::anthropic_openai::AnthropicToOpenAi;
use crate::translate::Translator;

/// A provider that speaks OpenAI's API.
pub struct OpenAiStyle {
    /// OpenAI's own API (and Azure's) wants `max_completion_tokens` (its reasoning models
    /// refuse `max_tokens`); compatible ones know `max_tokens`.
    pub max_completion_tokens: bool,
}

pub const OPENAI: OpenAiStyle = OpenAiStyle {
    max_completion_tokens: true,
};

impl ProviderApi for OpenAiStyle {
    fn translator(
        &self,
        provider: &Provider,
        endpoint: Endpoint,
        _upstream_model: &str,
        _request_id: &str,
        _now: u64,
    ) -> Result<Option<Box<dyn Translator>>, FilterError> {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::ImageGenerations => {
                Ok(None)
            }
            Endpoint::Messages => Ok(Some(Box::new(AnthropicToOpenAi::new(
                self.max_completion_tokens,
            )))),
            Endpoint::Models | Endpoint::AnthropicModels => Err(super::not_reachable(provider)),
        }
    }

    fn speaks_openai(&self) -> bool {
        true
    }

    fn path(
        &self,
        provider: &Provider,
        endpoint: Endpoint,
        upstream_model: &str,
        _translator: Option<&dyn Translator>,
        out: &mut String,
    ) {
        endpoint.upstream_path(provider, upstream_model, out);
    }
}
