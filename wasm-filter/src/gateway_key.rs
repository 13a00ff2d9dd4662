//! Gateway keys as the routing index holds them: the digest a key is known by and the models
//! its scope allows. Authentication ([`crate::auth`]) and the index ([`crate::route`]) both use
//! these types.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::GatewayKey;

/// A gateway key ready for per-request checks.
#[derive(Debug)]
pub struct KeyEntry {
    pub id: String,
    pub user: String,
    /// Asks the control plane's rate limit service (see [`crate::config::GatewayKey::limited`]).
    pub limited: bool,
    /// Unix seconds from which the key is refused.
    pub(crate) expires_at: Option<u64>,
    any_model: bool,
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl KeyEntry {
    pub(crate) fn new(key: GatewayKey) -> Self {
        let mut entry = KeyEntry {
            id: key.id,
            user: key.user,
            limited: key.limited,
            expires_at: key.expires_at,
            any_model: false,
            exact: Vec::new(),
            prefixes: Vec::new(),
        };
        for pattern in key.models {
            if pattern == "*" {
                entry.any_model = true;
            } else if let Some(prefix) = pattern.strip_suffix('*') {
                entry.prefixes.push(prefix.to_owned());
            } else {
                entry.exact.push(pattern);
            }
        }
        entry
    }

    /// Whether this key may use the model the client named.
    pub fn allows(&self, model: &str) -> bool {
        self.any_model
            || self.exact.iter().any(|m| m == model)
            || self.prefixes.iter().any(|p| model.starts_with(p.as_str()))
    }
}

/// The deployment's key for gateway key digests, ready to use (the HMAC's inner and outer
/// states are computed once per configuration, not per request).
#[derive(Clone)]
pub struct DigestKey(Hmac<Sha256>);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

impl DigestKey {
    pub fn new(key: &[u8; 32]) -> DigestKey {
        // HMAC takes keys of any length: this cannot fail.
        DigestKey(
            <Hmac<Sha256> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default())),
        )
    }
}

/// The digest a gateway key is known by: HMAC-SHA256 under the deployment's digest key of the
/// secret's SHA-256 (so that digests stored before keys were keyed could be converted without
/// the secrets), or, without a digest key, the plain SHA-256.
pub fn digest(key: Option<&DigestKey>, secret: &str) -> [u8; 32] {
    let plain: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    match key {
        Some(DigestKey(mac)) => {
            let mut mac = mac.clone();
            mac.update(&plain);
            mac.finalize().into_bytes().into()
        }
        None => plain,
    }
}
