//! The declarative YAML configuration (DESIGN.md "Declarative config"): parsed strictly, with
//! `${VAR}` / `${VAR:-default}` expanded in string values and unknown fields reported by path.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::{ProviderKind, Strategy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub gateway: Gateway,
    #[serde(default = "default_database")]
    pub database: String,
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

fn default_redis_prefix() -> String {
    "switchyard".into()
}

fn default_limits_timeout_ms() -> u32 {
    500
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    #[serde(default = "default_xds")]
    pub xds: XdsAddress,
}

/// Where the control plane serves Envoy (ADS, rate limit service, request records): a TCP
/// address, where clients must present a certificate from the control plane's CA (mutual TLS),
/// or `unix:PATH`, a socket only its owner may open (Envoy on the same host, same user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdsAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for XdsAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("unix:") {
            Some("") => Err("unix: needs the socket's path".into()),
            // Linux refuses longer socket paths (sun_path is 108 bytes with its NUL).
            Some(path) if path.len() > 100 => Err("a socket path is at most 100 bytes long".into()),
            Some(path) => Ok(XdsAddress::Unix(PathBuf::from(path))),
            None => s
                .parse()
                .map(XdsAddress::Tcp)
                .map_err(|_| format!("{s:?} is neither ip:port nor unix:/path/to/socket")),
        }
    }
}

impl std::fmt::Display for XdsAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XdsAddress::Tcp(a) => write!(f, "{a}"),
            XdsAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl<'de> Deserialize<'de> for XdsAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            admin: default_admin(),
            xds: default_xds(),
        }
    }
}

/// The Envoy side: its listener and admin addresses and what the control plane tells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    #[serde(default = "default_gateway_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_gateway_admin")]
    pub admin: SocketAddr,
    /// The filter's `.wasm` file, as Envoy will open it.
    #[serde(default = "default_wasm")]
    pub wasm: PathBuf,
    /// Largest request body accepted (bytes).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Upper bound for one request, streams included (seconds; 0 = none).
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// CA bundle for verifying `https://` providers.
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
    /// Write one access-log line per request (with its usage record) to Envoy's stdout.
    #[serde(default = "yes")]
    pub access_log: bool,
    /// How long Envoy waits for the rate limit service (the control plane) before letting a
    /// limited key's request through anyway.
    #[serde(default = "default_limits_timeout_ms")]
    pub limits_timeout_ms: u32,
    /// Most attempts one request makes on a model with several targets (one per target).
    #[serde(default = "default_failover_attempts")]
    pub failover_attempts: u32,
    /// A streamed answer whose provider sends nothing for this long (before its first byte, or
    /// between two chunks) is abandoned: before any byte reached the client the request moves to
    /// the next target; after, the stream ends with an error. 0 = no limit.
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte_timeout_secs: u64,
    /// A non-streamed answer not complete after this long moves to the next target (0 = only
    /// `request_timeout_secs` bounds it: whole answers of reasoning models can take minutes).
    #[serde(default)]
    pub attempt_timeout_secs: u64,
    /// Provider keys travel to Envoy sealed under the data plane key, so that Envoy's
    /// configuration and admin `config_dump` hold only ciphertext; Envoy gets the key from its
    /// environment (`SWITCHYARD_DATAPLANE_KEY`, printed by `switchyard dataplane-key`).
    #[serde(default = "yes")]
    pub seal_provider_keys: bool,
    /// The most of one provider answer the filter holds: a whole answer it translates, or one
    /// stream event; more is a 502 (`provider_response_too_large`).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// A client must send its request headers within this (seconds); then a 408.
    #[serde(default = "default_request_headers_timeout")]
    pub request_headers_timeout_secs: u64,
    /// A client must send its whole request (headers and body) within this (seconds).
    #[serde(default = "default_request_receive_timeout")]
    pub request_receive_timeout_secs: u64,
    /// A client connection with no request in flight is closed after this (seconds).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// A request with no bytes moving either way for this long is ended (seconds); it must
    /// allow for non-streamed answers of reasoning models, silent for minutes.
    #[serde(default = "default_stream_idle_timeout")]
    pub stream_idle_timeout_secs: u64,
    /// Proxies in front of Envoy whose `X-Forwarded-For` entries are trusted (0: the client is
    /// the peer address).
    #[serde(default)]
    pub trusted_hops: u32,
    /// Most concurrent requests on one HTTP/2 client connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Envoy's overload manager: most downstream connections open at once, over every
    /// listener but the admin (0 = no limit).
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Envoy's overload manager: the heap size its memory actions scale to (shrink the heap,
    /// reset the streams holding most memory, disable keep-alive, stop accepting connections,
    /// then requests); 0 = no heap actions.
    #[serde(default = "default_max_heap_bytes")]
    pub max_heap_bytes: u64,
}

