//! Domain types of the control plane and their validation rules.

use serde::{Deserialize, Serialize};

pub use switchyard_filter::config::ProviderKind;

/// How a logical model ranks its targets; the filter applies it (`switchyard_filter::rank`).
pub use switchyard_filter::rank::Strategy;

pub fn strategy_str(s: Strategy) -> &'static str {
    match s {
        Strategy::Weighted => "weighted",
        Strategy::Latency => "latency",
        Strategy::Cost => "cost",
        Strategy::Reliability => "reliability",
        Strategy::Balanced => "balanced",
    }
}

pub fn parse_strategy(s: &str) -> Option<Strategy> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

/// A model without a strategy in the config is `balanced` (DESIGN.md's contract).
pub fn default_strategy() -> Strategy {
    Strategy::Balanced
}

pub fn kind_str(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::OpenaiCompatible => "openai_compatible",
        ProviderKind::AzureOpenai => "azure_openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gemini",
        ProviderKind::Vertex => "vertex",
        ProviderKind::Bedrock => "bedrock",
    }
}

pub fn parse_kind(s: &str) -> Option<ProviderKind> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

/// The provider's public endpoint, used when `base_url` is not given.
pub fn default_base_url(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Openai => Some("https://api.openai.com/v1"),
        ProviderKind::Anthropic => Some("https://api.anthropic.com"),
        ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
        _ => None,
    }
}

/// Azure OpenAI's `api-version` for deployment URLs when none is configured (the latest GA).
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// What a provider is besides its name, keys and state: checked, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderDef {
    pub kind: ProviderKind,
    pub base_url: String,
    pub models: Vec<String>,
    pub settings: ProviderSettings,
}

/// Settings only some kinds take, stored as one JSON column.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// `openai_compatible`: the provider's preset (see [`PRESETS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// `azure_openai`: `api-version` of deployment URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `bedrock`: the AWS region requests are signed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `vertex`: the Google Cloud project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `vertex`: the location (region such as `us-east5`, or `global`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// HTTP CONNECT proxies (`ip:port`) requests to the provider go through, in a pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<String>,
    /// Whether the control plane lists the provider's models (default: yes, for every kind
    /// that has a list; Vertex has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discover: Option<bool>,
    /// Whether models discovery finds are served at once (`enabled`, the default) or wait for
    /// an admin to enable them (`disabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub new_models: Option<NewModels>,
}

/// What happens to a model discovery finds for the first time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewModels {
    #[default]
    Enabled,
    Disabled,
}

impl ProviderSettings {
    /// Whether discovery lists this provider's models.
    pub fn discovers(&self, kind: ProviderKind) -> bool {
        kind != ProviderKind::Vertex && self.discover != Some(false)
    }
}

impl ProviderDef {
    /// Checks a provider as given (config file or admin API) and applies the defaults: the base
    /// URL from the kind or preset, Azure's API version for deployment URLs.
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
        let preset = match settings.preset.as_deref() {
            None => None,
            Some(name) if kind == ProviderKind::OpenaiCompatible => {
                Some(preset(name).ok_or_else(|| {
                    let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                    format!("unknown preset {name:?}; known: {}", names.join(", "))
                })?)
            }
            Some(_) => return Err("preset is only for kind openai_compatible".into()),
        };
        if let Some(region) = &settings.region {
            if kind != ProviderKind::Bedrock {
                return Err("region is only for kind bedrock".into());
            }
            check_region(region)?;
        }
        if kind == ProviderKind::Vertex {
            let project = settings
                .project
                .as_deref()
                .ok_or("project is required for kind vertex")?;
            check_gcp_name("project", project)?;
            let location = settings.location.get_or_insert_with(|| "global".into());
            check_gcp_name("location", location)?;
        } else if settings.project.is_some() || settings.location.is_some() {
            return Err("project and location are only for kind vertex".into());
        }
        let vertex_url = settings.location.as_deref().map(|l| {
            if l == "global" {
                "https://aiplatform.googleapis.com".to_owned()
            } else {
                format!("https://{l}-aiplatform.googleapis.com")
            }
        });
        let url = match (base_url, preset.and_then(|p| p.base_url), &settings.region) {
            (Some(u), _, _) => u.to_owned(),
            (None, Some(u), _) => u.to_owned(),
            (None, None, Some(region)) if kind == ProviderKind::Bedrock => {
                format!("https://bedrock-runtime.{region}.amazonaws.com")
            }
            (None, None, _) if kind == ProviderKind::Vertex => vertex_url.unwrap_or_default(),
            (None, None, _) => default_base_url(kind)
                .ok_or_else(|| format!("base_url is required for kind {}", kind_str(kind)))?
                .to_owned(),
        };
        let upstream = Upstream::parse(&url)?;
        if kind == ProviderKind::Bedrock && settings.region.is_none() {
            // `https://bedrock-runtime.<region>.amazonaws.com` names its region.
            let region = upstream
                .host
                .strip_prefix("bedrock-runtime.")
                .and_then(|h| h.split('.').next())
                .filter(|r| !r.is_empty())
                .ok_or("region is required for kind bedrock when base_url does not name it")?;
            settings.region = Some(region.to_owned());
        }
        match (kind, &settings.api_version) {
            (ProviderKind::AzureOpenai, Some(v)) => check_api_version(v)?,
            // The v1 API (`.../openai/v1`) takes no version; deployment URLs need one.
            (ProviderKind::AzureOpenai, None) if !upstream.path_prefix.ends_with("/openai/v1") => {
                settings.api_version = Some(AZURE_API_VERSION.into());
            }
            (ProviderKind::AzureOpenai, None) => {}
            (_, Some(_)) => return Err("api_version is only for kind azure_openai".into()),
            (_, None) => {}
        }
        Ok(ProviderDef {
            kind,
            base_url: url,
            models,
            settings,
        })
    }
}

