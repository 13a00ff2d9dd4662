//! Pure authentication: the key a client presented, found by its digest and checked.

use crate::error::FilterError;
pub use crate::gateway_key::{digest, DigestKey, KeyEntry};
use crate::route::Index;

/// Longest credential looked at; anything longer cannot be one of ours.
const MAX_KEY_LEN: usize = 512;

/// The key a client presented: `Authorization: Bearer <key>` first, then `x-api-key`.
pub fn presented_key<'a>(
    authorization: Option<&'a str>,
    x_api_key: Option<&'a str>,
) -> Option<&'a str> {
    let from_bearer = authorization.and_then(|v| {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(rest.trim_start())
    });
    from_bearer
        .or(x_api_key.map(str::trim))
        .filter(|k| !k.is_empty())
}

/// Finds the key for a presented secret and checks that it is usable at `now()` (Unix seconds;
/// asked only for keys that expire, since reading the clock is a host call). Returns the key and
/// its position in the index, so later phases find it again without hashing.
pub fn authenticate<'i>(
    index: &'i Index,
    presented: Option<&str>,
    now: impl FnOnce() -> u64,
) -> Result<(&'i KeyEntry, usize), FilterError> {
    let secret = presented.ok_or_else(FilterError::missing_key)?;
    if secret.len() > MAX_KEY_LEN {
        return Err(FilterError::invalid_key());
    }
    let digest = digest(index.digest_key.as_ref(), secret);
    let position = index
        .key_position(&digest)
        .ok_or_else(FilterError::invalid_key)?;
    let entry = index.key(position);
    if entry.expires_at.is_some_and(|t| now() >= t) {
        return Err(FilterError::expired_key());
    }
    Ok((entry, position))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::config::{FilterConfig, GatewayKey};

    fn digest(s: &str) -> String {
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    fn index() -> Index {
        Index::new(FilterConfig {
            version: "1".into(),
            max_body_bytes: 1,
            keys: vec![
                GatewayKey {
                    id: "k1".into(),
                    digest: digest("sk-good"),
                    user: "alice".into(),
                    models: vec!["gpt-4o".into(), "openai/*".into()],
                    expires_at: None,
                    limited: false,
                },
                GatewayKey {
                    id: "k2".into(),
                    digest: digest("sk-old"),
                    user: "bob".into(),
                    models: vec!["*".into()],
                    expires_at: Some(1_000),
                    limited: false,
                },
            ],
            ..FilterConfig::default()
        })
        .expect("valid")
    }

    /// Issue 16: a configuration (Envoy's `config_dump`) showing plain SHA-256 digests lets
    /// anyone brute-force a weak key offline; keyed digests need the digest key, which travels
    /// sealed for the data plane.
    #[test]
    fn keyed_digests_need_the_digest_key() {
        let kd = [7u8; 32];
        let dp = [9u8; 32];
        let keyed = hex::encode(super::digest(Some(&DigestKey::new(&kd)), "sk-weak"));
        assert_ne!(keyed, digest("sk-weak"));
        let config = |key_digest_key: String| {
            serde_json::to_vec(&FilterConfig {
                version: "1".into(),
                keys: vec![GatewayKey {
                    id: "k1".into(),
                    digest: keyed.clone(),
                    user: "u".into(),
                    models: vec!["*".into()],
                    expires_at: None,
                    limited: false,
                }],
                key_digest_key: Some(key_digest_key),
                ..FilterConfig::default()
            })
            .expect("json")
        };
        let sealed = config(crate::sealed::seal(&dp, &hex::encode(kd)));
        let idx = Index::from_json(&sealed, Some(&dp)).expect("opens");
        assert_eq!(
            authenticate(&idx, Some("sk-weak"), || 0)
                .expect("found")
                .0
                .id,
            "k1"
        );
        assert!(
            Index::from_json(&sealed, None).is_err(),
            "sealed needs the data plane key"
        );
        assert!(Index::from_json(&sealed, Some(&[1u8; 32])).is_err());
        // Without the digest key, the same digests match nothing.
        let mut plain: FilterConfig = serde_json::from_slice(&sealed).expect("json");
        plain.key_digest_key = None;
        let idx = Index::new(plain).expect("valid");
        assert!(authenticate(&idx, Some("sk-weak"), || 0).is_err());
        let idx = Index::from_json(&config(hex::encode(kd)), None).expect("plain hex");
        assert!(authenticate(&idx, Some("sk-weak"), || 0).is_ok());
    }

    #[test]
    fn bearer_and_x_api_key_are_both_accepted() {
        assert_eq!(presented_key(Some("Bearer sk-1"), None), Some("sk-1"));
        assert_eq!(presented_key(Some("bearer   sk-1 "), None), Some("sk-1"));
        assert_eq!(presented_key(None, Some("sk-2")), Some("sk-2"));
        assert_eq!(presented_key(Some("Basic abc"), Some("sk-2")), Some("sk-2"));
        assert_eq!(presented_key(Some("Bearer "), None), None);
        assert_eq!(presented_key(None, None), None);
    }

    #[test]
    fn the_clock_is_read_only_for_expiring_keys() {
        let idx = index();
        let never = || -> u64 { panic!("clock read for a key without expiry") };
        assert!(authenticate(&idx, Some("sk-good"), never).is_ok());
    }

    #[test]
    fn keys_are_found_by_digest_and_checked() {
        let idx = index();
        let (k, position) = authenticate(&idx, Some("sk-good"), || 5).expect("valid");
        assert_eq!(k.id, "k1");
        assert_eq!(idx.key(position).id, "k1");
        assert_eq!(
            authenticate(&idx, None, || 5).unwrap_err().code,
            "missing_api_key"
        );
        assert_eq!(
            authenticate(&idx, Some("sk-bad"), || 5).unwrap_err().code,
            "invalid_api_key"
        );
        assert!(authenticate(&idx, Some("sk-old"), || 999).is_ok());
        assert_eq!(
            authenticate(&idx, Some("sk-old"), || 1_000)
                .unwrap_err()
                .code,
            "expired_api_key"
        );
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            authenticate(&idx, Some(&long), || 5).unwrap_err().status,
            401
        );
    }

    #[test]
    fn model_scope_matches_exact_star_and_prefix() {
        let idx = index();
        let (k, _) = authenticate(&idx, Some("sk-good"), || 0).expect("valid");
        assert!(k.allows("gpt-4o"));
        assert!(k.allows("openai/gpt-4o-mini"));
        assert!(!k.allows("gpt-4o-mini"));
        assert!(!k.allows("anthropic/claude"));
        let (any, _) = authenticate(&idx, Some("sk-old"), || 0).expect("valid");
        assert!(any.allows("whatever"));
    }
}
