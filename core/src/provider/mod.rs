//! What the filter knows of each provider kind, one module per kind, asked instead of matched
//! on: which translator serves each client endpoint, the request path, and how the credential
//! is made. The base URL, auth header and prefix, required headers, path style and query come
//! with each provider in the configuration (the control plane's module for the kind sets them).

mod anthropic;
mod azure_openai;
mod bedrock;
mod gemini;
mod openai;
mod openai_compatible;
mod vertex;

use crate::config::{Provider, ProviderKey, ProviderKind};
use crate::error::FilterError;
use crate::request::Endpoint;
use crate::translate::Translator;
use switchyard_aws::sigv4;

/// One provider kind's answers.
pub trait ProviderApi: Sync {
    /// The translator between the client's `endpoint` and this kind's API for one request
    /// (`now` and `request_id` become the answer's `created` and, where the provider sends
    /// none, its id); `None` when client and provider speak the same OpenAI API and the request
    /// passes with only `model` (and the provider's quirks) changed.
    fn translator(
        &self,
        provider: &Provider,
        endpoint: Endpoint,
        upstream_model: &str,
        request_id: &str,
        now: u64,
    ) -> Result<Option<Box<dyn Translator>>, FilterError>;

    /// Whether this kind's wire format is OpenAI's: the provider's quirks then apply to
    /// translated requests too, and paths follow its path style.
    fn speaks_openai(&self) -> bool {
        false
    }

    /// Appends the request path (query included) for `endpoint` below the provider's base URL.
    /// By default the translator's path below the provider's prefix.
    fn path(
        &self,
        provider: &Provider,
        _endpoint: Endpoint,
        _upstream_model: &str,
        translator: Option<&dyn Translator>,
        out: &mut String,
    ) {
        out.push_str(&provider.path_prefix);
        if let Some(t) = translator {
            t.upstream_path(out);
        }
    }

    /// The value of the provider's auth header for a request to `path` with `body`, and the
    /// signature when the kind signs its requests. By default the configured prefix (`Bearer `,
    /// or none for `x-api-key`, `api-key`, `x-goog-api-key`) and the key.
    fn credential(
        &self,
        provider: &Provider,
        key: &ProviderKey,
        _path: &str,
        _body: &[u8],
        _now: u64,
    ) -> Credential {
        Credential::key(provider, key)
    }
}

/// What authenticates one request.
pub struct Credential {
    /// The value of the provider's auth header.
    pub value: String,
    /// SigV4 headers, for kinds whose requests are signed.
    pub signed: Option<sigv4::Signed>,
}

impl Credential {
    /// The configured prefix and the key.
    pub fn key(provider: &Provider, key: &ProviderKey) -> Credential {
        let mut value = String::with_capacity(provider.auth_prefix.len() + key.secret.len());
        value.push_str(&provider.auth_prefix);
        value.push_str(&key.secret);
        Credential {
            value,
            signed: None,
        }
    }
}

/// The module of a provider kind: the one place the filter matches on kinds.
pub fn api(kind: ProviderKind) -> &'static dyn ProviderApi {
    match kind {
        ProviderKind::Openai => &openai::OPENAI,
        ProviderKind::OpenaiCompatible => &openai_compatible::OPENAI_COMPATIBLE,
        ProviderKind::AzureOpenai => &azure_openai::AZURE_OPENAI,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Gemini => &gemini::Gemini,
        ProviderKind::Vertex => &vertex::Vertex,
        ProviderKind::Bedrock => &bedrock::Bedrock,
    }
}