fn check_gcp_name(what: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {v:?} must be lower-case letters, digits and '-'"
        ))
    }
}

fn check_region(r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("region {r:?} must look like us-east-1"))
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

/// An OpenAI-compatible provider's defaults and its differences from OpenAI, as data.
#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    pub base_url: Option<&'static str>,
    /// Top-level request fields the provider refuses or ignores.
    pub drop: &'static [&'static str],
    /// Fields it names differently: (OpenAI's name, the provider's).
    pub rename: &'static [(&'static str, &'static str)],
    /// Whether it takes `stream_options.include_usage`.
    pub stream_usage: bool,
}

/// OpenAI platform features no compatible provider has; dropped for all of them (the strict
/// ones refuse unknown fields).
const OPENAI_ONLY: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "modalities",
    "audio",
    "verbosity",
    "web_search_options",
    "safety_identifier",
    "prompt_cache_key",
];

macro_rules! presets {
    ($($name:literal => $url:expr, drop: [$($d:literal),*], rename: [$($from:literal => $to:literal),*], stream_usage: $su:expr;)*) => {
        /// Every OpenAI-compatible preset. Sources: each provider's API reference.
        pub const PRESETS: &[Preset] = &[$(Preset {
            name: $name,
            base_url: $url,
            drop: &[$($d),*],
            rename: &[$(($from, $to)),*],
            stream_usage: $su,
        }),*];
    };
}

