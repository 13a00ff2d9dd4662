//! A provider as given (config file or admin API) made whole: checked against its kind, with
//! the kind's defaults applied.

use super::{spec, Setting};
use crate::domain::{check_model_names, ProviderDef, ProviderKind, ProviderSettings, Upstream};

/// Checks a provider as given (config file or admin API) and applies the defaults: the base
/// URL and the settings its kind (see [`super::ProviderSpec`]) derives.
pub fn resolve(
    kind: ProviderKind,
    base_url: Option<&str>,
    models: Vec<String>,
    mut settings: ProviderSettings,
) -> Result<ProviderDef, String> {
    check_model_names(&models)?;
    for proxy in &settings.proxies {
        proxy.parse::<std::net::SocketAddr>().map_err(|_| {
            format!("proxy {proxy:?} must be an IP address and port, such as 10.0.0.8:3128")
        })?;
    }
    if let Some(other) = Setting::ALL
        .into_iter()
        .find(|s| s.kind() != kind && s.is_set(&settings))
    {
        return Err(other.refusal());
    }
    let spec = spec(kind);
    spec.check_settings(&mut settings)?;
    let url = match base_url {
        Some(u) => u.to_owned(),
        None => spec
            .default_base_url(&settings)
            .ok_or_else(|| format!("base_url is required for kind {}", spec.name()))?,
    };
    let upstream = Upstream::parse(&url)?;
    spec.complete_settings(&upstream, &mut settings)?;
    Ok(ProviderDef {
        kind,
        base_url: url,
        models,
        settings,
    })
}

/// Whether discovery lists this provider's models.
pub fn discovers(kind: ProviderKind, settings: &ProviderSettings) -> bool {
    spec(kind).lists_models() && settings.discover != Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The base URL a provider uses: the one given, or its kind's public endpoint; checked.
    fn resolve_base_url(kind: ProviderKind, base_url: Option<&str>) -> Result<String, String> {
        resolve(kind, base_url, Vec::new(), ProviderSettings::default()).map(|d| d.base_url)
    }

    #[test]
    fn base_urls_default_by_kind_and_are_checked() {
        assert_eq!(
            resolve_base_url(ProviderKind::Anthropic, None).as_deref(),
            Ok("https://api.anthropic.com")
        );
        assert!(resolve_base_url(ProviderKind::OpenaiCompatible, None).is_err());
        assert!(resolve_base_url(ProviderKind::Openai, Some("ftp://x")).is_err());
        assert!(check_model_names(&["a".into(), "b c".into()]).is_err());
    }

    #[test]
    fn presets_and_azure_settings_resolve() {
        let mistral = ProviderSettings {
            preset: Some("mistral".into()),
            ..Default::default()
        };
        let def = resolve(ProviderKind::OpenaiCompatible, None, vec![], mistral).expect("resolves");
        assert_eq!(def.base_url, "https://api.mistral.ai/v1");
        let q = spec(def.kind).quirks(&def.settings);
        assert!(q.drop.iter().any(|d| d == "store"));
        assert!(q.rename.contains(&("seed".into(), "random_seed".into())));
        assert!(!q.stream_usage);

        let unknown = ProviderSettings {
            preset: Some("nope".into()),
            ..Default::default()
        };
        let err = resolve(ProviderKind::OpenaiCompatible, None, vec![], unknown)
            .expect_err("unknown preset");
        assert!(err.contains("mistral"), "{err}");
        let vllm = ProviderSettings {
            preset: Some("vllm".into()),
            ..Default::default()
        };
        assert!(resolve(ProviderKind::OpenaiCompatible, None, vec![], vllm).is_err());

        let azure = |url: &str, version: Option<&str>| {
            resolve(
                ProviderKind::AzureOpenai,
                Some(url),
                vec![],
                ProviderSettings {
                    api_version: version.map(Into::into),
                    ..Default::default()
                },
            )
        };
        let d = azure("https://res.openai.azure.com", None).expect("resolves");
        assert_eq!(
            d.settings.api_version.as_deref(),
            Some(super::super::AZURE_API_VERSION)
        );
        let v1 = azure("https://res.openai.azure.com/openai/v1", None).expect("resolves");
        assert_eq!(v1.settings.api_version, None);
        assert!(azure("https://res.openai.azure.com", Some("2024-10-21&x=1")).is_err());
        assert!(azure("https://res.openai.azure.com", None).is_ok());
        assert!(resolve(
            ProviderKind::Openai,
            None,
            vec![],
            ProviderSettings {
                api_version: Some("2024-10-21".into()),
                ..Default::default()
            }
        )
        .is_err());
    }

    #[test]
    fn vertex_needs_a_project_and_defaults_to_global() {
        let vertex = |project: Option<&str>, location: Option<&str>| {
            resolve(
                ProviderKind::Vertex,
                None,
                vec![],
                ProviderSettings {
                    project: project.map(Into::into),
                    location: location.map(Into::into),
                    ..Default::default()
                },
            )
        };
        let d = vertex(Some("my-proj"), None).expect("resolves");
        assert_eq!(d.base_url, "https://aiplatform.googleapis.com");
        assert_eq!(d.settings.location.as_deref(), Some("global"));
        let d = vertex(Some("my-proj"), Some("us-east5")).expect("resolves");
        assert_eq!(d.base_url, "https://us-east5-aiplatform.googleapis.com");
        assert!(vertex(None, None).is_err());
        assert!(vertex(Some("My Project"), None).is_err());
    }

    #[test]
    fn bedrock_regions_resolve() {
        let bedrock = |url: Option<&str>, region: Option<&str>| {
            resolve(
                ProviderKind::Bedrock,
                url,
                vec![],
                ProviderSettings {
                    region: region.map(Into::into),
                    ..Default::default()
                },
            )
        };
        let d = bedrock(None, Some("eu-west-1")).expect("resolves");
        assert_eq!(
            d.base_url,
            "https://bedrock-runtime.eu-west-1.amazonaws.com"
        );
        let d = bedrock(
            Some("https://bedrock-runtime.us-west-2.amazonaws.com"),
            None,
        )
        .expect("resolves");
        assert_eq!(d.settings.region.as_deref(), Some("us-west-2"));
        assert!(bedrock(Some("http://127.0.0.1:9000"), None).is_err());
        assert!(bedrock(None, Some("US_EAST")).is_err());
        assert!(bedrock(None, None).is_err());
    }
}
