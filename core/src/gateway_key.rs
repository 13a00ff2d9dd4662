//! Gateway keys as the routing index holds them: the digest a key is known by and the models
//! its scope allows. Authentication ([`crate::auth`]) and the index ([`crate::route`]) both use
//! these types.

use crate::config::GatewayKey;

/// A gateway key ready for per-request checks.
#[derive(Debug)]
pub struct KeyEntry {
    pub id: String,
    pub user: String,
    /// Spends from its lease (see [`crate::config::GatewayKey::limited`]).
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

/// How a gateway key is known: the contract's (the control plane makes the digests).
pub use switchyard_contract::key_digest::{digest, DigestKey};