presets! {
    "openai" => Some("https://api.openai.com/v1"), drop: [], rename: [], stream_usage: true;
    "deepseek" => Some("https://api.deepseek.com/v1"), drop: [], rename: [], stream_usage: true;
    // Mistral refuses unknown fields (422), names the seed `random_seed`, always sends usage
    // with the last chunk and takes no stream_options.
    "mistral" => Some("https://api.mistral.ai/v1"),
        drop: ["stream_options", "user", "logprobs", "top_logprobs", "logit_bias", "reasoning_effort"],
        rename: ["seed" => "random_seed", "max_completion_tokens" => "max_tokens"], stream_usage: false;
    // Groq refuses logprobs, logit_bias and top_logprobs.
    "groq" => Some("https://api.groq.com/openai/v1"),
        drop: ["logprobs", "top_logprobs", "logit_bias"], rename: [], stream_usage: true;
    "xai" => Some("https://api.x.ai/v1"), drop: [], rename: [], stream_usage: true;
    "openrouter" => Some("https://openrouter.ai/api/v1"), drop: [], rename: [], stream_usage: true;
    "together" => Some("https://api.together.xyz/v1"), drop: [], rename: [], stream_usage: true;
    "fireworks" => Some("https://api.fireworks.ai/inference/v1"), drop: [], rename: [], stream_usage: true;
    "dashscope" => Some("https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
        drop: [], rename: [], stream_usage: true;
    "moonshot" => Some("https://api.moonshot.ai/v1"), drop: [], rename: [], stream_usage: true;
    // Zhipu takes `max_tokens` only and puts usage in the last chunk by itself.
    "zhipu" => Some("https://open.bigmodel.cn/api/paas/v4"),
        drop: ["stream_options"], rename: ["max_completion_tokens" => "max_tokens"], stream_usage: false;
    "baichuan" => Some("https://api.baichuan-ai.com/v1"),
        drop: ["stream_options"], rename: ["max_completion_tokens" => "max_tokens"], stream_usage: false;
    "ollama" => Some("http://127.0.0.1:11434/v1"), drop: [], rename: [], stream_usage: true;
    "vllm" => None, drop: [], rename: [], stream_usage: true;
}

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The filter's quirks for a provider (none for OpenAI itself and for unknown presets).
pub fn quirks(
    def_kind: ProviderKind,
    settings: &ProviderSettings,
) -> switchyard_filter::config::Quirks {
    use switchyard_filter::config::Quirks;
    let Some(p) = settings.preset.as_deref().and_then(preset) else {
        return Quirks::default();
    };
    if def_kind != ProviderKind::OpenaiCompatible || p.name == "openai" {
        return Quirks::default();
    }
    Quirks {
        drop: OPENAI_ONLY
            .iter()
            .chain(p.drop)
            .map(|s| (*s).to_owned())
            .collect(),
        rename: p
            .rename
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect(),
        stream_usage: p.stream_usage,
    }
}

/// Every name in a provider's model list must be one a client can send.
pub fn check_model_names(models: &[String]) -> Result<(), String> {
    models.iter().try_for_each(|m| check_model_name(m))
}

/// Names of providers, models and keys: they end up in cluster names and URLs, so they are
/// kept to a safe alphabet.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
        ))
    }
}

/// A model name as clients send it (logical names may also contain `/`, `:` and `@`).
pub fn check_model_name(name: &str) -> Result<(), String> {
    switchyard_filter::route::check_model_name(name)
        .map_err(|e| e.replace("`model`", &format!("model name {name:?}")))?;
    if name.chars().any(char::is_whitespace) {
        return Err(format!("model name {name:?} must not contain spaces"));
    }
    Ok(())
}

/// Where a provider lives, from its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path of the base URL without a trailing slash (`/v1`, or empty).
    pub path_prefix: String,
}

impl Upstream {
    pub fn parse(base_url: &str) -> Result<Upstream, String> {
        let url = url::Url::parse(base_url).map_err(|e| format!("base_url {base_url:?}: {e}"))?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(format!(
                    "base_url {base_url:?}: scheme {other} is not http(s)"
                ))
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "base_url {base_url:?}: credentials are not allowed in URLs"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "base_url {base_url:?}: no query or fragment allowed"
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("base_url {base_url:?}: no host")),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("base_url {base_url:?}: no port"))?;
        let path_prefix = url.path().trim_end_matches('/').to_owned();
        Ok(Upstream {
            tls,
            host,
            port,
            path_prefix,
        })
    }

    /// The `:authority` to send: the host, with the port when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    pub fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

/// How a provider kind expects its key: header name and value prefix.
pub fn auth_header(kind: ProviderKind) -> (&'static str, &'static str) {
    match kind {
        ProviderKind::Anthropic => ("x-api-key", ""),
        ProviderKind::AzureOpenai => ("api-key", ""),
        ProviderKind::Gemini => ("x-goog-api-key", ""),
        _ => ("authorization", "Bearer "),
    }
}

/// `req` with the provider's key in its kind's header and the headers its API requires (the
/// control plane's own requests: probes, model lists).
pub fn authorize(
    req: reqwest::RequestBuilder,
    kind: ProviderKind,
    secret: &str,
) -> reqwest::RequestBuilder {
    let (header, prefix) = auth_header(kind);
    required_headers(kind).into_iter().fold(
        req.header(header, format!("{prefix}{secret}")),
        |r, (k, v)| r.header(k, v),
    )
}

/// Headers a provider kind's API requires on every request.
/// Anthropic: <https://docs.anthropic.com/en/api/versioning>
pub fn required_headers(kind: ProviderKind) -> Vec<(String, String)> {
    match kind {
        ProviderKind::Anthropic => vec![("anthropic-version".into(), "2023-06-01".into())],
        _ => Vec::new(),
    }
}

