//! The deployment's keys besides the master key (the data plane key and the gateway key
//! digest key, both sealed in the store) and master key rotation.

use switchyard_contract::config::FilterConfig;
use switchyard_contract::sealed;

use crate::crypto::{self, DigestKey, KeyError, MasterKey};
use crate::store::{Store, StoreError};

/// The setting holding the data plane key (hex), sealed under the master key.
pub const DATAPLANE_KEY_SETTING: &str = "dataplane_key_sealed";

/// The setting holding the gateway key digest key (hex), sealed under the master key.
pub const DIGEST_KEY_SETTING: &str = "key_digest_key_sealed";

/// Why a key could not be had, or a rotation did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A stored key could not be opened with the master key.
    #[error("{what}: {source}")]
    Open {
        what: &'static str,
        source: KeyError,
    },
    /// A key (in the store or the environment) is not 64 hex digits.
    #[error("{0}")]
    Malformed(String),
    /// Secrets kept arriving sealed under the old master key.
    #[error("secrets keep arriving under the old key; old keys kept")]
    StillArriving,
}

/// The master key and the keys it seals, as the running control plane holds them.
pub struct Secrets {
    pub master: MasterKey,
    /// Gateway key digests are made with this (see [`crypto::DigestKey`]).
    pub digest_key: DigestKey,
    /// Seals provider keys in the filter's configuration (see `switchyard_contract::sealed`);
    /// `None`: they travel in plain text (`gateway.seal_provider_keys: false`).
    pub dataplane_key: Option<[u8; 32]>,
    /// One master key rotation at a time.
    rotation_lock: tokio::sync::Mutex<()>,
}

impl Secrets {
    pub fn new(
        master: MasterKey,
        digest_key: DigestKey,
        dataplane_key: Option<[u8; 32]>,
    ) -> Secrets {
        Secrets {
            master,
            digest_key,
            dataplane_key,
            rotation_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// What a filter configuration needs before it leaves for Envoy: the key digest key, and,
    /// with a data plane key, both it and every provider key sealed under that (Envoy's
    /// `config_dump` then holds no secret in clear).
    pub fn prepare_for_dataplane(&self, filter: &mut FilterConfig) {
        let digest_key = hex::encode(self.digest_key.bytes());
        let Some(key) = self.dataplane_key.as_ref() else {
            filter.key_digest_key = Some(digest_key);
            return;
        };
        filter.key_digest_key = Some(sealed::seal(key, &digest_key));
        for p in &mut filter.providers {
            for k in &mut p.keys {
                k.secret = sealed::seal(key, &k.secret);
            }
        }
    }

    /// Makes `new` the master key with no downtime: every stored secret is sealed again under
    /// it (in one transaction; repeated until a pass finds nothing left, in case a secret
    /// sealed just before the switch was written during the first), then the old keys are
    /// forgotten. The configuration Envoy has does not change. Returns how many values were
    /// sealed again.
    pub async fn rotate_master_key(
        &self,
        store: &Store,
        new: &[u8; 32],
    ) -> Result<usize, SecretsError> {
        let _guard = self.rotation_lock.lock().await;
        self.master.rotate_to(new)?;
        let mut total = 0;
        for pass in 0.. {
            let n = reseal_all(store, &self.master).await?;
            total += n;
            if n == 0 {
                break;
            }
            if pass == 5 {
                return Err(SecretsError::StillArriving);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.master.retire(new)?;
        tracing::info!(key = %self.master.current_id(), resealed = total, "master key rotated");
        Ok(total)
    }
}

/// The data plane key: `SWITCHYARD_DATAPLANE_KEY` when set, else the one in the store, made at
/// first use.
pub async fn dataplane_key(store: &Store, master: &MasterKey) -> Result<[u8; 32], SecretsError> {
    if let Some(v) = std::env::var(sealed::KEY_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        return sealed::parse_key(&v).ok_or_else(|| {
            SecretsError::Malformed(format!("{} must be 64 hex digits", sealed::KEY_ENV))
        });
    }
    let text = sealed_setting(
        store,
        master,
        DATAPLANE_KEY_SETTING,
        "the data plane key",
        || hex::encode(crypto::new_master_key()),
    )
    .await?;
    sealed::parse_key(&text)
        .ok_or_else(|| SecretsError::Malformed("the stored data plane key is corrupt".into()))
}

/// The deployment's gateway key digest key (see [`crypto::DigestKey`]): the one in the store,
/// made at first use (every control plane on the database shares it).
pub async fn digest_key(store: &Store, master: &MasterKey) -> Result<DigestKey, SecretsError> {
    let text = sealed_setting(
        store,
        master,
        DIGEST_KEY_SETTING,
        "the key digest key",
        || hex::encode(DigestKey::random().bytes()),
    )
    .await?;
    sealed::parse_key(&text)
        .map(DigestKey::from_bytes)
        .ok_or_else(|| SecretsError::Malformed("the stored key digest key is corrupt".into()))
}

/// The setting `name` opened with the master key; when absent, `fresh()` sealed and stored
/// first (the first control plane to store one wins; the others take its value).
pub(crate) async fn sealed_setting(
    store: &Store,
    master: &MasterKey,
    name: &str,
    what: &'static str,
    fresh: impl FnOnce() -> String,
) -> Result<String, SecretsError> {
    let stored = match store.get_setting(name).await? {
        Some(s) => s,
        None => {
            let fresh = master.seal(&fresh());
            store.set_setting_if_absent(name, &fresh).await?;
            store.get_setting(name).await?.unwrap_or(fresh)
        }
    };
    master
        .open(&stored)
        .map_err(|source| SecretsError::Open { what, source })
}

/// Seals every stored secret not sealed under the current master key again.
pub async fn reseal_all(store: &Store, master: &MasterKey) -> Result<usize, StoreError> {
    store
        .reseal_all(|sealed| {
            if master.is_current(sealed) {
                return Ok(None);
            }
            master
                .open(sealed)
                .map(|plain| Some(master.seal(&plain)))
                .map_err(|e| e.to_string())
        })
        .await
}
