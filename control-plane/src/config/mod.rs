//! The declarative YAML configuration (DESIGN.md "Declarative config"): parsed strictly, with
//! `${VAR}` / `${VAR:-default}` expanded in string values (`expand`) and unknown fields reported
//! by path. Its sections: where the control plane listens (`listen`), the Envoy side
//! (`gateway`), providers with their keys, discovery, probes and prices (`providers`), logical
//! models and aliases (`models`), gateway keys, users and sign-in (`users`).

mod expand;
mod gateway;
mod listen;
mod models;
mod providers;
mod users;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use gateway::Gateway;
pub use listen::{Listen, XdsAddress};
pub use models::{AliasSpec, ModelSpec, TargetSpec};
pub use providers::{
    DiscoverySpec, ModelSettingSpec, PriceSpec, ProbeSpec, ProviderKeySpec, ProviderSpec,
};
pub use users::{ApiKeySpec, AuthSpec, Registration, UserSpec};

use expand::expand;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub gateway: Gateway,
    #[serde(default = "default_database")]
    pub database: String,
    /// Request log rows older than this many days are deleted (0: kept for ever); usage
    /// rollups of hours and days, and the credit ledger, are kept for ever.
    #[serde(default = "default_request_log_retention_days")]
    pub request_log_retention_days: i64,
    /// Shared state (rate limit counters, credit balances as enforced); in memory when absent.
    #[serde(default)]
    pub redis: Option<String>,
    /// Prefix of every Redis key (several deployments may share one Redis).
    #[serde(default = "default_redis_prefix")]
    pub redis_prefix: String,
    /// Where the generated master key lives when `SWITCHYARD_MASTER_KEY` is not set.
    #[serde(default = "default_master_key_file")]
    pub master_key_file: PathBuf,
    #[serde(default)]
    pub providers: Vec<ProviderSpec>,
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    /// More names for models (exact, or globs over a provider's models).
    #[serde(default)]
    pub aliases: Vec<AliasSpec>,
    #[serde(default)]
    pub discovery: DiscoverySpec,
    #[serde(default)]
    pub api_keys: Vec<ApiKeySpec>,
    /// Per-user limits (users are created by their keys, or here).
    #[serde(default)]
    pub users: Vec<UserSpec>,
    /// Prices of provider models (USD per million tokens), for cost-based routing.
    #[serde(default)]
    pub prices: Vec<PriceSpec>,
    #[serde(default)]
    pub probes: ProbeSpec,
    #[serde(default)]
    pub auth: AuthSpec,
}

fn default_redis_prefix() -> String {
    "switchyard".into()
}

fn default_request_log_retention_days() -> i64 {
    30
}

fn default_database() -> String {
    "sqlite://switchyard.db".into()
}

fn default_master_key_file() -> PathBuf {
    "switchyard.key".into()
}

/// A configuration error, with the path of the offending field when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Yaml(String),
    #[error("at `{path}`: {message}")]
    Field { path: String, message: String },
}

/// A loaded configuration and the environment variables it named that were not set.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub missing_vars: BTreeSet<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &|name| std::env::var(name).ok())
    }

    /// Parses YAML text, expanding variables with `env`.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
        let mut value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        if value.is_null() {
            value = serde_yaml::Value::Mapping(Default::default());
        }
        let mut missing_vars = BTreeSet::new();
        expand(&mut value, env, &mut missing_vars, &mut String::new())?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Field {
                path,
                message: e.into_inner().to_string(),
            }
        })?;
        Ok(Loaded {
            config,
            missing_vars,
        })
    }
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OPENAI_API_KEY" => Some("sk-from-env".into()),
            _ => None,
        }
    }

    #[test]
    fn design_example_parses_with_defaults() {
        let text = r#"
listen: {admin: "127.0.0.1:8081", xds: "127.0.0.1:18000"}
gateway: {listen: "127.0.0.1:10000", admin: "127.0.0.1:9901"}
database: "sqlite://switchyard.db"
redis: "redis://127.0.0.1:6379"
providers:
  - name: openai
    kind: openai
    base_url: "https://api.openai.com/v1"
    keys: [{secret: "${OPENAI_API_KEY}", qps: 50}]
    models: [gpt-4o-mini, gpt-4o]
  - name: anthropic
    kind: anthropic
    base_url: "https://api.anthropic.com"
    keys: [{secret: "${ANTHROPIC_API_KEY}"}]
    models: [claude-sonnet-4-5]
models:
  - name: smart
    strategy: balanced
    targets:
      - {provider: openai, model: gpt-4o, weight: 1}
      - {provider: anthropic, model: claude-sonnet-4-5, weight: 1}
api_keys:
  - {name: demo, key: "sk-demo-change-me", user: demo, models: ["*"], rpm: 600, tpm: 100000, credits: 100.0}
"#;
        let loaded = Config::parse(text, &env).expect("parses");
        let c = loaded.config;
        assert_eq!(c.providers[0].keys[0].secret, "sk-from-env");
        assert_eq!(c.providers[1].keys[0].secret, "");
        assert!(loaded.missing_vars.contains("ANTHROPIC_API_KEY"));
        assert_eq!(c.models[0].targets[1].priority, 0);
        assert_eq!(c.api_keys[0].credits, Some(100.0));
        assert_eq!(c.gateway.max_body_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let text = "providers:\n  - name: a\n    kind: openai\n    kyes: []\n";
        let err = Config::parse(text, &env).expect_err("rejected").to_string();
        assert!(err.contains("providers[0]"), "{err}");
        assert!(err.contains("kyes"), "{err}");
        let err = Config::parse("gateway: {lisen: x}\n", &env)
            .expect_err("rejected")
            .to_string();
        assert!(err.contains("gateway"), "{err}");
    }

    #[test]
    fn the_xds_address_is_tcp_or_a_unix_socket() {
        let c = Config::parse("listen: {xds: \"unix:/run/sy/xds.sock\"}\n", &env).unwrap();
        assert_eq!(
            c.config.listen.xds,
            XdsAddress::Unix("/run/sy/xds.sock".into())
        );
        assert_eq!(c.config.listen.xds.to_string(), "unix:/run/sy/xds.sock");
        let c = Config::parse("listen: {xds: \"0.0.0.0:18000\"}\n", &env).unwrap();
        assert_eq!(c.config.listen.xds.to_string(), "0.0.0.0:18000");
        for bad in ["unix:", "localhost:18000", "18000"] {
            let text = format!("listen: {{xds: \"{bad}\"}}\n");
            let err = Config::parse(&text, &env).expect_err(bad).to_string();
            assert!(err.contains("listen.xds"), "{err}");
        }
        let long = format!("listen: {{xds: \"unix:/{}\"}}\n", "a".repeat(120));
        assert!(Config::parse(&long, &env).is_err());
        let c = Config::parse("gateway: {max_connections: 8, max_heap_bytes: 0}\n", &env).unwrap();
        assert_eq!(
            (
                c.config.gateway.max_connections,
                c.config.gateway.max_heap_bytes
            ),
            (8, 0)
        );
        assert_eq!(Gateway::default().max_connections, 10_000);
    }

    #[test]
    fn defaults_and_bad_expressions() {
        let c = Config::parse("database: \"${NOPE:-sqlite://x.db}\"\n", &env).expect("parses");
        assert_eq!(c.config.database, "sqlite://x.db");
        assert!(c.missing_vars.is_empty());
        let err = Config::parse("database: \"${OOPS\"\n", &env).expect_err("rejected");
        assert!(err.to_string().contains("database"), "{err}");
        assert!(Config::parse("", &env).is_ok());
    }
}
