//! Identity for the admin API: passwords (argon2id), access tokens (JWT, HS256, short-lived),
//! and who is asking ([`Principal`]). Refresh tokens and devices are in [`sessions`].

pub mod attempts;
pub mod sessions;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

/// Passwords shorter than this are refused (NIST SP 800-63B asks for at least 8).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longer inputs are refused before hashing (argon2 would take them, but nobody needs 1 KiB).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A user's role: admins see and change everything; users see and change what is theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// Who is calling the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's store id; `None` for the admin token (the operator, no user behind it).
    pub user_id: Option<String>,
    /// The user's name, or `admin-token`.
    pub name: String,
    pub role: Role,
    /// The session (refresh token family) the access token belongs to.
    pub session: Option<String>,
}

/// The name the admin token acts under in the audit log.
pub const ADMIN_TOKEN_ACTOR: &str = "admin-token";

impl Principal {
    pub fn admin_token() -> Principal {
        Principal {
            user_id: None,
            name: ADMIN_TOKEN_ACTOR.into(),
            role: Role::Admin,
            session: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this principal may see or change what belongs to the user called `owner`.
    pub fn may_act_for(&self, owner: &str) -> bool {
        self.is_admin() || (self.user_id.is_some() && self.name == owner)
    }
}

/// Checks a new password against the policy.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation), as a
/// PHC string. Slow on purpose: call it through [`Hashing`], off the async threads.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail on bounded input")
        .to_string()
}

/// Whether `password` matches `phc`. Parameters come from the stored string, so hashes made
/// with other parameters still verify.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The one gate every argon2id hash and verification of the control plane passes. A hash
/// takes 19 MiB and tens of milliseconds of a core; without a bound, a flood of sign-ins would
/// take every core (and the memory) from the limits service Envoy waits on. Beyond the
/// slots, a caller waits briefly and then gets [`Busy`] (429 at the admin API). Clones share
/// the slots.
#[derive(Clone)]
pub struct Hashing(Arc<HashingInner>);

struct HashingInner {
    slots: Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
    /// Hashes and verifications that ran, and that were refused for want of a slot.
    done: AtomicU64,
    refused: AtomicU64,
}

/// Every hashing slot stayed busy for the whole wait.
#[derive(Debug, thiserror::Error)]
#[error("every password hashing slot is busy")]
pub struct Busy;

/// How long a caller waits for a hashing slot before [`Busy`].
pub const HASH_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// Most slots, whatever the machine: each holds 19 MiB while it hashes.
const MAX_HASH_SLOTS: usize = 16;

impl Hashing {
    pub fn new(slots: usize, wait: std::time::Duration) -> Hashing {
        Hashing(Arc::new(HashingInner {
            slots: Arc::new(tokio::sync::Semaphore::new(slots.max(1))),
            wait,
            done: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }))
    }

    /// One slot per core the process may use (at least 2, at most 16): argon2 is bound by
    /// the core and its memory bandwidth, so more hashes at once than cores only make each
    /// slower while taking more of the cores the other services need.
    pub fn for_this_machine() -> Hashing {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Hashing::new(cores.clamp(2, MAX_HASH_SLOTS), HASH_WAIT)
    }

    /// The process's gate: every [`crate::identity::Identity`] and the config's users share it, so
    /// the bound holds for the whole process.
    pub fn shared() -> Hashing {
        static SHARED: std::sync::OnceLock<Hashing> = std::sync::OnceLock::new();
        SHARED.get_or_init(Hashing::for_this_machine).clone()
    }

    /// Runs `work` on the blocking pool once a slot is free. The slot goes with the work, so
    /// a caller that gives up (its request cancelled) does not free it before the hash ends.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let inner = &self.0;
        let permit =
            match tokio::time::timeout(inner.wait, inner.slots.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => {
                    inner.refused.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::add(&crate::metrics::METRICS.password_hashes_busy, 1);
                    return Err(Busy);
                }
            };
        inner.done.fetch_add(1, Ordering::Relaxed);
        crate::metrics::add(&crate::metrics::METRICS.password_hashes, 1);
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|_| Busy)
    }

    /// [`hash_password`] through the gate.
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move || hash_password(&password)).await
    }

    /// Verifies against `phc`, or against a fixed hash when there is none, so that an unknown
    /// user takes as long to refuse as a wrong password (no user enumeration by timing).
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        self.run(move || match phc {
            Some(phc) => verify_password(&password, &phc),
            None => {
                static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let dummy = DUMMY.get_or_init(|| hash_password("not a password of anyone"));
                verify_password(&password, dummy);
                false
            }
        })
        .await
    }

    /// (hashes and verifications run, refused for want of a slot) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.0.done.load(Ordering::Relaxed),
            self.0.refused.load(Ordering::Relaxed),
        )
    }
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user's id.
    pub sub: String,
    pub name: String,
    /// The session (refresh token family).
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

