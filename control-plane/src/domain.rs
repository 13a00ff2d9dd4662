//! Domain types of the control plane and their validation rules.

use serde::{Deserialize, Serialize};

pub use switchyard_contract::config::ProviderKind;

/// How a logical model ranks its targets; the filter applies it (`switchyard_core::rank`).
pub use switchyard_contract::config::Strategy;

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

pub fn parse_kind(s: &str) -> Option<ProviderKind> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

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
    /// `openai_compatible`: the provider's preset (see [`crate::providers::PRESETS`]).
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
    switchyard_contract::names::check_model_name(name)
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
        assert_eq!(
            crate::providers::spec(ProviderKind::AzureOpenai).name(),
            "azure_openai"
        );
        assert_eq!(parse_kind("nope"), None);
        assert_eq!(parse_strategy("cost"), Some(Strategy::Cost));
        assert_eq!(strategy_str(Strategy::Weighted), "weighted");
    }
}
