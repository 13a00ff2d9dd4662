//! Gateway keys, users with their limits, and who may sign in.

use serde::Deserialize;

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

fn all_models() -> Vec<String> {
    vec!["*".into()]
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
