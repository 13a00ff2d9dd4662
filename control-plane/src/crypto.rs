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
use switchyard_contract::key_digest;

/// Binds ciphertexts to their purpose: a sealed provider key cannot be replayed elsewhere.
const AAD: &[u8] = b"switchyard/provider-key/v1";

/// The keys that seal provider keys (and the access token key): the current one seals, and
/// each sealed value names the key that sealed it, so that after a rotation values sealed under
/// the previous key still open until they are sealed again.
pub struct MasterKey {
    ring: std::sync::RwLock<Ring>,
    source: Source,
}

struct Ring {
    current: Entry,
    previous: Vec<Entry>,
}

struct Entry {
    /// The first 8 hex digits of SHA-256 of the key: names it in sealed values.
    id: String,
    cipher: Aes256Gcm,
}

impl Entry {
    fn new(bytes: &[u8; 32]) -> Entry {
        Entry {
            id: hex::encode(&Sha256::digest(bytes)[..4]),
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }
}

/// Where the current key lives, which decides how a rotation is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `SWITCHYARD_MASTER_KEY` (the operator sets the new value).
    Env,
    /// A key file the control plane writes (one key per line, the current first).
    File(std::path::PathBuf),
    /// Given in code (tests).
    Fixed,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.current_id())
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

/// Sealed values begin with this and the id of their key: `v2.{id}.{base64}`.
const VERSION: &str = "v2.";

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        MasterKey::with_ring(Entry::new(bytes), Vec::new(), Source::Fixed)
    }

    fn with_ring(current: Entry, previous: Vec<Entry>, source: Source) -> MasterKey {
        MasterKey {
            ring: std::sync::RwLock::new(Ring { current, previous }),
            source,
        }
    }

    /// From `SWITCHYARD_MASTER_KEY` when set (with `previous`, the keys it replaced, from
    /// `SWITCHYARD_MASTER_KEY_PREVIOUS`), else from `file`, created (mode 0600) if missing.
    pub fn load(
        env_value: Option<&str>,
        previous: Option<&str>,
        file: &Path,
    ) -> Result<MasterKey, KeyError> {
        if let Some(v) = env_value.map(str::trim).filter(|v| !v.is_empty()) {
            let current = parse_key(v).ok_or(KeyError::BadEnv)?;
            let previous = previous
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| parse_key(p).map(|k| Entry::new(&k)).ok_or(KeyError::BadEnv))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(MasterKey::with_ring(
                Entry::new(&current),
                previous,
                Source::Env,
            ));
        }
        let shown = file.display().to_string();
        match read_key_file(file) {
            Ok(mut keys) => {
                warn_if_readable_by_others(file);
                let current = keys.remove(0);
                Ok(MasterKey::with_ring(
                    Entry::new(&current),
                    keys.iter().map(Entry::new).collect(),
                    Source::File(file.to_owned()),
                ))
            }
            Err(KeyError::File(_, e)) if e == NOT_FOUND => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                write_private(file, B64.encode(key).as_bytes(), false)
                    .map_err(|e| KeyError::File(shown.clone(), e.to_string()))?;
                tracing::info!(file = %shown, "generated a new master key");
                Ok(MasterKey::with_ring(
                    Entry::new(&key),
                    Vec::new(),
                    Source::File(file.to_owned()),
                ))
            }
            Err(e) => Err(e),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The id of the key that seals now.
    pub fn current_id(&self) -> String {
        self.ring
            .read()
            .map(|r| r.current.id.clone())
            .unwrap_or_default()
    }

    /// Seals a secret: `v2.{key id}.` then base64 of nonce || ciphertext+tag.
    pub fn seal(&self, secret: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let Ok(ring) = self.ring.read() else {
            return String::new();
        };
        let sealed = ring
            .current
            .cipher
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
        format!("{VERSION}{}.{}", ring.current.id, B64.encode(out))
    }

    /// Whether `sealed` is sealed under the current key (else it should be sealed again).
    pub fn is_current(&self, sealed: &str) -> bool {
        let id = self.current_id();
        sealed
            .strip_prefix(VERSION)
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(kid, _)| kid == id)
    }

    pub fn open(&self, sealed: &str) -> Result<String, KeyError> {
        match self.try_open(sealed) {
            Err(KeyError::Decrypt) if self.reload() => self.try_open(sealed),
            other => other,
        }
    }

    fn try_open(&self, sealed: &str) -> Result<String, KeyError> {
        let (kid, body) = match sealed
            .strip_prefix(VERSION)
            .and_then(|rest| rest.split_once('.'))
        {
            Some((kid, body)) => (Some(kid), body),
            // Sealed before keys had ids: any key may have sealed it.
            None => (None, sealed),
        };
        let bytes = B64.decode(body).map_err(|_| KeyError::Decrypt)?;
        if bytes.len() < 12 + 16 {
            return Err(KeyError::Decrypt);
        }
        let (nonce, ct) = bytes.split_at(12);
        let ring = self.ring.read().map_err(|_| KeyError::Decrypt)?;
        std::iter::once(&ring.current)
            .chain(ring.previous.iter())
            .filter(|e| kid.is_none_or(|k| k == e.id))
            .find_map(|e| {
                e.cipher
                    .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
                    .ok()
            })
            .and_then(|plain| String::from_utf8(plain).ok())
            .ok_or(KeyError::Decrypt)
    }

    /// Another control plane may have rotated the key file: read it again. Whether the ring
    /// changed.
    fn reload(&self) -> bool {
        let Source::File(file) = &self.source else {
            return false;
        };
        let Ok(keys) = read_key_file(file) else {
            return false;
        };
        let Ok(mut ring) = self.ring.write() else {
            return false;
        };
        let entries: Vec<Entry> = keys.iter().map(Entry::new).collect();
        let known =
            |e: &Entry| ring.current.id == e.id || ring.previous.iter().any(|p| p.id == e.id);
        if entries.iter().all(known) {
            return false;
        }
        tracing::info!(file = %file.display(), "master key file changed: reloaded");
        let mut entries = entries.into_iter();
        if let Some(current) = entries.next() {
            let old = std::mem::replace(&mut ring.current, current);
            ring.previous = entries.chain(std::iter::once(old)).collect();
        }
        true
    }

    /// Makes `new` the sealing key, keeping the others for opening. For a key file, the file
    /// is rewritten first with the new key and the old ones (so that a crash at any point
    /// leaves every stored value openable); see [`MasterKey::retire`].
    pub fn rotate_to(&self, new: &[u8; 32]) -> Result<(), KeyError> {
        let mut ring = self
            .ring
            .write()
            .map_err(|_| KeyError::File("ring".into(), "poisoned".into()))?;
        if let Source::File(file) = &self.source {
            let mut lines = vec![B64.encode(new)];
            lines.extend(read_key_file(file)?.iter().map(|k| B64.encode(k)));
            write_private(file, lines.join("\n").as_bytes(), true)
                .map_err(|e| KeyError::File(file.display().to_string(), e.to_string()))?;
        }
        let old = std::mem::replace(&mut ring.current, Entry::new(new));
        ring.previous.insert(0, old);
        Ok(())
    }

    /// After every value is sealed under the current key: forgets the others (and removes them
    /// from the key file).
    pub fn retire(&self, current: &[u8; 32]) -> Result<(), KeyError> {
        if let Source::File(file) = &self.source {
            write_private(file, B64.encode(current).as_bytes(), true)
                .map_err(|e| KeyError::File(file.display().to_string(), e.to_string()))?;
        }
        if let Ok(mut ring) = self.ring.write() {
            ring.previous.clear();
        }
        Ok(())
    }
}

