//! OpenAI: bearer keys, paths below `https://api.openai.com/v1`, and the model list format
//! its compatible providers share.
//!
//! Model list, `GET {base}/models`: `{"object":"list","data":[{"id","object":"model",
//! "created","owned_by"}]}`, one page (<https://platform.openai.com/docs/api-reference/models/list>).
//! It says nothing about capabilities: tags come from the model's name.

use serde::Deserialize;

use super::listing::not_a_list;
use super::{tags_from_name, Discovered, Page, ProviderSpec};
use crate::domain::ProviderSettings;

pub struct OpenAi;

impl ProviderSpec for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn default_base_url(&self, _settings: &ProviderSettings) -> Option<String> {
        Some("https://api.openai.com/v1".into())
    }

    fn probe_url(&self, base_url: &str, _settings: &ProviderSettings) -> Option<String> {
        Some(format!("{base_url}/models"))
    }

    fn models_path(&self, _settings: &ProviderSettings, _cursor: Option<&str>) -> Option<String> {
        Some("/models".into())
    }

    fn parse_models(&self, _settings: &ProviderSettings, body: &[u8]) -> Result<Page, String> {
        parse_list(body)
    }
}

#[derive(Deserialize)]
struct OpenAiList {
    data: Vec<OpenAiModel>,
}

#[derive(Deserialize)]
struct OpenAiModel {
    id: String,
    #[serde(default)]
    created: Option<i64>,
}

/// Reads an OpenAI-style model list (one page).
pub(super) fn parse_list(body: &[u8]) -> Result<Page, String> {
    let list: OpenAiList = serde_json::from_slice(body).map_err(|e| not_a_list("OpenAI", e))?;
    Ok(Page {
        models: list
            .data
            .into_iter()
            .map(|m| Discovered {
                tags: tags_from_name(&m.id),
                id: m.id,
                display_name: None,
                context_window: None,
                base_model: None,
                tags_from_metadata: false,
                created: m.created.filter(|c| *c > 0),
            })
            .collect(),
        next: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::listing::{fixture, ids};
    use crate::providers::Tag;

    #[test]
    fn openai_lists_are_one_page_and_tagged_by_name() {
        let page = OpenAi
            .parse_models(&ProviderSettings::default(), &fixture("openai.json"))
            .unwrap();
        assert_eq!(page.next, None);
        assert_eq!(
            ids(&page),
            [
                "gpt-4o-mini",
                "o3-mini",
                "text-embedding-3-small",
                "dall-e-3",
                "whisper-1"
            ]
        );
        let tags: Vec<&[Tag]> = page.models.iter().map(|m| m.tags.as_slice()).collect();
        assert_eq!(tags[0], [Tag::Chat, Tag::Vision, Tag::FunctionCalling]);
        assert!(tags[1].contains(&Tag::Reasoning));
        assert_eq!(tags[2], [Tag::Embeddings]);
        assert_eq!(tags[3], [Tag::ImageGeneration]);
        assert!(tags[4].is_empty());
    }

    #[test]
    fn a_bad_list_is_an_error_naming_the_format() {
        let err = parse_list(b"<html>").unwrap_err();
        assert!(err.contains("OpenAI"), "{err}");
    }
}