const ISSUER: &str = "switchyard";
/// `{"alg":"HS256","typ":"JWT"}`, encoded once.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Signs and verifies access tokens (JWT, HS256). The key is random, kept sealed in the store,
/// and shared by every control plane on that store.
pub struct TokenKey(ring::hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

impl TokenKey {
    pub fn from_bytes(bytes: &[u8]) -> TokenKey {
        TokenKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes))
    }

    pub fn issue(&self, claims: &Claims) -> String {
        let body = B64URL.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut token = format!("{HEADER}.{body}");
        let tag = ring::hmac::sign(&self.0, token.as_bytes());
        token.push('.');
        token.push_str(&B64URL.encode(tag.as_ref()));
        token
    }

    /// The claims of a token this key signed that has not expired at `now`. Only HS256 is
    /// accepted: the header must be the one [`TokenKey::issue`] writes (no `alg: none`, no
    /// algorithm chosen by the token).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, body) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if header != HEADER {
            return Err(TokenError::Malformed);
        }
        let tag = B64URL.decode(tag).map_err(|_| TokenError::Malformed)?;
        ring::hmac::verify(&self.0, signed.as_bytes(), &tag)
            .map_err(|_| TokenError::BadSignature)?;
        let body = B64URL.decode(body).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Malformed);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// A key for another purpose, derived from this one (so that one stored secret serves
    /// both, and neither reveals the other).
    pub fn derive(&self, purpose: &[u8]) -> Vec<u8> {
        ring::hmac::sign(&self.0, purpose).as_ref().to_vec()
    }

    pub fn claims(user_id: &str, name: &str, session: &str, now: i64, ttl_secs: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: user_id.into(),
            name: name.into(),
            sid: session.into(),
            iat: now,
            exp: now + ttl_secs,
        }
    }
}

/// Whether a bearer token looks like a JWT (three dot-separated parts) rather than the admin
/// token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse battery");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
        assert!(!verify_password("x", "not a phc string"));
        assert_ne!(phc, hash_password("correct horse battery"), "salted");
    }

    /// One slot: a second hash waits its bound, then is refused; a caller that gives up does
    /// not free the slot before its work has ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_is_bounded_and_a_cancelled_caller_keeps_its_slot() {
        let gate = Hashing::new(1, std::time::Duration::from_millis(50));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let gate = gate.clone();
            async move { gate.run(move || hold.recv()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        assert!(gate.verify("x".into(), None).await.is_err(), "busy");
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        first.abort();
        let _ = first.await;
        // The abandoned caller's work still holds the slot.
        assert!(gate.verify("x".into(), None).await.is_err(), "still busy");
        release.send(()).unwrap();
        let gate = Hashing::new(1, std::time::Duration::from_secs(30));
        let phc = gate.hash("correct horse battery".into()).await.unwrap();
        assert!(gate
            .verify("correct horse battery".into(), Some(phc))
            .await
            .unwrap());
        assert!(!gate
            .verify("wrong horse battery".into(), None)
            .await
            .unwrap());
        assert_eq!(gate.counts(), (3, 0));
    }

    #[test]
    fn password_policy() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pw").is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        // Characters, not bytes: ten accented letters are ten characters.
        assert!(check_password(&"é".repeat(10)).is_ok());
    }

    #[test]
    fn tokens_verify_and_refuse_tampering_expiry_and_other_algorithms() {
        let key = TokenKey::from_bytes(&[9; 32]);
        let claims = TokenKey::claims("usr_1", "ada", "fam_1", 1_000, 900);
        let token = key.issue(&claims);
        assert!(looks_like_jwt(&token));
        assert_eq!(key.verify(&token, 1_001), Ok(claims.clone()));
        assert_eq!(key.verify(&token, 1_900), Err(TokenError::Expired));
        let other = TokenKey::from_bytes(&[8; 32]);
        assert_eq!(other.verify(&token, 1_001), Err(TokenError::BadSignature));
        // Another body under the same signature.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged_claims = TokenKey::claims("usr_2", "eve", "fam_1", 1_000, 900);
        let forged_body = B64URL.encode(serde_json::to_vec(&forged_claims).unwrap());
        let forged = format!("{head}.{forged_body}.{sig}");
        assert_eq!(key.verify(&forged, 1_001), Err(TokenError::BadSignature));
        // alg: none, and HS256 declared differently, are refused before any signature check.
        let none = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = B64URL.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(
            key.verify(&format!("{none}.{body}."), 1_001),
            Err(TokenError::Malformed)
        );
        for bad in ["", "a.b", "a.b.c.d", "..", &format!("{HEADER}.!!.AAAA")] {
            assert!(key.verify(bad, 1_001).is_err(), "{bad}");
        }
    }

    #[test]
    fn principals() {
        let root = Principal::admin_token();
        assert!(root.is_admin() && root.may_act_for("anyone"));
        let ada = Principal {
            user_id: Some("usr_1".into()),
            name: "ada".into(),
            role: Role::User,
            session: Some("f".into()),
        };
        assert!(ada.may_act_for("ada"));
        assert!(!ada.may_act_for("bob"));
        assert!(!ada.is_admin());
    }
}
