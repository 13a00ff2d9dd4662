//! What the control plane knows about each provider kind, one module per kind: its settings and
//! their defaults, how its requests are authenticated and addressed, how it is probed and how
//! its model list is read. Callers ask [`spec`] instead of matching on the kind.

mod anthropic;
mod azure;
mod bedrock;
mod gemini;
mod listing;
mod openai;
mod openai_compatible;
mod resolve;
mod tags;
pub mod vertex;

use switchyard_contract::config::{PathStyle, Quirks};

use crate::domain::{ProviderKind, ProviderSettings, Upstream};

pub use azure::AZURE_API_VERSION;
pub use listing::{Discovered, Listing, Page, PAGE_SIZE};
pub use openai_compatible::{preset, Preset, PRESETS};
pub use resolve::{discovers, resolve};
pub use switchyard_contract::config::Tag;
pub use tags::tags_from_name;

/// The module answering for `kind`: the one place the control plane matches on a kind.
pub fn spec(kind: ProviderKind) -> &'static dyn ProviderSpec {
    match kind {
        ProviderKind::Openai => &openai::OpenAi,
        ProviderKind::OpenaiCompatible => &openai_compatible::OpenAiCompatible,
        ProviderKind::AzureOpenai => &azure::AzureOpenAi,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Gemini => &gemini::Gemini,
        ProviderKind::Vertex => &vertex::Vertex,
        ProviderKind::Bedrock => &bedrock::Bedrock,
    }
}

/// Everything the control plane asks about one provider kind. The defaults answer for a kind
/// that speaks OpenAI's protocol with a bearer key and has no settings of its own.
pub trait ProviderSpec: Sync {
    /// The kind's name in the configuration file, the admin API and the store
    /// (`openai_compatible`); the same as the kind's serde name.
    fn name(&self) -> &'static str;

    /// Checks the settings of this kind (see [`Setting`]) when a provider is added or
    /// changed, and fills in their defaults. Called before the base URL is known.
    fn check_settings(&self, _settings: &mut ProviderSettings) -> Result<(), String> {
        Ok(())
    }

    /// The base URL when the provider names none, from the kind or its settings (already
    /// checked); `None`: the provider must give one.
    fn default_base_url(&self, settings: &ProviderSettings) -> Option<String>;

    /// Completes the settings from the resolved base URL (a region a URL names, a version
    /// its URLs need). Called last when a provider is added or changed.
    fn complete_settings(
        &self,
        _upstream: &Upstream,
        _settings: &mut ProviderSettings,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Checks the shape of a provider key (its secret) when it is added.
    fn check_secret(&self, _secret: &str) -> Result<(), String> {
        Ok(())
    }

    /// Further checks of a key added to a user's own (untrusted) provider.
    fn check_untrusted_secret(&self, _secret: &str) -> Result<(), String> {
        Ok(())
    }

    /// Whether the control plane trades this kind's keys for short-lived access tokens,
    /// which the data plane gets in place of the keys.
    fn mints_access_tokens(&self) -> bool {
        false
    }

    /// The header carrying the key (lower case) and the text before the key in it.
    fn auth_header(&self) -> (&'static str, &'static str) {
        ("authorization", "Bearer ")
    }

    /// Headers the kind's API requires on every request.
    fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The path prefix of every request the data plane sends, from the base URL's path.
    fn path_prefix(&self, upstream: &Upstream, _settings: &ProviderSettings) -> String {
        upstream.path_prefix.clone()
    }

    /// How the data plane builds request paths below the prefix.
    fn path_style(&self, _settings: &ProviderSettings) -> PathStyle {
        PathStyle::Openai
    }

    /// The query string of every request path the data plane sends, without `?`.
    fn query(&self, _settings: &ProviderSettings) -> String {
        String::new()
    }

    /// What the provider does differently from the API its kind speaks (the data plane adapts
    /// requests to it).
    fn quirks(&self, _settings: &ProviderSettings) -> Quirks {
        Quirks::default()
    }

    /// The URL of the probe request (an authenticated `GET` of a cheap resource, answered
    /// with 401/403 for a refused key) below `base_url` (no trailing `/`); `None`: the kind
    /// is not probed, traffic alone measures it.
    fn probe_url(&self, _base_url: &str, _settings: &ProviderSettings) -> Option<String> {
        None
    }

    /// The path and query of the models page after `cursor` (`None`: the first), below the
    /// base URL; `None` when the kind has no model list on its base URL.
    fn models_path(&self, _settings: &ProviderSettings, _cursor: Option<&str>) -> Option<String> {
        None
    }

    /// Parses one page of the list at [`ProviderSpec::models_path`].
    fn parse_models(&self, _settings: &ProviderSettings, _body: &[u8]) -> Result<Page, String> {
        Err(format!("kind {} has no model list", self.name()))
    }

    /// Whether discovery can list the kind's models (override with
    /// [`ProviderSpec::listing`]).
    fn lists_models(&self) -> bool {
        self.models_path(&ProviderSettings::default(), None)
            .is_some()
    }

    /// A read through the provider's model list, called at each discovery; the default reads
    /// the pages at [`ProviderSpec::models_path`] with the key in the kind's header.
    fn listing<'a>(
        &'a self,
        base_url: &'a str,
        settings: &'a ProviderSettings,
        secret: &'a str,
    ) -> Option<Box<dyn Listing + 'a>> {
        self.models_path(settings, None)?;
        Some(Box::new(listing::OnBaseUrl {
            spec: self,
            base_url: base_url.trim_end_matches('/'),
            settings,
            secret,
        }))
    }
}