fn default_max_response_bytes() -> usize {
    switchyard_filter::config::default_max_response_bytes()
}

fn default_request_headers_timeout() -> u64 {
    10
}

fn default_request_receive_timeout() -> u64 {
    60
}

fn default_idle_timeout() -> u64 {
    60
}

fn default_stream_idle_timeout() -> u64 {
    300
}

fn default_max_concurrent_streams() -> u32 {
    128
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            listen: default_gateway_listen(),
            admin: default_gateway_admin(),
            wasm: default_wasm(),
            max_body_bytes: default_max_body(),
            request_timeout_secs: default_timeout(),
            ca_file: default_ca_file(),
            access_log: true,
            limits_timeout_ms: default_limits_timeout_ms(),
            failover_attempts: default_failover_attempts(),
            first_byte_timeout_secs: default_first_byte_timeout(),
            attempt_timeout_secs: 0,
            seal_provider_keys: true,
            max_response_bytes: default_max_response_bytes(),
            request_headers_timeout_secs: default_request_headers_timeout(),
            request_receive_timeout_secs: default_request_receive_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            stream_idle_timeout_secs: default_stream_idle_timeout(),
            trusted_hops: 0,
            max_concurrent_streams: default_max_concurrent_streams(),
            max_connections: default_max_connections(),
            max_heap_bytes: default_max_heap_bytes(),
        }
    }
}

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
    pub tags: Option<Vec<switchyard_filter::config::Tag>>,
    /// Most input tokens.
    #[serde(default)]
    pub context_window: Option<i64>,
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

/// Another name for a model: `{name: fast, target: openai/gpt-4o-mini}`, or a glob over a
/// provider's models, `{name: "claude-*", target: anthropic}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasSpec {
    pub name: String,
    pub target: String,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default = "crate::domain::default_strategy")]
    pub strategy: Strategy,
    pub targets: Vec<TargetSpec>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub provider: String,
    pub model: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub priority: u32,
    /// What the target can do (`function_calling`, `vision`); absent: everything. Requests with
    /// tools or images go only to targets that can take them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub capabilities: Option<Vec<switchyard_filter::config::Capability>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u32>,
    #[serde(default)]
    pub credits: Option<f64>,
    /// Unix time (seconds) after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Spend caps in USD per UTC day and month.
    #[serde(default)]
    pub daily_budget: Option<f64>,
    #[serde(default)]
    pub monthly_budget: Option<f64>,
}

/// Limits of a user over all of its keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u32>,
    /// The models the user's keys may use (patterns like keys'); each key's own scope applies
    /// within it. Applied at every start, like the rest of these limits.
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// Spend caps in USD per UTC day and month, over all of the user's keys.
    #[serde(default)]
    pub daily_budget: Option<f64>,
    #[serde(default)]
    pub monthly_budget: Option<f64>,
    /// `admin` or `user` (default); applied at every start.
    #[serde(default)]
    pub role: Option<crate::auth::Role>,
    #[serde(default)]
    pub email: Option<String>,
    /// The user's password (use `${VAR}`); set when the user has none or it no longer matches.
    #[serde(default)]
    pub password: Option<String>,
}

