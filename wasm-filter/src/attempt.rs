//! One attempt's upstream request: the client's body and headers made into what one target's
//! provider expects (body, path, credentials, signature) plus the translator that will bring the
//! answer back. Pure: the host applies the result, once in the downstream filter for the chosen
//! target and again in the upstream filter for each failover attempt to another target.

use crate::config::{Provider, ProviderKind};
use crate::error::FilterError;
use crate::request::{Endpoint, TopLevel};
use crate::route::{Index, ResolvedTarget};
use crate::sigv4;
use crate::translate::anthropic_openai::AnthropicToOpenAi;
use crate::translate::anthropic_passthrough::AnthropicPassthrough;
use crate::translate::embeddings::{EmbeddingApi, Embeddings};
use crate::translate::images::Imagen;
use crate::translate::openai_anthropic::OpenAiToAnthropic;
use crate::translate::openai_bedrock::OpenAiToBedrock;
use crate::translate::openai_gemini::OpenAiToGemini;
use crate::translate::{Chain, Translator};

/// What the client asked for, the same for every attempt.
#[derive(Debug, Clone)]
pub struct Ask {
    pub endpoint: Endpoint,
    /// The model name the client sent.
    pub model: String,
    pub stream: bool,
    /// Envoy's request id (Bedrock answers carry it as their id).
    pub request_id: String,
}

/// The request for one target.
pub struct Attempt {
    /// The body to send; `None` when the client's goes as it is.
    pub body: Option<Vec<u8>>,
    pub path: String,
    /// `content-length` of the body sent.
    pub length: String,
    /// The value of the provider's auth header.
    pub credential: String,
    /// SigV4 headers (Bedrock with an access key pair).
    pub signed: Option<sigv4::Signed>,
    /// `None` when client and provider speak the same OpenAI API.
    pub translator: Option<Box<dyn Translator>>,
}

impl Attempt {
    /// Builds the request of `target` from the client's `body` (parsed as `top`) at `now`.
    pub fn prepare(
        index: &Index,
        ask: &Ask,
        body: &[u8],
        top: &TopLevel,
        target: &ResolvedTarget,
        now: u64,
    ) -> Result<Attempt, FilterError> {
        let provider = index.provider(target.provider);
        let mut translator =
            translator_for(ask.endpoint, provider, &target.model, &ask.request_id, now)?;
        let key = index
            .choose_key(provider)
            .ok_or_else(|| FilterError::no_provider_key(&provider.name))?;
        let new_body = match translator.as_mut() {
            Some(t) => {
                let translated = t.request_body(body, &target.model)?;
                // An OpenAI-style provider's quirks apply to translated requests too.
                if provider.kind.speaks_openai() && !provider.quirks.is_none() {
                    let top = TopLevel::parse(&translated)?;
                    Some(
                        top.rewrite_if_needed(
                            &target.model,
                            &target.model,
                            false,
                            &provider.quirks,
                        )?
                        .unwrap_or(translated),
                    )
                } else {
                    Some(translated)
                }
            }
            None => top.rewrite_if_needed(
                &ask.model,
                &target.model,
                ask.stream && provider.quirks.stream_usage,
                &provider.quirks,
            )?,
        };
        let length = new_body.as_ref().map_or(body.len(), Vec::len).to_string();
        let mut path = String::with_capacity(provider.path_prefix.len() + 64);
        match translator.as_ref() {
            Some(t) if !provider.kind.speaks_openai() => {
                path.push_str(&provider.path_prefix);
                t.upstream_path(&mut path);
            }
            _ => ask
                .endpoint
                .upstream_path(provider, &target.model, &mut path),
        }
        // Bedrock with an access key pair: SigV4 over the request as it will be sent (with a
        // Bedrock API key it is a plain bearer token).
        let signed = match (provider.kind, sigv4::Credentials::parse(&key.secret)) {
            (ProviderKind::Bedrock, Some(creds)) => Some(sigv4::sign(
                &sigv4::Request {
                    method: "POST",
                    host: &provider.authority,
                    path: &path,
                    query: "",
                    content_type: "application/json",
                    body: new_body.as_deref().unwrap_or(body),
                },
                &creds,
                &provider.region,
                "bedrock",
                &sigv4::amz_date(now),
            )),
            _ => None,
        };
        let credential = match &signed {
            Some(s) => s.authorization.clone(),
            None => {
                let mut c = String::with_capacity(provider.auth_prefix.len() + key.secret.len());
                c.push_str(&provider.auth_prefix);
                c.push_str(&key.secret);
                c
            }
        };
        Ok(Attempt {
            body: new_body,
            path,
            length,
            credential,
            signed,
            translator,
        })
    }

