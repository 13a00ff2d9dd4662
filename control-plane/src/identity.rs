//! Who may call the admin API: the admin token, users' sign-in policy, sessions and access
//! token key, the count of bad credentials per network, and the SSRF guard for the providers
//! users add.

use std::sync::Arc;

use crate::auth::attempts::Attempts;
use crate::auth::sessions::{SessionError, Sessions};
use crate::auth::{Hashing, TokenKey};
use crate::config::AuthSpec;
use crate::crypto::{self, MasterKey};
use crate::secrets::SecretsError;
use crate::ssrf::{Cidr, Guard, SystemResolver};
use crate::store::{Store, StoreError};

/// The setting holding the access token signing key, sealed under the master key.
pub const TOKEN_KEY_SETTING: &str = "token_key_sealed";

/// The setting holding the admin token's digest.
const ADMIN_TOKEN_SETTING: &str = "admin_token_digest";

/// Client networks whose bad credentials are counted at once; beyond, the soonest-ending
/// window is forgotten.
const BAD_CREDENTIAL_SUBJECTS: usize = 50_000;

/// Why the identity settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The `auth` section of the config is not usable.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Sessions(#[from] SessionError),
}

/// The operator's admin token, known by its digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: String,
}

impl AdminToken {
    pub fn from_digest(digest: String) -> AdminToken {
        AdminToken { digest }
    }

    /// The admin token: `SWITCHYARD_ADMIN_TOKEN`, or one generated at first start and printed
    /// once (only its digest is stored).
    pub async fn load(store: &Store) -> Result<AdminToken, StoreError> {
        if let Some(token) = std::env::var("SWITCHYARD_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            return Ok(AdminToken::from_digest(crypto::digest(token.trim())));
        }
        if let Some(d) = store.get_setting(ADMIN_TOKEN_SETTING).await? {
            return Ok(AdminToken::from_digest(d));
        }
        let token = crypto::token("sya-");
        let digest = crypto::digest(&token);
        if store
            .set_setting_if_absent(ADMIN_TOKEN_SETTING, &digest)
            .await?
        {
            eprintln!(
                "\n  Admin token (shown once; set SWITCHYARD_ADMIN_TOKEN to choose your own):\n    {token}\n"
            );
            Ok(AdminToken::from_digest(digest))
        } else {
            Ok(AdminToken::from_digest(
                store
                    .get_setting(ADMIN_TOKEN_SETTING)
                    .await?
                    .unwrap_or(digest),
            ))
        }
    }

    /// Whether `presented` is the admin token.
    pub fn matches(&self, presented: &str) -> bool {
        crypto::digest_matches(presented, &self.digest)
    }
}

/// Everything about users signing in: the policy, the session store, the access token key, the
/// gate password hashes pass, the count of bad credentials per address, and the SSRF guard for
/// the providers they add.
pub struct Identity {
    pub spec: AuthSpec,
    pub sessions: Sessions,
    pub token_key: TokenKey,
    pub guard: Guard,
    pub trusted_proxies: Vec<Cidr>,
    /// Every argon2 hash and verification of the admin API (see [`crate::auth::Hashing`]).
    pub hashing: Hashing,
    /// Admin API requests with a wrong token, per client network (in memory: the throttle must
    /// hold while Redis is down, and costs nothing to reach).
    pub bad_credentials: Attempts,
}

impl Default for Identity {
    /// In memory, a random token key, no allowed inside networks, hashing slots of its own:
    /// for tests.
    fn default() -> Self {
        let spec = AuthSpec::default();
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        Identity {
            sessions: Sessions::memory(spec.refresh_token_ttl_secs),
            spec,
            token_key: TokenKey::from_bytes(&key),
            guard: Guard::default(),
            trusted_proxies: Vec::new(),
            hashing: Hashing::for_this_machine(),
            bad_credentials: Attempts::new(BAD_CREDENTIAL_SUBJECTS),
        }
    }
}

impl Identity {
    /// From the config: sessions in Redis when there is one (connected on first use: Redis
    /// down at start-up does not stop the control plane); the access token key from the store
    /// (sealed), made at first start, and the refresh token key derived from it.
    pub async fn load(
        spec: &AuthSpec,
        redis: Option<&str>,
        prefix: &str,
        store: &Store,
        master: &MasterKey,
    ) -> Result<Identity, IdentityError> {
        let cidrs = |list: &[String], what: &str| -> Result<Vec<Cidr>, IdentityError> {
            list.iter()
                .map(|n| {
                    n.parse()
                        .map_err(|e| IdentityError::Config(format!("auth.{what}: {e}")))
                })
                .collect()
        };
        if spec.access_token_ttl_secs < 10
            || spec.refresh_token_ttl_secs < spec.access_token_ttl_secs
        {
            return Err(IdentityError::Config(
                "auth: access tokens must live at least 10 s, and sessions at least as long".into(),
            ));
        }
        let guard = Guard::new(
            cidrs(&spec.allowed_provider_networks, "allowed_provider_networks")?,
            Arc::new(SystemResolver),
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = crate::secrets::sealed_setting(
            store,
            master,
            TOKEN_KEY_SETTING,
            "the access token key",
            || {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
                base64::Engine::encode(&b64, key)
            },
        )
        .await?;
        let key = base64::Engine::decode(&b64, text)
            .map_err(|e| SecretsError::Malformed(format!("the access token key: {e}")))?;
        let token_key = TokenKey::from_bytes(&key);
        let sessions = Sessions::connect(redis, prefix, spec.refresh_token_ttl_secs)
            .await?
            .with_refresh_key(&token_key.derive(b"switchyard refresh tokens"))
            .with_max_families(usize::try_from(spec.max_sessions_per_user).unwrap_or(usize::MAX));
        Ok(Identity {
            spec: spec.clone(),
            sessions,
            token_key,
            guard,
            trusted_proxies: cidrs(&spec.trusted_proxies, "trusted_proxies")?,
            hashing: Hashing::shared(),
            bad_credentials: Attempts::new(BAD_CREDENTIAL_SUBJECTS),
        })
    }
}