/// `req` with the provider's key in its kind's header and the headers its API requires (the
/// control plane's own requests: probes, model lists).
pub fn authorize(
    spec: &(impl ProviderSpec + ?Sized),
    req: reqwest::RequestBuilder,
    secret: &str,
) -> reqwest::RequestBuilder {
    let (header, prefix) = spec.auth_header();
    spec.required_headers().iter().fold(
        req.header(header, format!("{prefix}{secret}")),
        |r, (k, v)| r.header(*k, *v),
    )
}

/// A field of [`ProviderSettings`] that only one kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `preset`.
    Preset,
    /// `region`.
    Region,
    /// `project` and `location`.
    ProjectLocation,
    /// `api_version`.
    ApiVersion,
}

impl Setting {
    pub const ALL: [Setting; 4] = [
        Setting::Preset,
        Setting::Region,
        Setting::ProjectLocation,
        Setting::ApiVersion,
    ];

    /// The kind that takes it.
    pub fn kind(self) -> ProviderKind {
        match self {
            Setting::Preset => ProviderKind::OpenaiCompatible,
            Setting::Region => ProviderKind::Bedrock,
            Setting::ProjectLocation => ProviderKind::Vertex,
            Setting::ApiVersion => ProviderKind::AzureOpenai,
        }
    }

    /// Whether `settings` give it.
    pub fn is_set(self, settings: &ProviderSettings) -> bool {
        match self {
            Setting::Preset => settings.preset.is_some(),
            Setting::Region => settings.region.is_some(),
            Setting::ProjectLocation => settings.project.is_some() || settings.location.is_some(),
            Setting::ApiVersion => settings.api_version.is_some(),
        }
    }

    /// The error for a provider of another kind that gives it.
    pub fn refusal(self) -> String {
        let what = match self {
            Setting::Preset => "preset is",
            Setting::Region => "region is",
            Setting::ProjectLocation => "project and location are",
            Setting::ApiVersion => "api_version is",
        };
        format!("{what} only for kind {}", spec(self.kind()).name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [ProviderKind; 7] = [
        ProviderKind::Openai,
        ProviderKind::OpenaiCompatible,
        ProviderKind::AzureOpenai,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::Vertex,
        ProviderKind::Bedrock,
    ];

    #[test]
    fn each_kind_is_named_as_serde_names_it() {
        for kind in KINDS {
            let serde = serde_json::to_value(kind).expect("serialises");
            assert_eq!(serde.as_str(), Some(spec(kind).name()), "{kind:?}");
        }
    }

    #[test]
    fn each_kind_that_lists_models_has_a_listing() {
        let settings = ProviderSettings::default();
        for kind in KINDS {
            let s = spec(kind);
            let listing = s.listing("https://h", &settings, "k");
            assert_eq!(s.lists_models(), listing.is_some(), "{kind:?}");
        }
        assert!(!spec(ProviderKind::Vertex).lists_models());
        assert!(spec(ProviderKind::Bedrock).lists_models());
    }

    #[test]
    fn each_setting_is_refused_with_its_kinds_name() {
        assert_eq!(
            Setting::Preset.refusal(),
            "preset is only for kind openai_compatible"
        );
        assert_eq!(
            Setting::ProjectLocation.refusal(),
            "project and location are only for kind vertex"
        );
        assert_eq!(
            Setting::ApiVersion.refusal(),
            "api_version is only for kind azure_openai"
        );
        assert_eq!(Setting::Region.refusal(), "region is only for kind bedrock");
    }

    #[test]
    fn keys_go_in_each_kinds_header() {
        let http = reqwest::Client::new();
        let header = |kind| {
            let req = authorize(spec(kind), http.get("http://h/"), "sk")
                .build()
                .expect("request");
            req.headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("")))
                .collect::<Vec<_>>()
        };
        assert_eq!(header(ProviderKind::Openai), ["authorization: Bearer sk"]);
        assert_eq!(
            header(ProviderKind::Anthropic),
            ["x-api-key: sk", "anthropic-version: 2023-06-01"]
        );
        assert_eq!(header(ProviderKind::AzureOpenai), ["api-key: sk"]);
        assert_eq!(header(ProviderKind::Gemini), ["x-goog-api-key: sk"]);
    }
}
