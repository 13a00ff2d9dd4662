//! Secrets sealed for the data plane and records signed by it, under the data plane key that
//! Envoy's environment gives the filter ([`KEY_ENV`], 64 hex digits).
//!
//! Provider keys (and the key digest key) are sealed so that Envoy's configuration (and its
//! admin `config_dump`) holds only ciphertext: [`PREFIX`] then hex of nonce || AES-256-GCM
//! ciphertext+tag, with [`AAD`]. The control plane seals; the filter opens them once per
//! configuration. The nonce is an HMAC of the plaintext under the key: the same secret seals to
//! the same text, so the configuration (and its version) changes only when a secret does. What
//! that reveals is only whether two sealed values are equal.
//!
//! Batches of request records carry [`SIGNATURE_HEADER`]: hex of HMAC-SHA256 under the same key
//! of [`SIGNATURE_DOMAIN`] then the batch. The filter signs; the control plane verifies.
//!
//! The names and layout are always here; the cryptography comes with the `crypto` feature.

/// The environment variable holding the data plane key, in Envoy and the control plane.
pub const KEY_ENV: &str = "SWITCHYARD_DATAPLANE_KEY";
/// What every sealed value starts with (the version of this format).
pub const PREFIX: &str = "sealed:v1:";
/// The associated data of every sealed value: binds it to this use.
pub const AAD: &[u8] = b"switchyard/dataplane/v1";
/// What the nonce's HMAC covers before the plaintext.
pub const NONCE_DOMAIN: &[u8] = b"nonce";
/// Bytes of nonce at the start of a sealed value, and of tag at its end.
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// The header a batch of request records carries its signature in.
pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";
/// What a batch's signature covers before the batch.
pub const SIGNATURE_DOMAIN: &[u8] = b"records/v1\n";

pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

#[cfg(feature = "crypto")]
pub use crypto::*;

#[cfg(feature = "crypto")]
mod crypto {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::{AAD, NONCE_DOMAIN, NONCE_LEN, PREFIX, SIGNATURE_DOMAIN, TAG_LEN};

    /// A key written as 64 hex digits.
    pub fn parse_key(text: &str) -> Option<[u8; 32]> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).ok()?;
        Some(key)
    }

    pub fn seal(key: &[u8; 32], plain: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            return String::new(); // HMAC takes keys of any length
        };
        mac.update(NONCE_DOMAIN);
        mac.update(plain.as_bytes());
        let tag = mac.finalize().into_bytes();
        let nonce = &tag[..NONCE_LEN];
        let cipher = Aes256Gcm::new(key.into());
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: AAD,
                },
            )
            .unwrap_or_default(); // cannot fail below 64 GiB
        let mut out = String::with_capacity(PREFIX.len() + 2 * (NONCE_LEN + sealed.len()));
        out.push_str(PREFIX);
        out.push_str(&hex::encode(nonce));
        out.push_str(&hex::encode(sealed));
        out
    }

    /// The plaintext of a sealed value, or `None` when it is not one or the key is wrong.
    pub fn open(key: &[u8; 32], sealed: &str) -> Option<String> {
        let bytes = hex::decode(sealed.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let plain = Aes256Gcm::new(key.into())
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
            .ok()?;
        String::from_utf8(plain).ok()
    }

    /// The signature of a batch of request records: hex of HMAC-SHA256 under the data plane key,
    /// so that only Envoys holding the key write records (and so debits).
    pub fn sign_records(key: &[u8; 32], body: &[u8]) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            return String::new();
        };
        mac.update(SIGNATURE_DOMAIN);
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` is the batch's (compared in constant time).
    pub fn verify_records(key: &[u8; 32], body: &[u8], signature: &str) -> bool {
        verify(SIGNATURE_DOMAIN, key, body, signature)
    }

    /// The signature of a lease ask (see [`crate::lease`]): as a batch's, in its own domain.
    pub fn sign_lease(key: &[u8; 32], body: &[u8]) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            return String::new();
        };
        mac.update(crate::lease::SIGNATURE_DOMAIN);
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` is the lease ask's (compared in constant time).
    pub fn verify_lease(key: &[u8; 32], body: &[u8], signature: &str) -> bool {
        verify(crate::lease::SIGNATURE_DOMAIN, key, body, signature)
    }

    fn verify(domain: &[u8], key: &[u8; 32], body: &[u8], signature: &str) -> bool {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            return false;
        };
        let Ok(tag) = hex::decode(signature.trim()) else {
            return false;
        };
        mac.update(domain);
        mac.update(body);
        mac.verify_slice(&tag).is_ok()
    }
}

#[cfg(all(test, feature = "crypto"))]
mod tests {
    use super::*;

    #[test]
    fn seal_open_deterministic_and_tamper_proof() {
        let key = [5u8; 32];
        let s = seal(&key, "sk-provider");
        assert!(is_sealed(&s));
        assert!(!s.contains("sk-provider"));
        assert_eq!(s, seal(&key, "sk-provider"), "deterministic");
        assert_ne!(s, seal(&key, "sk-provider2"));
        assert_eq!(open(&key, &s).as_deref(), Some("sk-provider"));
        assert_eq!(open(&[6u8; 32], &s), None);
        let mut tampered = s.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            open(&key, std::str::from_utf8(&tampered).unwrap_or("")),
            None
        );
        assert_eq!(open(&key, "sk-plain"), None);
        assert_eq!(parse_key(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_key("short"), None);
    }

    /// Envoys and control planes of different versions must agree: the format never changes
    /// (a new one gets a new [`PREFIX`]).
    #[test]
    fn the_format_is_unchanged() {
        let sealed = seal(&[5u8; 32], "sk-provider");
        assert_eq!(sealed, "sealed:v1:00a7c49f882f699d881f6265b0ddd9c479ea612cce72107db75ae8c865558cac4c6ed610807a64");
        assert_eq!(
            sign_records(&[3u8; 32], b"{\"id\":\"a\"}\n"),
            "d07ad7910c63dbd7aef24898d740db5d35b5861a688f906fec1b9b3a8fe16e94"
        );
    }

    #[test]
    fn record_batches_are_signed() {
        let key = [3u8; 32];
        let sig = sign_records(&key, b"{\"id\":\"a\"}\n");
        assert_eq!(sig.len(), 64);
        assert!(verify_records(&key, b"{\"id\":\"a\"}\n", &sig));
        assert!(!verify_records(&key, b"{\"id\":\"b\"}\n", &sig));
        assert!(!verify_records(&[4u8; 32], b"{\"id\":\"a\"}\n", &sig));
        assert!(!verify_records(&key, b"x", "zz"));
        assert!(!verify_records(&key, b"x", ""));
    }

    #[test]
    fn lease_asks_are_signed_in_their_own_domain() {
        let key = [3u8; 32];
        let body = b"{\"key\":\"k\"}";
        let sig = sign_lease(&key, body);
        assert!(verify_lease(&key, body, &sig));
        assert!(!verify_lease(&key, b"{}", &sig));
        assert!(!verify_lease(&[4u8; 32], body, &sig));
        // A signed batch of records is no signed ask, nor the reverse.
        assert!(!verify_records(&key, body, &sig));
        assert!(!verify_lease(&key, body, &sign_records(&key, body)));
    }
}