/// Who may sign in and how long sessions last.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// `admin`: only admins create users; `open`: anyone may register (as a `user`).
    #[serde(default)]
    pub registration: Registration,
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl_secs: i64,
    /// A session ends this long after its last refresh.
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl_secs: i64,
    /// Failed sign-ins per user name and address in 15 minutes before sign-ins from there wait
    /// (per address alone: ten times as many).
    #[serde(default = "default_max_failures")]
    pub max_failed_sign_ins: u32,
    /// Admin API requests with a wrong admin token or an invalid or expired access token per
    /// address in a minute before that address's requests with a token get 429.
    #[serde(default = "default_max_bad_credentials")]
    pub max_bad_credentials_per_minute: u32,
    /// Live sessions (signed-in devices) per user; a new sign-in beyond it ends the one used
    /// least recently.
    #[serde(default = "default_max_sessions")]
    pub max_sessions_per_user: u32,
    /// Reverse proxies in front of the admin API whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Networks inside which providers added by non-admins may still point (by default only
    /// public addresses: no SSRF through the gateway).
    #[serde(default)]
    pub allowed_provider_networks: Vec<String>,
    /// Audit entries older than this many days are deleted (0: kept for ever).
    #[serde(default = "default_audit_days")]
    pub audit_retention_days: i64,
}

impl Default for AuthSpec {
    fn default() -> Self {
        AuthSpec {
            registration: Registration::default(),
            access_token_ttl_secs: default_access_ttl(),
            refresh_token_ttl_secs: default_refresh_ttl(),
            max_failed_sign_ins: default_max_failures(),
            max_bad_credentials_per_minute: default_max_bad_credentials(),
            max_sessions_per_user: default_max_sessions(),
            trusted_proxies: Vec::new(),
            allowed_provider_networks: Vec::new(),
            audit_retention_days: default_audit_days(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    #[default]
    Admin,
    Open,
}

fn default_access_ttl() -> i64 {
    15 * 60
}
fn default_refresh_ttl() -> i64 {
    30 * 24 * 3600
}
fn default_max_failures() -> u32 {
    10
}
fn default_max_bad_credentials() -> u32 {
    20
}
fn default_max_sessions() -> u32 {
    20
}
fn default_audit_days() -> i64 {
    365
}

fn default_database() -> String {
    "sqlite://switchyard.db".into()
}
fn default_master_key_file() -> PathBuf {
    "switchyard.key".into()
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_xds() -> XdsAddress {
    XdsAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], 18000)))
}
fn default_gateway_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10000))
}
fn default_gateway_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}
fn default_wasm() -> PathBuf {
    "target/wasm32-wasip1/release/switchyard_filter.wasm".into()
}
fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_failover_attempts() -> u32 {
    3
}

fn default_max_connections() -> u64 {
    10_000
}

fn default_max_heap_bytes() -> u64 {
    1 << 30
}

fn default_first_byte_timeout() -> u64 {
    30
}

fn default_timeout() -> u64 {
    600
}
fn default_ca_file() -> PathBuf {
    "/etc/ssl/certs/ca-certificates.crt".into()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn all_models() -> Vec<String> {
    vec!["*".into()]
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

/// Expands `${VAR}` and `${VAR:-default}` in every string of the document.
fn expand(
    value: &mut serde_yaml::Value,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut BTreeSet<String>,
    path: &mut String,
) -> Result<(), ConfigError> {
    match value {
        serde_yaml::Value::String(s) if s.contains("${") => {
            *s = expand_str(s, env, missing).map_err(|message| ConfigError::Field {
                path: path.clone(),
                message,
            })?;
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand(item, env, missing, path)?;
                path.truncate(len);
            }
        }
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k.as_str().unwrap_or("?"));
                expand(v, env, missing, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut BTreeSet<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in {s:?}"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name `{name}`"));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                missing.insert(name.to_owned());
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
