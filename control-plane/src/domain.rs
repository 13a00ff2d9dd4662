//! Domain types of the control plane and their validation rules.

use serde::{Deserialize, Serialize};

pub use switchyard_filter::config::ProviderKind;

/// How a logical model ranks its targets (the skeleton honours priority and weight only).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Latency,
    Cost,
    Reliability,
    #[default]
    Balanced,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Latency => "latency",
            Strategy::Cost => "cost",
            Strategy::Reliability => "reliability",
            Strategy::Balanced => "balanced",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
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

/// The base URL a provider uses: the one given, or its kind's public endpoint; checked.
pub fn resolve_base_url(kind: ProviderKind, base_url: Option<&str>) -> Result<String, String> {
    let url = match base_url {
        Some(u) => u.to_owned(),
        None => default_base_url(kind)
            .ok_or_else(|| format!("base_url is required for kind {}", kind_str(kind)))?
            .to_owned(),
    };
    Upstream::parse(&url)?;
    Ok(url)
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

/// Headers a provider kind's API requires on every request.
/// Anthropic: <https://docs.anthropic.com/en/api/versioning>
pub fn required_headers(kind: ProviderKind) -> Vec<(String, String)> {
    match kind {
        ProviderKind::Anthropic => vec![("anthropic-version".into(), "2023-06-01".into())],
        _ => Vec::new(),
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
        assert_eq!(Strategy::parse("cost"), Some(Strategy::Cost));
    }
}
