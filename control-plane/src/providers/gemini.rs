//! Gemini (Google AI Studio): the key in `x-goog-api-key`, paths below
//! `https://generativelanguage.googleapis.com`.
//!
//! Model list, `GET /v1beta/models?pageSize=&pageToken=`: `{"models":[{"name":"models/..",
//! "displayName","inputTokenLimit","outputTokenLimit","supportedGenerationMethods",
//! "thinking"}],"nextPageToken"}` (<https://ai.google.dev/api/models#method:-models.list>).
//! Capabilities come from the generation methods and the thinking flag.

use serde::Deserialize;

use super::listing::{form_encode, not_a_list};
use super::{Discovered, Page, ProviderSpec, Tag, PAGE_SIZE};
use crate::domain::ProviderSettings;

pub struct Gemini;

impl ProviderSpec for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn default_base_url(&self, _settings: &ProviderSettings) -> Option<String> {
        Some("https://generativelanguage.googleapis.com".into())
    }

    fn auth_header(&self) -> (&'static str, &'static str) {
        ("x-goog-api-key", "")
    }

    fn probe_url(&self, base_url: &str, _settings: &ProviderSettings) -> Option<String> {
        Some(format!("{base_url}/v1beta/models"))
    }

    fn models_path(&self, _settings: &ProviderSettings, cursor: Option<&str>) -> Option<String> {
        Some(match cursor {
            Some(c) => format!(
                "/v1beta/models?pageSize={PAGE_SIZE}&pageToken={}",
                form_encode(c)
            ),
            None => format!("/v1beta/models?pageSize={PAGE_SIZE}"),
        })
    }

    fn parse_models(&self, _settings: &ProviderSettings, body: &[u8]) -> Result<Page, String> {
        let list: GeminiList = serde_json::from_slice(body).map_err(|e| not_a_list("Gemini", e))?;
        Ok(Page {
            models: list.models.into_iter().map(discovered).collect(),
            next: list.next_page_token.filter(|t| !t.is_empty()),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiList {
    #[serde(default)]
    models: Vec<GeminiModel>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiModel {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    input_token_limit: Option<u64>,
    #[serde(default)]
    supported_generation_methods: Vec<String>,
    #[serde(default)]
    thinking: bool,
}

fn discovered(m: GeminiModel) -> Discovered {
    let methods = &m.supported_generation_methods;
    let has = |name: &str| methods.iter().any(|x| x == name);
    let id = m.name.strip_prefix("models/").unwrap_or(&m.name).to_owned();
    let mut tags = Vec::new();
    if has("generateContent") {
        tags.extend([Tag::Chat, Tag::FunctionCalling, Tag::Vision]);
    }
    if has("embedContent") || has("batchEmbedContents") {
        tags.push(Tag::Embeddings);
    }
    if has("predict") || id.contains("image") {
        tags.push(Tag::ImageGeneration);
    }
    if m.thinking {
        tags.push(Tag::Reasoning);
    }
    tags.sort();
    tags.dedup();
    Discovered {
        id,
        display_name: m.display_name,
        tags,
        context_window: m.input_token_limit,
        base_model: None,
        tags_from_metadata: true,
        created: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::listing::{fixture, ids};

    #[test]
    fn gemini_pages_follow_the_token_and_methods_give_tags() {
        let settings = ProviderSettings::default();
        let first = Gemini
            .parse_models(&settings, &fixture("gemini_page1.json"))
            .unwrap();
        assert_eq!(ids(&first), ["gemini-2.5-flash", "gemini-embedding-001"]);
        assert_eq!(first.models[0].context_window, Some(1_048_576));
        assert!(first.models[0].tags.contains(&Tag::Reasoning));
        assert_eq!(first.models[1].tags, [Tag::Embeddings]);
        assert_eq!(first.next.as_deref(), Some("Chlnb29nbGUvZ2VtaW5p+/="));
        assert_eq!(
            Gemini
                .models_path(&settings, first.next.as_deref())
                .unwrap(),
            "/v1beta/models?pageSize=100&pageToken=Chlnb29nbGUvZ2VtaW5p%2B%2F%3D"
        );
        let last = Gemini
            .parse_models(&settings, &fixture("gemini_page2.json"))
            .unwrap();
        assert_eq!(ids(&last), ["imagen-4.0-generate-001"]);
        assert_eq!(last.models[0].tags, [Tag::ImageGeneration]);
        assert_eq!(last.next, None);
        let err = Gemini.parse_models(&settings, b"<html>").unwrap_err();
        assert!(err.contains("Gemini"), "{err}");
    }
}
