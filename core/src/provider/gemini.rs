//! Google's Gemini API (`generativelanguage.googleapis.com`): chat, embeddings and Imagen image
//! generation translated from OpenAI's; Anthropic clients through OpenAI's format (a chain).

use super::ProviderApi;
use crate::config::Provider;
use crate::error::FilterError;
use crate::request::Endpoint;
use crate::translate::anthropic_openai::AnthropicToOpenAi;
use crate::translate::embeddings::{EmbeddingApi, Embeddings};
use crate::translate::images::Imagen;
use crate::translate::openai_gemini::OpenAiToGemini;
use crate::translate::{Chain, Translator};

pub struct Gemini;

impl ProviderApi for Gemini {
    fn translator(
        &self,
        provider: &Provider,
        endpoint: Endpoint,
        _upstream_model: &str,
        _request_id: &str,
        now: u64,
    ) -> Result<Option<Box<dyn Translator>>, FilterError> {
        Ok(Some(match endpoint {
            Endpoint::ChatCompletions => Box::new(OpenAiToGemini::new(now)),
            Endpoint::Embeddings => Box::new(Embeddings::new(EmbeddingApi::Gemini)),
            Endpoint::ImageGenerations => Box::new(Imagen::new(now)),
            Endpoint::Messages => Box::new(Chain {
                outer: Box::new(AnthropicToOpenAi::new(true)),
                inner: Box::new(OpenAiToGemini::new(now)),
            }),
            Endpoint::Models | Endpoint::AnthropicModels => {
                return Err(super::not_reachable(provider))
            }
        }))
    }
}
