//! Sessions: one refresh token family per signed-in device, in Redis (shared by every control
//! plane) or in memory; and the sign-in attempt counters, next to them. [`Sessions`] is the
//! front the admin API calls: tokens in [`token`], rotation and replay detection in the
//! [`store::SessionStore`] implementations ([`memory`], [`redis`]), devices in [`device`].
//!
//! A refresh token is `syr_{family}.{generation}.{tag}`, the tag an HMAC of the family and
//! generation under a key of the control plane's (so a token cannot be forged, and the store
//! holds nothing a token could be made from). A family keeps only its current generation. Each
//! use of the current token moves the family to the next generation; an authentic token of an
//! earlier generation presented again means two parties hold the family (a stolen token, or a
//! stolen copy of an old one): the whole family is revoked, and the access tokens issued under
//! it stop working at once, because every admin request checks that its family is alive. So
//! replay detection costs the same few fields however often a family rotates. A refresh from
//! another device fingerprint (user agent) or IP range than the sign-in's is allowed but
//! recorded on the family, where its owner sees it. A user has at most `max_sessions_per_user`
//! live families: a new sign-in beyond it ends the one used least recently.
//!
//! Redis is reached through a [`crate::redis_link::RedisLink`]: while it is down, every call answers
//! [`SessionError::Unavailable`] at once, and works again when it is back.

mod device;
mod memory;
mod redis;
mod store;
mod token;

pub use device::{ip_range, Client, Session, Suspicious};

use super::attempts::Reserved;
use memory::MemorySessions;
use redis::RedisSessions;
use store::{Rotation, SessionStore, Use};
use token::RefreshTokens;

#[derive(Debug)]
pub enum Refresh {
    /// The token was current: here is its successor.
    Rotated {
        token: String,
        session: Box<Session>,
        suspicious: Vec<Suspicious>,
    },
    /// The token had been used before: its family is revoked.
    Replayed { user_id: String, session: String },
    /// Unknown, expired, revoked, forged or malformed.
    Invalid,
}

/// Why the session store could not answer. The admin API answers `Unavailable` with 503 (and
/// `Retry-After`), `Internal` with 500 (see `From<SessionError> for ApiError`).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Redis cannot be reached (or cannot serve) now; worth retrying shortly.
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
    #[error("session store: {0}")]
    Internal(String),
}

impl From<::redis::RedisError> for SessionError {
    fn from(e: ::redis::RedisError) -> Self {
        if crate::redis_link::is_unavailable(&e) {
            SessionError::Unavailable(e.to_string())
        } else {
            SessionError::Internal(e.to_string())
        }
    }
}

impl From<serde_json::Error> for SessionError {
    fn from(e: serde_json::Error) -> Self {
        SessionError::Internal(format!("a stored session does not parse: {e}"))
    }
}

type Result<T> = std::result::Result<T, SessionError>;

/// Sign-in attempts are counted over this many seconds.
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// Live families per user unless configured ([`Sessions::with_max_families`]).
pub const DEFAULT_MAX_FAMILIES: usize = 20;

pub struct Sessions {
    store: Box<dyn SessionStore>,
    /// Seconds a family lives after its last use.
    ttl: i64,
    max_families: usize,
    /// Signs refresh tokens (see the module's documentation).
    tokens: RefreshTokens,
}

impl Sessions {
    fn with_store(store: Box<dyn SessionStore>, ttl_secs: i64) -> Sessions {
        Sessions {
            store,
            ttl: ttl_secs,
            max_families: DEFAULT_MAX_FAMILIES,
            tokens: RefreshTokens::random(),
        }
    }

    pub fn memory(ttl_secs: i64) -> Sessions {
        Sessions::with_store(Box::new(MemorySessions::new()), ttl_secs)
    }

    /// Sessions in Redis at `redis_url` (keys under `prefix`), or in memory without one.
    /// Redis need not be up: it is connected on first use, and its absence is logged here.
    pub async fn connect(redis_url: Option<&str>, prefix: &str, ttl_secs: i64) -> Result<Sessions> {
        let Some(url) = redis_url else {
            return Ok(Sessions::memory(ttl_secs));
        };
        let store = RedisSessions::open(url, prefix)?;
        if !store.reachable().await {
            tracing::warn!("Redis is not reachable: sign-ins and sessions answer 503 until it is");
        }
        Ok(Sessions::with_store(Box::new(store), ttl_secs))
    }

