//! Provider keys sealed for the data plane, so that Envoy's configuration (and its admin
//! `config_dump`) holds only ciphertext: `sealed:v1:` then hex of nonce || AES-256-GCM
//! ciphertext+tag, under the data plane key that Envoy's environment gives the filter
//! (`SWITCHYARD_DATAPLANE_KEY`, 64 hex digits). The filter opens them once per configuration.
//!
//! The nonce is an HMAC of the plaintext under the key: the same secret seals to the same text,
//! so the configuration (and its version) changes only when a secret does. What that reveals is
//! only whether two sealed values are equal.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The environment variable holding the data plane key, in Envoy and the control plane.
pub const KEY_ENV: &str = "SWITCHYARD_DATAPLANE_KEY";
const PREFIX: &str = "sealed:v1:";
const AAD: &[u8] = b"switchyard/dataplane/v1";

pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

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
    mac.update(b"nonce");
    mac.update(plain.as_bytes());
    let tag = mac.finalize().into_bytes();
    let nonce = &tag[..12];
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
    let mut out = String::with_capacity(PREFIX.len() + 2 * (12 + sealed.len()));
    out.push_str(PREFIX);
    out.push_str(&hex::encode(nonce));
    out.push_str(&hex::encode(sealed));
    out
}

/// The plaintext of a sealed value, or `None` when it is not one or the key is wrong.
pub fn open(key: &[u8; 32], sealed: &str) -> Option<String> {
    let bytes = hex::decode(sealed.strip_prefix(PREFIX)?).ok()?;
    if bytes.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = bytes.split_at(12);
    let plain = Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
        .ok()?;
    String::from_utf8(plain).ok()
}

/// The header a batch of request records carries its signature in.
pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";

/// The signature of a batch of request records: hex of HMAC-SHA256 under the data plane key,
/// so that only Envoys holding the key write records (and so debits).
pub fn sign_records(key: &[u8; 32], body: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(b"records/v1\n");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` is the batch's (compared in constant time).
pub fn verify_records(key: &[u8; 32], body: &[u8], signature: &str) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return false;
    };
    let Ok(tag) = hex::decode(signature.trim()) else {
        return false;
    };
    mac.update(b"records/v1\n");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

#[cfg(test)]
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
}