/// An amount of US dollars as integer micro-USD, if it is a finite amount of at most a billion
/// dollars either way. Exact for any amount written with up to six decimals.
pub fn usd_to_micros(usd: f64) -> Option<i64> {
    (usd.is_finite() && usd.abs() <= 1e9).then(|| (usd * 1e6).round() as i64)
}

/// Micro-USD as a decimal amount of dollars (`1500000` -> `1.5`), exactly.
pub fn micros_to_usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let cents = format!("{:06}", m % 1_000_000);
    let frac = cents.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{}", m / 1_000_000)
    } else {
        format!("{sign}{}.{frac}", m / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_become_upstreams() {
        let u = Upstream::parse("https://api.openai.com/v1/").expect("valid");
        assert_eq!(
            u,
            Upstream {
                tls: true,
                host: "api.openai.com".into(),
                port: 443,
                path_prefix: "/v1".into()
            }
        );
        assert_eq!(u.authority(), "api.openai.com");
        let local = Upstream::parse("http://127.0.0.1:11434/v1").expect("valid");
        assert_eq!(local.authority(), "127.0.0.1:11434");
        assert!(local.is_ip());
        let root = Upstream::parse("https://api.anthropic.com").expect("valid");
        assert_eq!(root.path_prefix, "");
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("https://user:pw@x.com").is_err());
        assert!(Upstream::parse("not a url").is_err());
    }

    /// The base URL a provider uses: the one given, or its kind's public endpoint; checked.
    fn resolve_base_url(kind: ProviderKind, base_url: Option<&str>) -> Result<String, String> {
        ProviderDef::resolve(kind, base_url, Vec::new(), ProviderSettings::default())
            .map(|d| d.base_url)
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
        let def = ProviderDef::resolve(ProviderKind::OpenaiCompatible, None, vec![], mistral)
            .expect("resolves");
        assert_eq!(def.base_url, "https://api.mistral.ai/v1");
        let q = quirks(def.kind, &def.settings);
        assert!(q.drop.iter().any(|d| d == "store"));
        assert!(q.rename.contains(&("seed".into(), "random_seed".into())));
        assert!(!q.stream_usage);

        let unknown = ProviderSettings {
            preset: Some("nope".into()),
            ..Default::default()
        };
        let err = ProviderDef::resolve(ProviderKind::OpenaiCompatible, None, vec![], unknown)
            .expect_err("unknown preset");
        assert!(err.contains("mistral"), "{err}");
        let vllm = ProviderSettings {
            preset: Some("vllm".into()),
            ..Default::default()
        };
        assert!(ProviderDef::resolve(ProviderKind::OpenaiCompatible, None, vec![], vllm).is_err());

        let azure = |url: &str, version: Option<&str>| {
            ProviderDef::resolve(
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
        assert_eq!(d.settings.api_version.as_deref(), Some(AZURE_API_VERSION));
        let v1 = azure("https://res.openai.azure.com/openai/v1", None).expect("resolves");
        assert_eq!(v1.settings.api_version, None);
        assert!(azure("https://res.openai.azure.com", Some("2024-10-21&x=1")).is_err());
        assert!(azure("https://res.openai.azure.com", None).is_ok());
        assert!(ProviderDef::resolve(
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
            ProviderDef::resolve(
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
            ProviderDef::resolve(
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

    #[test]
    fn names_are_checked() {
        assert!(check_name("provider", "open-ai_1.x").is_ok());
        assert!(check_name("provider", "").is_err());
        assert!(check_name("provider", "a/b").is_err());
        assert!(check_name("provider", &"a".repeat(65)).is_err());
        assert!(check_model_name("anthropic/claude-sonnet-4-5").is_ok());
        assert!(check_model_name("a b").is_err());
        assert!(check_model_name("a\nb").is_err());
    }

    #[test]
    fn kinds_and_strategies_round_trip() {
        assert_eq!(
            parse_kind("openai_compatible"),
            Some(ProviderKind::OpenaiCompatible)
        );
        assert_eq!(kind_str(ProviderKind::AzureOpenai), "azure_openai");
        assert_eq!(parse_kind("nope"), None);
        assert_eq!(parse_strategy("cost"), Some(Strategy::Cost));
        assert_eq!(strategy_str(Strategy::Weighted), "weighted");
    }
}
