//! Azure OpenAI: OpenAI's protocol on a resource's own host, the key in `api-key`. Deployment
//! URLs (`{base}/openai/deployments/{deployment}/...?api-version=`) name the deployment and need
//! an API version; the v1 API (`{base}/openai/v1/...`) takes neither.
//!
//! Model lists: with deployment URLs, the deployments (what requests name),
//! `GET /openai/deployments?api-version=2022-12-01`: `{"data":[{"id" (the deployment),"model",
//! "status","object":"deployment"}]}`; with the v1 API, OpenAI's `GET {base}/models`.

use serde::Deserialize;
use switchyard_contract::config::PathStyle;

use super::listing::not_a_list;
use super::openai::parse_list;
use super::{tags_from_name, Discovered, Page, ProviderSpec};
use crate::domain::{ProviderSettings, Upstream};

/// Azure OpenAI's `api-version` for deployment URLs when none is configured (the latest GA).
pub const AZURE_API_VERSION: &str = "2024-10-21";

pub struct AzureOpenAi;

/// Whether requests use deployment URLs (then an API version is set) rather than the v1 API.
fn deployment_urls(settings: &ProviderSettings) -> bool {
    settings.api_version.is_some()
}

impl ProviderSpec for AzureOpenAi {
    fn name(&self) -> &'static str {
        "azure_openai"
    }

    fn check_settings(&self, settings: &mut ProviderSettings) -> Result<(), String> {
        settings
            .api_version
            .as_deref()
            .map_or(Ok(()), check_api_version)
    }

    fn default_base_url(&self, _settings: &ProviderSettings) -> Option<String> {
        None
    }

    fn complete_settings(
        &self,
        upstream: &Upstream,
        settings: &mut ProviderSettings,
    ) -> Result<(), String> {
        // The v1 API (`.../openai/v1`) takes no version; deployment URLs need one.
        if settings.api_version.is_none() && !upstream.path_prefix.ends_with("/openai/v1") {
            settings.api_version = Some(AZURE_API_VERSION.into());
        }
        Ok(())
    }

    fn auth_header(&self) -> (&'static str, &'static str) {
        ("api-key", "")
    }

    // Deployment URLs carry the model and an `api-version`; the v1 API has neither.
    fn path_style(&self, settings: &ProviderSettings) -> PathStyle {
        if deployment_urls(settings) {
            PathStyle::AzureDeployment
        } else {
            PathStyle::Openai
        }
    }

    fn query(&self, settings: &ProviderSettings) -> String {
        settings
            .api_version
            .as_deref()
            .map(|v| format!("api-version={v}"))
            .unwrap_or_default()
    }

    fn probe_url(&self, base_url: &str, settings: &ProviderSettings) -> Option<String> {
        Some(if base_url.ends_with("/openai/v1") {
            format!("{base_url}/models")
        } else {
            format!(
                "{base_url}/openai/models?api-version={}",
                settings.api_version.as_deref().unwrap_or(AZURE_API_VERSION)
            )
        })
    }

    fn models_path(&self, settings: &ProviderSettings, _cursor: Option<&str>) -> Option<String> {
        Some(if deployment_urls(settings) {
            "/openai/deployments?api-version=2022-12-01".into()
        } else {
            "/models".into()
        })
    }

    fn parse_models(&self, settings: &ProviderSettings, body: &[u8]) -> Result<Page, String> {
        if deployment_urls(settings) {
            parse_deployments(body)
        } else {
            parse_list(body)
        }
    }
}

fn check_api_version(v: &str) -> Result<(), String> {
    let ok =
        !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("api_version {v:?} must look like 2024-10-21"))
    }
}

#[derive(Deserialize)]
struct AzureDeployments {
    data: Vec<AzureDeployment>,
}

#[derive(Deserialize)]
struct AzureDeployment {
    id: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    created_at: Option<i64>,
}

fn parse_deployments(body: &[u8]) -> Result<Page, String> {
    let list: AzureDeployments =
        serde_json::from_slice(body).map_err(|e| not_a_list("Azure deployment", e))?;
    Ok(Page {
        models: list
            .data
            .into_iter()
            // A deployment still being created (or failed) serves nothing yet.
            .filter(|d| d.status.as_deref().is_none_or(|s| s == "succeeded"))
            .map(|d| Discovered {
                tags: tags_from_name(d.model.as_deref().unwrap_or(&d.id)),
                id: d.id,
                display_name: None,
                context_window: None,
                base_model: d.model,
                tags_from_metadata: false,
                created: d.created_at.filter(|c| *c > 0),
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

    fn deployments() -> ProviderSettings {
        ProviderSettings {
            api_version: Some(AZURE_API_VERSION.into()),
            ..Default::default()
        }
    }

    #[test]
    fn azure_deployments_name_their_model_and_only_ready_ones_count() {
        let page = AzureOpenAi
            .parse_models(&deployments(), &fixture("azure_deployments.json"))
            .unwrap();
        assert_eq!(ids(&page), ["chat-prod", "embed"]);
        assert_eq!(page.models[0].base_model.as_deref(), Some("gpt-4o"));
        assert!(page.models[0].tags.contains(&Tag::Vision));
        assert_eq!(page.models[1].tags, [Tag::Embeddings]);
    }

    #[test]
    fn deployment_urls_take_a_version_and_the_v1_api_none() {
        let v1 = ProviderSettings::default();
        assert_eq!(AzureOpenAi.path_style(&v1), PathStyle::Openai);
        assert_eq!(AzureOpenAi.query(&v1), "");
        assert_eq!(
            AzureOpenAi.models_path(&v1, None).as_deref(),
            Some("/models")
        );
        assert_eq!(
            AzureOpenAi.probe_url("https://r/openai/v1", &v1).as_deref(),
            Some("https://r/openai/v1/models")
        );
        let d = deployments();
        assert_eq!(AzureOpenAi.path_style(&d), PathStyle::AzureDeployment);
        assert_eq!(AzureOpenAi.query(&d), "api-version=2024-10-21");
        assert_eq!(
            AzureOpenAi.models_path(&d, None).as_deref(),
            Some("/openai/deployments?api-version=2022-12-01")
        );
        assert!(AzureOpenAi
            .check_settings(&mut ProviderSettings {
                api_version: Some("2024-10-21&x=1".into()),
                ..Default::default()
            })
            .is_err());
    }
}