const NOT_FOUND: &str = "not found";

/// The keys in a key file, the current first.
fn read_key_file(file: &Path) -> Result<Vec<[u8; 32]>, KeyError> {
    let shown = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::File(shown, NOT_FOUND.into()))
        }
        Err(e) => return Err(KeyError::File(shown, e.to_string())),
    };
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            parse_key(l).ok_or_else(|| KeyError::File(shown.clone(), "not a 32-byte key".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(KeyError::File(shown, "no key in it".into()));
    }
    Ok(keys)
}

/// A new random master key.
pub fn new_master_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// A master key given as base64 or 64 hex digits.
pub fn parse_master_key(text: &str) -> Option<[u8; 32]> {
    parse_key(text.trim())
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

/// Writes a private (0600) file: a new one (`replace` false), or in place of the old one
/// through a temporary file renamed over it, so that readers see the old or the new whole.
#[cfg(unix)]
fn write_private(path: &Path, contents: &[u8], replace: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let target = path.to_owned();
    let path = if replace {
        path.with_extension("tmp")
    } else {
        path.to_owned()
    };
    if replace {
        let _ = std::fs::remove_file(&path);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    if replace {
        std::fs::rename(&path, &target)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &[u8], _replace: bool) -> std::io::Result<()> {
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

/// The deployment's key for gateway key digests (random, made at first start, kept sealed in
/// the store and sent to Envoy sealed for the data plane): a key is stored, and known to the
/// filter, only as HMAC-SHA256 under it of the secret's SHA-256, so neither a copy of the
/// database nor Envoy's `config_dump` lets anyone test guesses of a weak key.
#[derive(Clone)]
pub struct DigestKey([u8; 32]);

/// What a keyed digest starts with in the store (older rows hold the bare SHA-256).
pub const KEYED_DIGEST_PREFIX: &str = "k1:";

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

impl DigestKey {
    pub fn from_bytes(key: [u8; 32]) -> DigestKey {
        DigestKey(key)
    }

    /// A new random key (tests, and the first start).
    pub fn random() -> DigestKey {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        DigestKey(key)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A gateway key's digest as stored: `k1:` and 64 hex digits.
    pub fn digest(&self, secret: &str) -> String {
        let digest = key_digest::digest(Some(&key_digest::DigestKey::new(&self.0)), secret);
        format!("{KEYED_DIGEST_PREFIX}{}", hex::encode(digest))
    }

    /// The keyed form of a digest stored before digests were keyed (bare SHA-256 hex), or
    /// `None` when it already is one (or is not a digest at all).
    pub fn rekey(&self, stored: &str) -> Option<String> {
        use hmac::Mac as _;
        let mut plain = [0u8; 32];
        hex::decode_to_slice(stored, &mut plain).ok()?;
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.0).ok()?;
        mac.update(&plain);
        Some(format!(
            "{KEYED_DIGEST_PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }
}

/// The 64 hex digits the filter looks a key up by, from a stored digest.
pub fn filter_digest(stored: &str) -> &str {
    stored.strip_prefix(KEYED_DIGEST_PREFIX).unwrap_or(stored)
}

/// Lower-case hex SHA-256, the form in which tokens are stored.
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
        let (head, body) = sealed.rsplit_once('.').expect("v2.id.body");
        let mut bytes = B64.decode(body).expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(key.open(&format!("{head}.{}", B64.encode(bytes))).is_err());
        // Values sealed before keys had ids still open.
        let legacy = {
            let mut nonce = [0u8; 12];
            rand::rng().fill_bytes(&mut nonce);
            let ct = Aes256Gcm::new((&[7u8; 32]).into())
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: b"old".as_slice(),
                        aad: AAD,
                    },
                )
                .unwrap();
            B64.encode([nonce.to_vec(), ct].concat())
        };
        assert_eq!(key.open(&legacy).unwrap(), "old");
        assert!(!key.is_current(&legacy));
        assert!(key.is_current(&sealed));
    }

    #[test]
    fn rotation_keeps_old_values_open_until_retired_and_other_processes_reload_the_file() {
        let dir = std::env::temp_dir().join(new_id("sy-rot-"));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("master.key");
        let a = MasterKey::load(None, None, &file).expect("generated");
        let b = MasterKey::load(None, None, &file).expect("a second control plane");
        let old = a.seal("sk-old");
        let old_id = a.current_id();
        let new = new_master_key();
        a.rotate_to(&new).unwrap();
        assert_ne!(a.current_id(), old_id);
        assert_eq!(
            a.open(&old).unwrap(),
            "sk-old",
            "old values open during the rotation"
        );
        assert!(!a.is_current(&old));
        let fresh = a.seal("sk-new");
        assert!(a.is_current(&fresh));
        // The other control plane has never seen the new key: it reads the file again.
        assert_eq!(b.open(&fresh).unwrap(), "sk-new");
        a.retire(&new).unwrap();
        assert!(a.open(&old).is_err(), "retired");
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 1);
        let c = MasterKey::load(None, None, &file).unwrap();
        assert_eq!(c.current_id(), a.current_id());
        assert!(c.open(&old).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn environment_keys_with_previous_ones() {
        let old = B64.encode([1u8; 32]);
        let new = B64.encode([2u8; 32]);
        let sealed_old = MasterKey::from_bytes(&[1; 32]).seal("x");
        let k = MasterKey::load(Some(&new), Some(&old), Path::new("/nonexistent")).unwrap();
        assert_eq!(k.open(&sealed_old).unwrap(), "x");
        assert!(!k.is_current(&sealed_old));
        assert_eq!(k.source(), &Source::Env);
        assert!(MasterKey::load(Some(&new), Some("junk"), Path::new("/x")).is_err());
    }

    #[test]
    fn generated_key_file_is_private_and_reused() {
        let dir = std::env::temp_dir().join(new_id("sy-key-"));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("master.key");
        let a = MasterKey::load(None, None, &file).expect("generated");
        let sealed = a.seal("x");
        let b = MasterKey::load(None, None, &file).expect("reloaded");
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
        assert!(MasterKey::load(Some(&hex_key), None, Path::new("/nonexistent")).is_ok());
        let b64 = B64.encode([3u8; 32]);
        assert!(MasterKey::load(Some(&b64), None, Path::new("/nonexistent")).is_ok());
        assert!(MasterKey::load(Some("short"), None, Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn keyed_digests_convert_from_plain_ones() {
        let key = DigestKey::random();
        let keyed = key.digest("sk-demo-change-me");
        assert!(keyed.starts_with(KEYED_DIGEST_PREFIX));
        assert_eq!(key.rekey(&digest("sk-demo-change-me")), Some(keyed.clone()));
        assert_eq!(key.rekey(&keyed), None, "already keyed");
        assert_ne!(DigestKey::random().digest("sk-demo-change-me"), keyed);
        assert_eq!(filter_digest(&keyed).len(), 64);
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