/// The answer for an endpoint a kind does not serve.
fn not_reachable(provider: &Provider) -> FilterError {
    FilterError::invalid_request(
        "provider_not_supported",
        format!(
            "Provider `{}` is not reachable from this endpoint yet.",
            provider.name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: &str) -> Provider {
        serde_json::from_value(serde_json::json!({
            "name": kind, "kind": kind, "cluster": "c", "authority": "bedrock-runtime.us-east-1.amazonaws.com",
            "path_prefix": "/p", "auth_header": "authorization", "auth_prefix": "Bearer ",
            "region": "us-east-1"
        }))
        .expect("provider")
    }

    /// The path of a non-streamed request to `endpoint`, or what refuses it.
    fn path(kind: &str, endpoint: Endpoint, model: &str) -> Result<String, String> {
        let p = provider(kind);
        let api = api(p.kind);
        let mut t = api
            .translator(&p, endpoint, model, "req", 0)
            .map_err(|e| e.code.to_string())?;
        if let Some(t) = t.as_mut() {
            let body: &[u8] = match endpoint {
                Endpoint::Messages => {
                    br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#
                }
                Endpoint::Embeddings => br#"{"model":"m","input":"x"}"#,
                Endpoint::ImageGenerations => br#"{"model":"m","prompt":"x"}"#,
                _ => br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            };
            t.request_body(body, model).expect("translates");
        }
        let mut out = String::new();
        api.path(&p, endpoint, model, t.as_deref(), &mut out);
        Ok(out)
    }

    #[test]
    fn every_kind_answers_for_every_endpoint() {
        use Endpoint::*;
        let ok = |s: &str| Ok(s.to_owned());
        let refused = Err("provider_not_supported".to_owned());
        let cases = [
            ("openai", ChatCompletions, "gpt", ok("/p/chat/completions")),
            ("openai", Messages, "gpt", ok("/p/chat/completions")),
            (
                "openai",
                ImageGenerations,
                "gpt",
                ok("/p/images/generations"),
            ),
            ("openai_compatible", Embeddings, "e", ok("/p/embeddings")),
            (
                "azure_openai",
                ChatCompletions,
                "gpt",
                ok("/p/chat/completions"),
            ),
            ("anthropic", ChatCompletions, "claude", ok("/p/v1/messages")),
            ("anthropic", Messages, "claude", ok("/p/v1/messages")),
            ("anthropic", Embeddings, "claude", refused.clone()),
            (
                "gemini",
                ChatCompletions,
                "g",
                ok("/p/v1beta/models/g:generateContent"),
            ),
            (
                "gemini",
                Messages,
                "g",
                ok("/p/v1beta/models/g:generateContent"),
            ),
            (
                "gemini",
                Embeddings,
                "e",
                ok("/p/v1beta/models/e:batchEmbedContents"),
            ),
            (
                "gemini",
                ImageGenerations,
                "i",
                ok("/p/v1beta/models/i:predict"),
            ),
            (
                "vertex",
                ChatCompletions,
                "claude-x",
                ok("/p/publishers/anthropic/models/claude-x:rawPredict"),
            ),
            (
                "vertex",
                Messages,
                "gemini-x",
                ok("/p/publishers/google/models/gemini-x:generateContent"),
            ),
            ("vertex", Embeddings, "gemini-x", refused.clone()),
            (
                "bedrock",
                ChatCompletions,
                "m.x",
                ok("/p/model/m.x/converse"),
            ),
            (
                "bedrock",
                Embeddings,
                "amazon.titan-embed-text-v2:0",
                ok("/p/model/amazon.titan-embed-text-v2%3A0/invoke"),
            ),
            ("bedrock", Embeddings, "m.x", refused.clone()),
            ("bedrock", ImageGenerations, "m.x", refused.clone()),
            ("openai", Models, "gpt", refused),
        ];
        for (kind, endpoint, model, want) in cases {
            assert_eq!(path(kind, endpoint, model), want, "{kind} {endpoint:?}");
        }
    }

    #[test]
    fn only_bedrock_signs_and_only_with_an_access_key_pair() {
        let key = |secret: &str| ProviderKey {
            id: "k".into(),
            secret: secret.into(),
            weight: 1,
            qps: None,
        };
        let credential = |kind: &str, secret: &str| {
            let p = provider(kind);
            api(p.kind).credential(&p, &key(secret), "/model/m/converse", b"{}", 0)
        };
        let signed = credential("bedrock", "AKID:SECRET");
        assert!(signed.value.starts_with("AWS4-HMAC-SHA256 "));
        assert!(signed
            .signed
            .is_some_and(|s| s.authorization == signed.value));
        let bearer = credential("bedrock", "bedrock-api-key");
        assert_eq!(bearer.value, "Bearer bedrock-api-key");
        assert!(bearer.signed.is_none());
        assert!(credential("openai", "AKID:SECRET").signed.is_none());
    }
}
