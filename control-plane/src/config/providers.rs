//! Providers: their endpoints, keys, static models and model settings; when their models are
//! listed and their keys probed; and prices of their models.

use serde::Deserialize;

use super::one;
use crate::domain::ProviderKind;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: Option<String>,
    /// `openai_compatible` only: a known provider's defaults and quirks.
    #[serde(default)]
    pub preset: Option<String>,
    /// `azure_openai` only: `api-version` of deployment URLs.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `bedrock` only: the AWS region (else taken from `base_url`).
    #[serde(default)]
    pub region: Option<String>,
    /// `vertex` only: the Google Cloud project and location (default `global`).
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    /// HTTP CONNECT proxies (`ip:port`) to reach the provider through: a pool, each proxy
    /// health-checked, a failed attempt retried through another.
    #[serde(default)]
    pub proxies: Vec<String>,
    #[serde(default)]
    pub keys: Vec<ProviderKeySpec>,
    /// The static model list; discovery adds the models the provider lists.
    #[serde(default)]
    pub models: Vec<String>,
    /// `false`: the provider's models are not listed (only the static list is served).
    #[serde(default)]
    pub discover: Option<bool>,
    /// `enabled` (default): discovered models are served at once; `disabled`: they wait for
    /// an admin.
    #[serde(default)]
    pub new_models: Option<crate::domain::NewModels>,
    /// What to set of some of its models (static or discovered, now or later), at every start.
    #[serde(default)]
    pub model_settings: Vec<ModelSettingSpec>,
}

/// One provider model's settings in the config file; fields left out stay as they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettingSpec {
    pub model: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Replaces the detected capability tags.
    #[serde(default)]
    pub tags: Option<Vec<switchyard_contract::config::Tag>>,
    /// Most input tokens.
    #[serde(default)]
    pub context_window: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderKeySpec {
    pub secret: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub qps: Option<u32>,
}

/// Model discovery's schedule (see `crate::discovery`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySpec {
    /// Seconds between two listings of every provider's models; 0: only on demand (and when
    /// a provider is added or changed).
    #[serde(default = "default_discovery_interval")]
    pub interval_secs: u64,
    /// Bound on one provider's listing, all pages.
    #[serde(default = "default_discovery_timeout")]
    pub timeout_secs: u64,
}

impl Default for DiscoverySpec {
    fn default() -> Self {
        DiscoverySpec {
            interval_secs: default_discovery_interval(),
            timeout_secs: default_discovery_timeout(),
        }
    }
}

fn default_discovery_interval() -> u64 {
    3600
}

fn default_discovery_timeout() -> u64 {
    30
}

/// Active health probes of provider keys (see `crate::probe`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Seconds between two probes of one key; 0 turns probing off.
    #[serde(default = "default_probe_interval")]
    pub interval_secs: u64,
    #[serde(default = "default_probe_timeout")]
    pub timeout_secs: u64,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            interval_secs: default_probe_interval(),
            timeout_secs: default_probe_timeout(),
        }
    }
}

fn default_probe_interval() -> u64 {
    30
}

fn default_probe_timeout() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    pub provider: String,
    pub model: String,
    /// USD per million input (prompt) tokens.
    pub input: f64,
    /// USD per million output (completion) tokens.
    pub output: f64,
    /// USD per million prompt tokens read from the provider's cache (default: `input`).
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// USD per million prompt tokens written to the provider's cache (default: `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// USD per million reasoning tokens (default: `output`).
    #[serde(default)]
    pub reasoning: Option<f64>,
}
