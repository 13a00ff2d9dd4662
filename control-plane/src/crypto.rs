//! Secrets at rest: provider keys sealed with AES-256-GCM under the master key; gateway keys and
//! admin tokens kept only as SHA-256 digests.

use std::io::Write as _;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Binds ciphertexts to their purpose: a sealed provider key cannot be replayed elsewhere.
const AAD: &[u8] = b"switchyard/provider-key/v1";

/// The key that seals provider keys.
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("SWITCHYARD_MASTER_KEY must be 32 bytes as base64 or 64 hex digits")]
    BadEnv,
    #[error("master key file {0}: {1}")]
    File(String, String),
    #[error("a stored secret cannot be decrypted with this master key")]
    Decrypt,
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        MasterKey(Aes256Gcm::new(bytes.into()))
    }

    /// From `SWITCHYARD_MASTER_KEY` when set, else from `file`, created (mode 0600) if missing.
    pub fn load(env_value: Option<&str>, file: &Path) -> Result<MasterKey, KeyError> {
        if let Some(v) = env_value.map(str::trim).filter(|v| !v.is_empty()) {
            return parse_key(v)
                .map(|k| MasterKey::from_bytes(&k))
                .ok_or(KeyError::BadEnv);
        }
        let shown = file.display().to_string();
        match std::fs::read_to_string(file) {
            Ok(text) => {
                warn_if_readable_by_others(file);
                parse_key(text.trim())
                    .map(|k| MasterKey::from_bytes(&k))
                    .ok_or_else(|| KeyError::File(shown, "not a 32-byte key".into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                write_private(file, B64.encode(key).as_bytes())
                    .map_err(|e| KeyError::File(shown.clone(), e.to_string()))?;
                tracing::info!(file = %shown, "generated a new master key");
                Ok(MasterKey::from_bytes(&key))
            }
            Err(e) => Err(KeyError::File(shown, e.to_string())),
        }
    }

    /// Seals a secret: base64 of nonce || ciphertext+tag.
    pub fn seal(&self, secret: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: AAD,
                },
            )
            .unwrap_or_default(); // AES-GCM cannot fail for inputs below 64 GiB
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<String, KeyError> {
        let bytes = B64.decode(sealed).map_err(|_| KeyError::Decrypt)?;
        if bytes.len() < 12 + 16 {
            return Err(KeyError::Decrypt);
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
            .map_err(|_| KeyError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| KeyError::Decrypt)
    }
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text, &mut key).is_ok() {
        return Some(key);
    }
    let bytes = B64.decode(text).ok()?;
    key.copy_from_slice(bytes.get(..32).filter(|_| bytes.len() == 32)?);
    Some(key)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

fn warn_if_readable_by_others(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %file.display(), "master key file is readable by others; chmod 600 it");
            }
        }
    }
}

/// Lower-case hex SHA-256, the form in which gateway keys and tokens are stored.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of a presented secret against a stored digest.
pub fn digest_matches(secret: &str, stored_digest: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    digest(secret)
        .as_bytes()
        .ct_eq(stored_digest.as_bytes())
        .into()
}

/// A random token: `prefix` then 32 base62 characters (~190 bits).
pub fn token(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    for _ in 0..32 {
        out.push(ALPHABET[(rng.next_u32() % 62) as usize] as char);
    }
    out
}

/// A random id for store rows: `prefix` then 24 hex digits.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_tamper_fails() {
        let key = MasterKey::from_bytes(&[7; 32]);
        let sealed = key.seal("sk-provider-secret");
        assert!(!sealed.contains("sk-provider-secret"));
        assert_ne!(
            sealed,
            key.seal("sk-provider-secret"),
            "fresh nonce each time"
        );
        assert_eq!(key.open(&sealed).expect("opens"), "sk-provider-secret");
        let other = MasterKey::from_bytes(&[8; 32]);
        assert!(other.open(&sealed).is_err());
        let mut bytes = B64.decode(&sealed).expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(key.open(&B64.encode(bytes)).is_err());
    }

    #[test]
    fn generated_key_file_is_private_and_reused() {
        let dir = std::env::temp_dir().join(new_id("sy-key-"));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("master.key");
        let a = MasterKey::load(None, &file).expect("generated");
        let sealed = a.seal("x");
        let b = MasterKey::load(None, &file).expect("reloaded");
        assert_eq!(b.open(&sealed).expect("same key"), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn env_key_formats() {
        let hex_key = "11".repeat(32);
        assert!(MasterKey::load(Some(&hex_key), Path::new("/nonexistent")).is_ok());
        let b64 = B64.encode([3u8; 32]);
        assert!(MasterKey::load(Some(&b64), Path::new("/nonexistent")).is_ok());
        assert!(MasterKey::load(Some("short"), Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn digests_and_tokens() {
        let d = digest("sk-demo");
        assert_eq!(d.len(), 64);
        assert!(digest_matches("sk-demo", &d));
        assert!(!digest_matches("sk-dem0", &d));
        let t = token("sk-sy-");
        assert!(t.starts_with("sk-sy-") && t.len() == 38);
        assert_ne!(token("x"), token("x"));
    }
}
