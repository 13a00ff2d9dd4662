//! Google Cloud access tokens for Vertex AI, minted by the control plane from a service account
//! key and pushed to the filter in place of the key: the private key never reaches the data
//! plane. <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>
//!
//! A token is asked for with a JWT (RS256) signed by the service account's key, exchanged at
//! its `token_uri`; it lives about an hour and is renewed at half its life or five minutes
//! before it ends, whichever comes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Deserialize;

/// The scope Vertex AI needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The fields of a service account key file that matter here.
#[derive(Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// Google's token endpoint, the default `token_uri`.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

fn default_token_uri() -> String {
    GOOGLE_TOKEN_URI.into()
}

impl ServiceAccount {
    /// Parses a key file and checks that its private key can sign.
    pub fn parse(json: &str) -> Result<ServiceAccount, String> {
        let sa: ServiceAccount = serde_json::from_str(json)
            .map_err(|e| format!("not a service account key file: {e}"))?;
        signing_key(&sa.private_key)?;
        Ok(sa)
    }

    /// The signed JWT that asks for a token, issued at `now` (Unix seconds).
    pub fn assertion(&self, now: u64) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let key = signing_key(&self.private_key)?;
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            jwt.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "the service account key could not sign".to_owned())?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// The RSA key of a PKCS#8 PEM block (`-----BEGIN PRIVATE KEY-----`).
fn signing_key(pem: &str) -> Result<ring::rsa::KeyPair, String> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|_| "private_key is not PEM".to_owned())?;
    ring::rsa::KeyPair::from_pkcs8(&der)
        .map_err(|e| format!("private_key is not a PKCS#8 RSA key: {e}"))
}

/// An access token and when it should be renewed.
#[derive(Clone)]
pub struct Token {
    pub access_token: String,
    /// Unix seconds at which to ask for the next one.
    pub renew_at: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("renew_at", &self.renew_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// When to renew a token that lives `expires_in` seconds from `now`.
pub fn renew_at(now: u64, expires_in: u64) -> u64 {
    now + (expires_in / 2).min(expires_in.saturating_sub(300)).max(1)
}

/// Exchanges a signed assertion for an access token.
pub async fn fetch_token(
    http: &reqwest::Client,
    sa: &ServiceAccount,
    now: u64,
) -> Result<Token, String> {
    let assertion = sa.assertion(now)?;
    let form = format!(
        "grant_type={}&assertion={assertion}",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    );
    let resp = http
        .post(&sa.token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| format!("token request to {} failed: {e}", sa.token_uri))?;
    let status = resp.status();
    if !status.is_success() {
        // Google's error bodies name the problem (invalid_grant, ...) and hold no secret.
        let body = resp.text().await.unwrap_or_default();
        return Err(format!(
            "token endpoint answered {status}: {}",
            body.chars().take(300).collect::<String>()
        ));
    }
    let t: TokenResponse = resp
        .json()
        .await
        .map_err(|e| format!("token endpoint answer unreadable: {e}"))?;
    Ok(Token {
        access_token: t.access_token,
        renew_at: renew_at(now, t.expires_in),
    })
}

/// Tokens by provider key id, shared by the refresher and the snapshot builder.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Mutex<HashMap<String, Token>>>);

impl Tokens {
    pub fn get(&self, key_id: &str) -> Option<String> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(key_id).map(|t| t.access_token.clone()))
    }

    fn renew_at(&self, key_id: &str) -> Option<u64> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(key_id).map(|t| t.renew_at))
    }

    fn put(&self, key_id: &str, token: Token) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key_id.to_owned(), token);
        }
    }

    /// Forgets the tokens of keys that are gone.
    fn retain(&self, keys: &[String]) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| keys.contains(k));
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One pass over the Vertex keys: renews what is due. Returns whether any token changed and
/// how long to sleep before the next pass.
pub async fn refresh(
    http: &reqwest::Client,
    tokens: &Tokens,
    keys: &[(String, String)],
) -> (bool, Duration) {
    let now = unix_now();
    let mut changed = false;
    let mut next = now + 60;
    let ids: Vec<String> = keys.iter().map(|(id, _)| id.clone()).collect();
    tokens.retain(&ids);
    for (id, secret) in keys {
        match tokens.renew_at(id) {
            Some(at) if at > now => {
                next = next.min(at);
                continue;
            }
            _ => {}
        }
        let result = match ServiceAccount::parse(secret) {
            Ok(sa) => fetch_token(http, &sa, now).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(token) => {
                tracing::info!(key = %id, renew_in_secs = token.renew_at - now, "vertex access token minted");
                next = next.min(token.renew_at);
                tokens.put(id, token);
                changed = true;
            }
            Err(e) => {
                tracing::warn!(key = %id, "vertex access token: {e}");
                // Retry soon, but not in a loop.
                next = next.min(now + 10);
            }
        }
    }
    (
        changed,
        Duration::from_secs(next.saturating_sub(now).max(1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_half_life_or_five_minutes_before_expiry() {
        assert_eq!(renew_at(1000, 3600), 1000 + 1800);
        assert_eq!(renew_at(1000, 400), 1000 + 100);
        assert_eq!(renew_at(1000, 4), 1000 + 1);
    }

    #[test]
    fn an_assertion_is_a_signed_jwt_for_the_cloud_platform_scope() {
        let sa = ServiceAccount::parse(&crate::test_support::service_account_json(
            "http://127.0.0.1:1/token",
        ))
        .expect("test key");
        let jwt = sa.assertion(1_700_000_000).expect("signs");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["aud"], "http://127.0.0.1:1/token");
        assert_eq!(claims["exp"], 1_700_003_600u64);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        let public = signing_key(&sa.private_key).expect("key");
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            public.public().as_ref(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies with the public key");
        assert!(!format!("{sa:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_key_files_are_refused() {
        assert!(ServiceAccount::parse("{}").is_err());
        assert!(ServiceAccount::parse(
            r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}"#
        )
        .is_err());
    }
}