    /// Signs refresh tokens with `key` (every control plane sharing the Redis must use the
    /// same); by default a random key of this process's.
    pub fn with_refresh_key(mut self, key: &[u8]) -> Sessions {
        self.tokens = RefreshTokens::with_key(key);
        self
    }

    /// At most `n` live families per user (at least 1).
    pub fn with_max_families(mut self, n: usize) -> Sessions {
        self.max_families = n.max(1);
        self
    }

    /// Whether the store answers now (always, in memory).
    pub async fn reachable(&self) -> bool {
        self.store.reachable().await
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl
    }

    fn token(&self, family: &str, generation: u64) -> String {
        self.tokens.issue(family, generation)
    }

    /// Starts a family for a sign-in; returns it and its first refresh token. The user's
    /// families beyond the cap end, least recently used first.
    pub async fn create(
        &self,
        user_id: &str,
        client: &Client,
        now: i64,
    ) -> Result<(Session, String)> {
        let id = crate::crypto::new_id("");
        let token = self.token(&id, 0);
        let session = Session {
            id,
            user_id: user_id.into(),
            device: client.device.clone(),
            user_agent: client.user_agent.clone(),
            ip: client.ip.clone(),
            created_at: now,
            last_seen: now,
            last_ip: client.ip.clone(),
            last_user_agent: client.user_agent.clone(),
            suspicious: Vec::new(),
        };
        self.store
            .create(&session, self.ttl, self.max_families, now)
            .await?;
        Ok((session, token))
    }

    /// Uses a refresh token (see the module's documentation).
    pub async fn refresh(
        &self,
        token: &str,
        ip: &str,
        user_agent: &str,
        now: i64,
    ) -> Result<Refresh> {
        // A token this control plane did not sign touches nothing.
        let Some((id, presented)) = self.tokens.authentic(token) else {
            return Ok(Refresh::Invalid);
        };
        let Some(successor) = presented.checked_add(1) else {
            return Ok(Refresh::Invalid);
        };
        let used = Use {
            presented,
            ip,
            user_agent,
            now,
            ttl: self.ttl,
        };
        Ok(match self.store.rotate(id, used).await? {
            Rotation::Rotated {
                session,
                suspicious,
            } => Refresh::Rotated {
                token: self.token(id, successor),
                session,
                suspicious,
            },
            Rotation::Replayed { user_id } => Refresh::Replayed {
                user_id,
                session: id.into(),
            },
            Rotation::Invalid => Refresh::Invalid,
        })
    }

    /// Whether the family `id` of `user_id` is alive; marks it seen.
    pub async fn alive(&self, id: &str, user_id: &str, now: i64) -> Result<bool> {
        self.store.alive(id, user_id, now).await
    }

    /// The user's live families (devices), most recently seen first.
    pub async fn list(&self, user_id: &str, now: i64) -> Result<Vec<Session>> {
        let mut out = self.store.list(user_id, now).await?;
        device::most_recent_first(&mut out);
        Ok(out)
    }

    /// Ends one family of `user_id`; whether it was alive.
    pub async fn revoke(&self, user_id: &str, id: &str) -> Result<bool> {
        self.store.revoke(user_id, id).await
    }

    /// Ends every family of `user_id`; how many were alive.
    pub async fn revoke_all(&self, user_id: &str, now: i64) -> Result<usize> {
        let mut n = 0;
        for s in self.list(user_id, now).await? {
            if self.revoke(user_id, &s.id).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Counts a sign-in attempt of `subject` (a name and an address, or an address) before
    /// anything is verified, so that concurrent attempts cannot all pass a check made before
    /// any of them is counted. The window ([`FAILURE_WINDOW_SECS`]) starts with its first
    /// attempt.
    pub async fn reserve_attempt(&self, subject: &str, now: i64) -> Result<Reserved> {
        self.store
            .reserve_attempt(subject, now, FAILURE_WINDOW_SECS)
            .await
    }

    /// Gives an attempt back: it was not a failure (a success, or nothing was verified).
    pub async fn give_back_attempt(&self, subject: &str) -> Result<()> {
        self.store.give_back_attempt(subject).await
    }

    /// Forgets `subject`'s attempts (after a successful sign-in).
    pub async fn clear_attempts(&self, subject: &str) -> Result<()> {
        self.store.clear_attempts(subject).await
    }

    /// How many entries the store holds for family `id`.
    #[cfg(test)]
    async fn stored_entries(&self, id: &str) -> usize {
        self.store.stored_entries(id).await
    }
}

#[cfg(test)]
mod tests;