    /// The request headers this attempt sets (everything else is the client's, minus what
    /// [`crate::headers::changes`] drops).
    pub fn headers<'a>(&'a self, provider: &'a Provider) -> Vec<(&'a str, &'a [u8])> {
        let mut wanted: Vec<(&str, &[u8])> = Vec::with_capacity(8 + provider.headers.len());
        wanted.extend([
            (":path", self.path.as_bytes()),
            ("content-length", self.length.as_bytes()),
            (provider.auth_header.as_str(), self.credential.as_bytes()),
        ]);
        wanted.extend(
            provider
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes())),
        );
        if let Some(s) = &self.signed {
            wanted.push(("content-type", b"application/json"));
            wanted.push(("x-amz-date", s.amz_date.as_bytes()));
            if let Some(token) = &s.security_token {
                wanted.push(("x-amz-security-token", token.as_bytes()));
            }
        }
        wanted
    }
}

/// The translator between the client's API and the provider's; `None` when they are the same
/// OpenAI API and the request passes with only `model` (and the provider's quirks) changed.
pub fn translator_for(
    endpoint: Endpoint,
    provider: &Provider,
    upstream_model: &str,
    request_id: &str,
    now: u64,
) -> Result<Option<Box<dyn Translator>>, FilterError> {
    let kind = provider.kind;
    // Vertex AI serves Google's models and Anthropic's, each in its publisher's format.
    let vertex_claude = kind == ProviderKind::Vertex && upstream_model.starts_with("claude");
    let vertex_gemini = kind == ProviderKind::Vertex && !vertex_claude;
    Ok(Some(match endpoint {
        Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::ImageGenerations
            if kind.speaks_openai() =>
        {
            return Ok(None)
        }
        Endpoint::Embeddings if kind == ProviderKind::Gemini => {
            Box::new(Embeddings::new(EmbeddingApi::Gemini))
        }
        Endpoint::Embeddings if kind == ProviderKind::Bedrock => {
            let api = EmbeddingApi::bedrock(upstream_model).ok_or_else(|| {
                FilterError::invalid_request(
                    "provider_not_supported",
                    format!("`{upstream_model}` is not an embedding model Switchyard can reach on Bedrock."),
                )
            })?;
            Box::new(Embeddings::new(api))
        }
        Endpoint::ImageGenerations if kind == ProviderKind::Gemini => Box::new(Imagen::new(now)),
        Endpoint::ChatCompletions if kind == ProviderKind::Anthropic => {
            Box::new(OpenAiToAnthropic::new(now))
        }
        Endpoint::ChatCompletions if kind == ProviderKind::Gemini => {
            Box::new(OpenAiToGemini::new(now))
        }
        Endpoint::ChatCompletions if kind == ProviderKind::Bedrock => {
            Box::new(OpenAiToBedrock::new(now, request_id))
        }
        Endpoint::ChatCompletions if vertex_gemini => Box::new(OpenAiToGemini::vertex(now)),
        Endpoint::ChatCompletions if vertex_claude => Box::new(OpenAiToAnthropic::vertex(now)),
        Endpoint::Messages if vertex_claude => Box::new(AnthropicPassthrough::vertex()),
        Endpoint::Messages if vertex_gemini => Box::new(Chain {
            outer: Box::new(AnthropicToOpenAi::new(true)),
            inner: Box::new(OpenAiToGemini::vertex(now)),
        }),
        Endpoint::Messages if kind == ProviderKind::Anthropic => {
            Box::new(AnthropicPassthrough::default())
        }
        // OpenAI's own API (and Azure's) wants max_completion_tokens; compatible ones max_tokens.
        Endpoint::Messages if kind.speaks_openai() => Box::new(AnthropicToOpenAi::new(
            kind != ProviderKind::OpenaiCompatible,
        )),
        Endpoint::Messages if kind == ProviderKind::Gemini => Box::new(Chain {
            outer: Box::new(AnthropicToOpenAi::new(true)),
            inner: Box::new(OpenAiToGemini::new(now)),
        }),
        Endpoint::Messages if kind == ProviderKind::Bedrock => Box::new(Chain {
            outer: Box::new(AnthropicToOpenAi::new(true)),
            inner: Box::new(OpenAiToBedrock::new(now, request_id)),
        }),
        _ => {
            return Err(FilterError::invalid_request(
                "provider_not_supported",
                format!(
                    "Provider `{}` is not reachable from this endpoint yet.",
                    provider.name
                ),
            ))
        }
    }))
}
