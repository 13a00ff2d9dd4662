//! Refresh tokens, `syr_{family}.{generation}.{tag}`: issued with an HMAC tag over the family
//! and generation under a key of the control plane's, and verified before anything is looked
//! up (a token cannot be forged, and the store holds nothing a token could be made from).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Signs and verifies refresh tokens.
pub(super) struct RefreshTokens(ring::hmac::Key);

impl RefreshTokens {
    /// Under a random key of this process's.
    pub(super) fn random() -> RefreshTokens {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        RefreshTokens::with_key(&key)
    }

    /// Under `key` (every control plane sharing a session store must use the same).
    pub(super) fn with_key(key: &[u8]) -> RefreshTokens {
        RefreshTokens(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key))
    }

    /// The token of `family` at `generation`.
    pub(super) fn issue(&self, family: &str, generation: u64) -> String {
        let signed = format!("{family}.{generation}");
        let tag = ring::hmac::sign(&self.0, signed.as_bytes());
        format!("syr_{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The family and generation of a token this key signed.
    pub(super) fn authentic<'t>(&self, token: &'t str) -> Option<(&'t str, u64)> {
        let (family, generation, tag) = parse_token(token)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let signed = format!("{family}.{generation}");
        ring::hmac::verify(&self.0, signed.as_bytes(), &tag).ok()?;
        Some((family, generation))
    }
}

/// The family id and generation a refresh token names, if it is shaped like one.
fn parse_token(token: &str) -> Option<(&str, u64, &str)> {
    let rest = token.strip_prefix("syr_")?;
    let mut parts = rest.splitn(3, '.');
    let (family, generation, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let family_ok = family.len() == 24 && family.bytes().all(|b| b.is_ascii_hexdigit());
    // Canonical digits only: `+5` and `05` would parse too, and name the same generation in
    // another spelling (one token, several strings).
    let generation_ok = (1..=20).contains(&generation.len())
        && generation.bytes().all(|b| b.is_ascii_digit())
        && (generation == "0" || !generation.starts_with('0'));
    if !family_ok || !generation_ok {
        return None;
    }
    Some((family, generation.parse().ok()?, tag))
}
