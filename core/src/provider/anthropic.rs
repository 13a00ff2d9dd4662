//! Anthropic's Messages API: OpenAI clients are translated, Anthropic clients pass through
//! (`x-api-key` and `anthropic-version` come from the configuration).

use super::ProviderApi;
use crate::config::Provider;
use crate::error::FilterError;
use crate::request::Endpoint;
use crate::translate::anthropic_passthrough::AnthropicPassthrough;
use crate::translate::openai_anthropic::OpenAiToAnthropic;
use crate::translate::Translator;

pub struct Anthropic;

impl ProviderApi for Anthropic {
    fn translator(
        &self,
        provider: &Provider,
        endpoint: Endpoint,
        _upstream_model: &str,
        _request_id: &str,
        now: u64,
    ) -> Result<Option<Box<dyn Translator>>, FilterError> {
        Ok(Some(match endpoint {
            Endpoint::ChatCompletions => Box::new(OpenAiToAnthropic::new(now)),
            Endpoint::Messages => Box::new(AnthropicPassthrough::default()),
            _ => return Err(super::not_reachable(provider)),
        }))
    }
}
