//! The digest a gateway key is known by, which the control plane stores and puts in the
//! filter's configuration and the filter computes from the key a client presents.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_digests_are_hmacs_of_the_plain_digest() {
        let plain = digest(None, "sk-weak");
        let plain_sha: [u8; 32] = Sha256::digest(b"sk-weak").into();
        assert_eq!(plain, plain_sha);
        let key = DigestKey::new(&[7u8; 32]);
        let keyed = digest(Some(&key), "sk-weak");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7u8; 32]).unwrap();
        mac.update(&plain);
        assert_eq!(keyed, <[u8; 32]>::from(mac.finalize().into_bytes()));
        assert_ne!(keyed, digest(Some(&DigestKey::new(&[8u8; 32])), "sk-weak"));
        assert_eq!(format!("{key:?}"), "DigestKey(..)");
    }
}
