//! Amazon Bedrock's runtime API: chat through Converse, embeddings through InvokeModel (Titan
//! and Cohere), Anthropic clients through OpenAI's format (a chain). Requests are signed with
//! SigV4 when the key is an access key pair; a Bedrock API key is a plain bearer token.

use super::{Credential, ProviderApi};
use crate::config::{Provider, ProviderKey};
use crate::error::FilterError;
use crate::request::Endpoint;
use crate::translate::anthropic_openai::AnthropicToOpenAi;
use crate::translate::embeddings::{EmbeddingApi, Embeddings};
use crate::translate::openai_bedrock::OpenAiToBedrock;
use crate::translate::{Chain, Translator};
use switchyard_aws::sigv4;

pub struct Bedrock;

impl ProviderApi for Bedrock {
    fn translator(
        &self,
        provider: &Provider,
        endpoint: Endpoint,
        upstream_model: &str,
        request_id: &str,
        now: u64,
    ) -> Result<Option<Box<dyn Translator>>, FilterError> {
        Ok(Some(match endpoint {
            Endpoint::ChatCompletions => Box::new(OpenAiToBedrock::new(now, request_id)),
            Endpoint::Embeddings => {
                let api = EmbeddingApi::bedrock(upstream_model).ok_or_else(|| {
                    FilterError::invalid_request(
                        "provider_not_supported",
                        format!("`{upstream_model}` is not an embedding model Switchyard can reach on Bedrock."),
                    )
                })?;
                Box::new(Embeddings::new(api))
            }
            Endpoint::Messages => Box::new(Chain {
                outer: Box::new(AnthropicToOpenAi::new(true)),
                inner: Box::new(OpenAiToBedrock::new(now, request_id)),
            }),
            _ => return Err(super::not_reachable(provider)),
        }))
    }

    /// SigV4 over the request as it will be sent, with an access key pair; a Bedrock API key
    /// is a bearer token.
    fn credential(
        &self,
        provider: &Provider,
        key: &ProviderKey,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Credential {
        let Some(creds) = sigv4::Credentials::parse(&key.secret) else {
            return Credential::key(provider, key);
        };
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                host: &provider.authority,
                path,
                query: "",
                content_type: "application/json",
                body,
            },
            &creds,
            &provider.region,
            "bedrock",
            &sigv4::amz_date(now),
        );
        Credential {
            value: signed.authorization.clone(),
            signed: Some(signed),
        }
    }
}
