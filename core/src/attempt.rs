//! One attempt's upstream request: the client's body and headers made into what one target's
//! provider expects (body, path, credentials, signature) plus the translator that will bring the
//! answer back. Pure: the host applies the result, once in the downstream filter for the chosen
//! target and again in the upstream filter for each failover attempt to another target.

use crate::config::{Provider, ProviderKey};
use crate::error::FilterError;
use crate::request::{Endpoint, TopLevel};
use crate::route::{Index, ResolvedTarget};
use crate::translate::Translator;
use switchyard_aws::sigv4;

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
    /// Builds the request of `target` from the client's `body` (parsed as `top`) with the
    /// provider's `key` at `now`.
    pub fn prepare(
        index: &Index,
        ask: &Ask,
        body: &[u8],
        top: &TopLevel,
        target: &ResolvedTarget,
        key: &ProviderKey,
        now: u64,
    ) -> Result<Attempt, FilterError> {
        let provider = index.provider(target.provider);
        let api = crate::provider::api(provider.kind);
        let mut translator =
            api.translator(provider, ask.endpoint, &target.model, &ask.request_id, now)?;
        let new_body = match translator.as_mut() {
            Some(t) => {
                let translated = t.request_body(body, &target.model)?;
                // An OpenAI-style provider's quirks apply to translated requests too.
                if api.speaks_openai() && !provider.quirks.is_none() {
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
        api.path(
            provider,
            ask.endpoint,
            &target.model,
            translator.as_deref(),
            &mut path,
        );
        let credential = api.credential(
            provider,
            key,
            &path,
            new_body.as_deref().unwrap_or(body),
            now,
        );
        Ok(Attempt {
            body: new_body,
            path,
            length,
            credential: credential.value,
            signed: credential.signed,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        Index::from_json(
            br#"{"version":"1","max_body_bytes":65536,
            "providers":[
              {"name":"oa","kind":"openai_compatible","cluster":"provider-oa","authority":"oa.test",
               "path_prefix":"/v1","auth_header":"authorization","auth_prefix":"Bearer ",
               "keys":[{"id":"k1","secret":"sk-oa"}]},
              {"name":"an","kind":"anthropic","cluster":"provider-an","authority":"an.test",
               "auth_header":"x-api-key","keys":[{"id":"k2","secret":"sk-an"}],
               "headers":[["anthropic-version","2023-06-01"]]}],
            "models":[{"name":"duo","targets":[{"provider":"oa","model":"gpt-x"},
                                               {"provider":"an","model":"claude-x"}],
                       "failover":["failover-2-0-duo","failover-2-1-duo"]}]}"#,
            None,
        )
        .expect("config")
    }

    fn ask(stream: bool) -> Ask {
        Ask {
            endpoint: Endpoint::ChatCompletions,
            model: "duo".into(),
            stream,
            request_id: "req-1".into(),
        }
    }

    const BODY: &[u8] =
        br#"{"model":"duo","messages":[{"role":"user","content":"Hi"}],"max_tokens":5}"#;

    #[test]
    fn each_target_gets_its_own_providers_request_from_the_same_body() {
        let index = index();
        let entry = index.targets("duo").unwrap();
        let top = TopLevel::parse(BODY).unwrap();

        let key = |i: usize| {
            index
                .choose_key(index.provider(entry.targets[i].provider))
                .unwrap()
        };
        let openai = Attempt::prepare(
            &index,
            &ask(false),
            BODY,
            &top,
            &entry.targets[0],
            key(0),
            0,
        )
        .expect("openai attempt");
        assert!(openai.translator.is_none());
        assert_eq!(openai.path, "/v1/chat/completions");
        let body: serde_json::Value =
            serde_json::from_slice(openai.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["model"], "gpt-x");
        assert_eq!(
            openai.length,
            openai.body.as_ref().unwrap().len().to_string()
        );
        let headers = openai.headers(index.provider(entry.targets[0].provider));
        assert!(headers.contains(&("authorization", b"Bearer sk-oa".as_slice())));

        let anthropic =
            Attempt::prepare(&index, &ask(true), BODY, &top, &entry.targets[1], key(1), 0)
                .expect("anthropic attempt");
        assert!(anthropic.translator.is_some());
        assert_eq!(anthropic.path, "/v1/messages");
        let body: serde_json::Value =
            serde_json::from_slice(anthropic.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["model"], "claude-x");
        let headers = anthropic.headers(index.provider(entry.targets[1].provider));
        assert!(headers.contains(&("x-api-key", b"sk-an".as_slice())));
        assert!(headers.contains(&("anthropic-version", b"2023-06-01".as_slice())));
        assert!(!headers.iter().any(|(k, _)| *k == "authorization"));
    }

    #[test]
    fn every_providers_headers_are_known_for_cleaning_up_between_attempts() {
        let index = index();
        let names = index.provider_headers();
        for name in [
            "authorization",
            "x-api-key",
            "anthropic-version",
            "x-amz-date",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing");
        }
    }
}
