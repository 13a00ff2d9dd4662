//! Sessions: one refresh token family per signed-in device, in Redis (shared by every control
//! plane) or in memory; and the sign-in attempt counters, next to them.
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
//! Redis is reached through a [`RedisLink`]: while it is down, every call answers
//! [`SessionError::Unavailable`] at once, and works again when it is back.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::attempts::{Attempts, Reserved};
use crate::redis_link::RedisLink;

/// A family's state: the sign-in's facts plus what changes at each use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// The name the client gave its device at sign-in.
    pub device: String,
    pub user_agent: String,
    pub ip: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub last_ip: String,
    pub last_user_agent: String,
    /// Refreshes from another fingerprint or IP range than the sign-in's, newest first.
    pub suspicious: Vec<Suspicious>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Suspicious {
    pub at: i64,
    /// `new_device` (another user agent) or `new_ip_range` (another /24, or /48 for IPv6).
    pub reason: String,
    pub ip: String,
    pub user_agent: String,
}

/// What a sign-in tells about the client.
#[derive(Debug, Clone)]
pub struct Client {
    pub device: String,
    pub user_agent: String,
    pub ip: String,
}

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

/// Why the session store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Redis cannot be reached (or cannot serve) now; worth retrying shortly.
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
    #[error("session store: {0}")]
    Internal(String),
}

impl From<redis::RedisError> for SessionError {
    fn from(e: redis::RedisError) -> Self {
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

/// Most suspicious refreshes kept per family.
const EVENTS_KEPT: usize = 20;
/// Sign-in attempts are counted over this many seconds.
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// Live families per user unless configured ([`Sessions::with_max_families`]).
pub const DEFAULT_MAX_FAMILIES: usize = 20;
/// Most attempt windows kept in memory (subjects are names and addresses clients choose).
const MEMORY_ATTEMPT_SUBJECTS: usize = 100_000;

pub struct Sessions {
    backend: Backend,
    /// Seconds a family lives after its last use.
    ttl: i64,
    max_families: usize,
    /// Signs refresh tokens (see the module's documentation).
    refresh_key: ring::hmac::Key,
}

enum Backend {
    Memory {
        families: Mutex<HashMap<String, Family>>,
        attempts: Attempts,
    },
    Redis {
        link: RedisLink,
        prefix: String,
    },
}

struct Family {
    generation: u64,
    session: Session,
    expires: i64,
}

/// Moves the family to the next generation when the presented one is current; reports (and
/// revokes the family) when it is an earlier one; else nothing.
/// KEYS: family hash, events list. ARGV: presented generation, now, ip, user agent, ttl,
/// family id, the owners' index key without the user id.
const ROTATE_LUA: &str = r#"
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then return {'invalid'} end
gen = tonumber(gen)
local presented = tonumber(ARGV[1])
local user = redis.call('HGET', KEYS[1], 'user_id')
local index = ARGV[7] .. user
if presented == gen then
  redis.call('HSET', KEYS[1], 'gen', gen + 1, 'seen', ARGV[2], 'last_ip', ARGV[3], 'last_ua', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  redis.call('EXPIRE', index, ARGV[5])
  return {'ok', user, redis.call('HGET', KEYS[1], 'meta')}
end
if presented < gen then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', index, ARGV[6])
  return {'replay', user}
end
return {'invalid'}
"#;

/// Marks the family seen when it exists and belongs to the user (in one step: a family
/// revoked meanwhile is not brought back as a hash without expiry).
/// KEYS: family hash. ARGV: user id, now.
const ALIVE_LUA: &str = r#"
if redis.call('HGET', KEYS[1], 'user_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'seen', ARGV[2])
  return 1
end
return 0
"#;

/// Counts an attempt; the window starts with the first.
/// KEYS: counter. ARGV: window seconds. Returns {count, seconds left}.
const RESERVE_LUA: &str = r#"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"#;

/// Takes one attempt back, never below zero.
const GIVE_BACK_LUA: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
"#;

/// The static part of a family, stored once as JSON.
#[derive(Serialize, Deserialize)]
struct Meta {
    device: String,
    user_agent: String,
    ip: String,
    created_at: i64,
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
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

/// The network a client address belongs to, for noticing a move: /24 for IPv4, /48 for IPv6.
pub fn ip_range(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => ip.to_owned(),
    }
}

/// How a refresh differs from the family's sign-in.
fn suspicious(session: &Session, ip: &str, user_agent: &str, now: i64) -> Vec<Suspicious> {
    let mut out = Vec::new();
    let event = |reason: &str| Suspicious {
        at: now,
        reason: reason.into(),
        ip: ip.into(),
        user_agent: user_agent.into(),
    };
    if session.user_agent != user_agent {
        out.push(event("new_device"));
    }
    if ip_range(&session.ip) != ip_range(ip) {
        out.push(event("new_ip_range"));
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while a lock is held: a poisoned lock's data is whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn random_key() -> ring::hmac::Key {
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key)
}

impl Sessions {
    pub fn memory(ttl_secs: i64) -> Sessions {
        Sessions {
            backend: Backend::Memory {
                families: Mutex::default(),
                attempts: Attempts::new(MEMORY_ATTEMPT_SUBJECTS),
            },
            ttl: ttl_secs,
            max_families: DEFAULT_MAX_FAMILIES,
            refresh_key: random_key(),
        }
    }

    /// Sessions in Redis at `redis_url` (keys under `prefix`), or in memory without one.
    /// Redis need not be up: it is connected on first use, and its absence is logged here.
    pub async fn connect(redis_url: Option<&str>, prefix: &str, ttl_secs: i64) -> Result<Sessions> {
        let Some(url) = redis_url else {
            return Ok(Sessions::memory(ttl_secs));
        };
        let link = RedisLink::open(url)
            .map_err(|e| SessionError::Internal(format!("the Redis URL: {e}")))?;
        if !link.reachable().await {
            tracing::warn!("Redis is not reachable: sign-ins and sessions answer 503 until it is");
        }
        Ok(Sessions {
            backend: Backend::Redis {
                link,
                prefix: prefix.into(),
            },
            ttl: ttl_secs,
            max_families: DEFAULT_MAX_FAMILIES,
            refresh_key: random_key(),
        })
    }

    /// Signs refresh tokens with `key` (every control plane sharing the Redis must use the
    /// same); by default a random key of this process's.
    pub fn with_refresh_key(mut self, key: &[u8]) -> Sessions {
        self.refresh_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        self
    }

    /// At most `n` live families per user (at least 1).
    pub fn with_max_families(mut self, n: usize) -> Sessions {
        self.max_families = n.max(1);
        self
    }

    /// Whether the store answers now (always, in memory).
    pub async fn reachable(&self) -> bool {
        match &self.backend {
            Backend::Memory { .. } => true,
            Backend::Redis { link, .. } => link.reachable().await,
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl
    }

    fn key(prefix: &str, parts: &[&str]) -> String {
        let mut k = format!("{prefix}:session");
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    fn token(&self, family: &str, generation: u64) -> String {
        let signed = format!("{family}.{generation}");
        let tag = ring::hmac::sign(&self.refresh_key, signed.as_bytes());
        format!(
            "syr_{signed}.{}",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                tag.as_ref()
            )
        )
    }

    /// The family and generation of a token this control plane signed.
    fn authentic<'t>(&self, token: &'t str) -> Option<(&'t str, u64)> {
        let (family, generation, tag) = parse_token(token)?;
        let tag =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, tag).ok()?;
        let signed = format!("{family}.{generation}");
        ring::hmac::verify(&self.refresh_key, signed.as_bytes(), &tag).ok()?;
        Some((family, generation))
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
            id: id.clone(),
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
        match &self.backend {
            Backend::Memory { families, .. } => {
                let mut families = lock(families);
                families.retain(|_, f| f.expires > now);
                let mut mine: Vec<(i64, String)> = families
                    .values()
                    .filter(|f| f.session.user_id == user_id)
                    .map(|f| (f.session.last_seen, f.session.id.clone()))
                    .collect();
                mine.sort();
                let over = (mine.len() + 1).saturating_sub(self.max_families);
                for (_, old) in mine.into_iter().take(over) {
                    families.remove(&old);
                }
                families.insert(
                    id.clone(),
                    Family {
                        generation: 0,
                        session: session.clone(),
                        expires: now + self.ttl,
                    },
                );
            }
            Backend::Redis { link, prefix } => {
                let meta = serde_json::to_string(&Meta {
                    device: client.device.clone(),
                    user_agent: client.user_agent.clone(),
                    ip: client.ip.clone(),
                    created_at: now,
                })?;
                let family = Self::key(prefix, &[&id]);
                let index = Self::key(prefix, &["user", user_id]);
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hset_multiple(
                        &family,
                        &[
                            ("user_id", user_id),
                            ("gen", "0"),
                            ("meta", &meta),
                            ("seen", &now.to_string()),
                            ("last_ip", &client.ip),
                            ("last_ua", &client.user_agent),
                        ],
                    )
                    .ignore()
                    .expire(&family, self.ttl)
                    .ignore()
                    .sadd(&index, &id)
                    .ignore()
                    .expire(&index, self.ttl)
                    .ignore();
                pipe.query_async::<()>(&mut link.clone()).await?;
                self.trim(link, prefix, user_id, &id).await?;
            }
        }
        Ok((session, token))
    }

    /// The key of `user_id`'s index of families (in Redis), and the ids in it (some may have
    /// ended since).
    async fn family_ids(
        conn: &mut RedisLink,
        prefix: &str,
        user_id: &str,
    ) -> Result<(String, Vec<String>)> {
        let index = Self::key(prefix, &["user", user_id]);
        let ids = redis::cmd("SMEMBERS").arg(&index).query_async(conn).await?;
        Ok((index, ids))
    }

    /// Ends `user_id`'s families beyond the cap (in Redis), least recently used first, never
    /// `keep` (the one just made); drops ended families from the user's index.
    async fn trim(&self, link: &RedisLink, prefix: &str, user_id: &str, keep: &str) -> Result<()> {
        let mut conn = link.clone();
        let (index, ids) = Self::family_ids(&mut conn, prefix, user_id).await?;
        if ids.len() <= self.max_families {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(Self::key(prefix, &[id]), "seen");
        }
        let seen: Vec<Option<i64>> = pipe.query_async(&mut conn).await?;
        let mut live = Vec::with_capacity(ids.len());
        let mut pipe = redis::pipe();
        for (id, seen) in ids.into_iter().zip(seen) {
            match seen {
                None => {
                    pipe.srem(&index, &id).ignore();
                }
                Some(_) if id == keep => {}
                Some(at) => live.push((at, id)),
            }
        }
        live.sort();
        let over = (live.len() + 1).saturating_sub(self.max_families);
        for (_, id) in live.into_iter().take(over) {
            pipe.del(&[
                Self::key(prefix, &[&id]),
                Self::key(prefix, &[&id, "events"]),
            ])
            .ignore()
            .srem(&index, &id)
            .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
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
        let Some((id, presented)) = self.authentic(token) else {
            return Ok(Refresh::Invalid);
        };
        let Some(successor) = presented.checked_add(1) else {
            return Ok(Refresh::Invalid);
        };
        match &self.backend {
            Backend::Memory { families, .. } => {
                let mut families = lock(families);
                let Some(f) = families.get_mut(id).filter(|f| f.expires > now) else {
                    families.remove(id);
                    return Ok(Refresh::Invalid);
                };
                if presented == f.generation {
                    f.generation = successor;
                    f.expires = now + self.ttl;
                    let events = suspicious(&f.session, ip, user_agent, now);
                    let s = &mut f.session;
                    s.last_seen = now;
                    s.last_ip = ip.into();
                    s.last_user_agent = user_agent.into();
                    for e in &events {
                        s.suspicious.insert(0, e.clone());
                    }
                    s.suspicious.truncate(EVENTS_KEPT);
                    return Ok(Refresh::Rotated {
                        token: self.token(id, successor),
                        session: Box::new(s.clone()),
                        suspicious: events,
                    });
                }
                if presented < f.generation {
                    let user_id = f.session.user_id.clone();
                    families.remove(id);
                    return Ok(Refresh::Replayed {
                        user_id,
                        session: id.into(),
                    });
                }
                Ok(Refresh::Invalid)
            }
            Backend::Redis { link, prefix } => {
                let mut conn = link.clone();
                let events = Self::key(prefix, &[id, "events"]);
                let reply: Vec<String> = redis::Script::new(ROTATE_LUA)
                    .key(Self::key(prefix, &[id]))
                    .key(&events)
                    .arg(presented)
                    .arg(now)
                    .arg(ip)
                    .arg(user_agent)
                    .arg(self.ttl)
                    .arg(id)
                    .arg(format!("{}:", Self::key(prefix, &["user"])))
                    .invoke_async(&mut conn)
                    .await?;
                match reply.first().map(String::as_str) {
                    Some("ok") if reply.len() == 3 => {
                        let meta: Meta = serde_json::from_str(&reply[2])?;
                        let mut session = Session {
                            id: id.into(),
                            user_id: reply[1].clone(),
                            device: meta.device,
                            user_agent: meta.user_agent,
                            ip: meta.ip,
                            created_at: meta.created_at,
                            last_seen: now,
                            last_ip: ip.into(),
                            last_user_agent: user_agent.into(),
                            suspicious: Vec::new(),
                        };
                        let found = suspicious(&session, ip, user_agent, now);
                        if !found.is_empty() {
                            let mut pipe = redis::pipe();
                            for e in &found {
                                pipe.lpush(&events, serde_json::to_string(e)?).ignore();
                            }
                            pipe.ltrim(&events, 0, EVENTS_KEPT as isize - 1)
                                .ignore()
                                .expire(&events, self.ttl)
                                .ignore();
                            pipe.query_async::<()>(&mut conn).await?;
                        }
                        session.suspicious = Self::events(&mut conn, prefix, id).await?;
                        Ok(Refresh::Rotated {
                            token: self.token(id, successor),
                            session: Box::new(session),
                            suspicious: found,
                        })
                    }
                    Some("replay") if reply.len() == 2 => Ok(Refresh::Replayed {
                        user_id: reply[1].clone(),
                        session: id.into(),
                    }),
                    _ => Ok(Refresh::Invalid),
                }
            }
        }
    }

    async fn events(conn: &mut RedisLink, prefix: &str, id: &str) -> Result<Vec<Suspicious>> {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(Self::key(prefix, &[id, "events"]))
            .arg(0)
            .arg(EVENTS_KEPT as i64 - 1)
            .query_async(conn)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }

    /// Whether the family `id` of `user_id` is alive; marks it seen.
    pub async fn alive(&self, id: &str, user_id: &str, now: i64) -> Result<bool> {
        match &self.backend {
            Backend::Memory { families, .. } => Ok(match lock(families).get_mut(id) {
                Some(f) if f.expires > now && f.session.user_id == user_id => {
                    f.session.last_seen = now;
                    true
                }
                _ => false,
            }),
            Backend::Redis { link, prefix } => {
                let alive: i64 = redis::Script::new(ALIVE_LUA)
                    .key(Self::key(prefix, &[id]))
                    .arg(user_id)
                    .arg(now)
                    .invoke_async(&mut link.clone())
                    .await?;
                Ok(alive == 1)
            }
        }
    }

    /// The user's live families (devices), most recently seen first.
    pub async fn list(&self, user_id: &str, now: i64) -> Result<Vec<Session>> {
        let mut out = match &self.backend {
            Backend::Memory { families, .. } => {
                let mut families = lock(families);
                families.retain(|_, f| f.expires > now);
                families
                    .values()
                    .filter(|f| f.session.user_id == user_id)
                    .map(|f| f.session.clone())
                    .collect()
            }
            Backend::Redis { link, prefix } => {
                let mut conn = link.clone();
                let (index, ids) = Self::family_ids(&mut conn, prefix, user_id).await?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let fields: HashMap<String, String> = redis::cmd("HGETALL")
                        .arg(Self::key(prefix, &[&id]))
                        .query_async(&mut conn)
                        .await?;
                    let (Some(meta), Some(owner)) = (fields.get("meta"), fields.get("user_id"))
                    else {
                        // Expired or revoked: drop it from the index.
                        redis::cmd("SREM")
                            .arg(&index)
                            .arg(&id)
                            .query_async::<()>(&mut conn)
                            .await?;
                        continue;
                    };
                    if owner != user_id {
                        continue;
                    }
                    let meta: Meta = serde_json::from_str(meta)?;
                    let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
                    out.push(Session {
                        suspicious: Self::events(&mut conn, prefix, &id).await?,
                        id,
                        user_id: user_id.into(),
                        device: meta.device,
                        user_agent: meta.user_agent,
                        ip: meta.ip,
                        created_at: meta.created_at,
                        last_seen: field("seen").parse().unwrap_or(meta.created_at),
                        last_ip: field("last_ip"),
                        last_user_agent: field("last_ua"),
                    });
                }
                out
            }
        };
        out.sort_by(|a: &Session, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Ends one family of `user_id`; whether it was alive.
    pub async fn revoke(&self, user_id: &str, id: &str) -> Result<bool> {
        match &self.backend {
            Backend::Memory { families, .. } => {
                let mut families = lock(families);
                if families
                    .get(id)
                    .is_some_and(|f| f.session.user_id == user_id)
                {
                    families.remove(id);
                    return Ok(true);
                }
                Ok(false)
            }
            Backend::Redis { link, prefix } => {
                let mut conn = link.clone();
                let family = Self::key(prefix, &[id]);
                let owner: Option<String> = redis::cmd("HGET")
                    .arg(&family)
                    .arg("user_id")
                    .query_async(&mut conn)
                    .await?;
                if owner.as_deref() != Some(user_id) {
                    return Ok(false);
                }
                let mut pipe = redis::pipe();
                pipe.del(&[family, Self::key(prefix, &[id, "events"])])
                    .ignore()
                    .srem(Self::key(prefix, &["user", user_id]), id)
                    .ignore();
                pipe.query_async::<()>(&mut conn).await?;
                Ok(true)
            }
        }
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

    fn attempts_key(prefix: &str, subject: &str) -> String {
        // Hashed: subjects hold names clients send, and keys should not.
        format!("{prefix}:signin-attempts:{}", digest(subject))
    }

    /// Counts a sign-in attempt of `subject` (a name and an address, or an address) before
    /// anything is verified, so that concurrent attempts cannot all pass a check made before
    /// any of them is counted. The window ([`FAILURE_WINDOW_SECS`]) starts with its first
    /// attempt.
    pub async fn reserve_attempt(&self, subject: &str, now: i64) -> Result<Reserved> {
        match &self.backend {
            Backend::Memory { attempts, .. } => {
                Ok(attempts.reserve(subject, now, FAILURE_WINDOW_SECS))
            }
            Backend::Redis { link, prefix } => {
                let (count, retry_after): (u32, i64) = redis::Script::new(RESERVE_LUA)
                    .key(Self::attempts_key(prefix, subject))
                    .arg(FAILURE_WINDOW_SECS)
                    .invoke_async(&mut link.clone())
                    .await?;
                Ok(Reserved { count, retry_after })
            }
        }
    }

    /// Gives an attempt back: it was not a failure (a success, or nothing was verified).
    pub async fn give_back_attempt(&self, subject: &str) -> Result<()> {
        match &self.backend {
            Backend::Memory { attempts, .. } => attempts.give_back(subject),
            Backend::Redis { link, prefix } => {
                redis::Script::new(GIVE_BACK_LUA)
                    .key(Self::attempts_key(prefix, subject))
                    .invoke_async::<()>(&mut link.clone())
                    .await?;
            }
        }
        Ok(())
    }

    /// Forgets `subject`'s attempts (after a successful sign-in).
    pub async fn clear_attempts(&self, subject: &str) -> Result<()> {
        match &self.backend {
            Backend::Memory { attempts, .. } => attempts.clear(subject),
            Backend::Redis { link, prefix } => {
                redis::cmd("DEL")
                    .arg(Self::attempts_key(prefix, subject))
                    .query_async::<()>(&mut link.clone())
                    .await?;
            }
        }
        Ok(())
    }

    /// How many entries the store holds for family `id` (fields, list items): what must not
    /// grow with the family's age.
    #[cfg(test)]
    async fn stored_entries(&self, id: &str) -> usize {
        match &self.backend {
            // The generation, the session, the expiry; events are capped.
            Backend::Memory { families, .. } => lock(families)
                .get(id)
                .map_or(0, |f| 3 + f.session.suspicious.len()),
            Backend::Redis { link, prefix } => {
                let mut conn = link.clone();
                let mut n = 0;
                for k in [Self::key(prefix, &[id]), Self::key(prefix, &[id, "events"])] {
                    let kind: String = redis::cmd("TYPE")
                        .arg(&k)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    let len = match kind.as_str() {
                        "hash" => "HLEN",
                        "list" => "LLEN",
                        _ => continue,
                    };
                    let l: usize = redis::cmd(len)
                        .arg(&k)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    n += l;
                }
                n
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ua: &str, ip: &str) -> Client {
        Client {
            device: "laptop".into(),
            user_agent: ua.into(),
            ip: ip.into(),
        }
    }

    /// Sessions on the local Redis under a prefix of their own, or `None` when it is not running.
    async fn redis_sessions(ttl: i64) -> Option<Sessions> {
        let prefix = crate::crypto::new_id("sy-test-");
        let s = Sessions::connect(Some("redis://127.0.0.1:6379"), &prefix, ttl)
            .await
            .ok()?;
        s.reachable().await.then_some(s)
    }

    async fn backends(ttl: i64) -> Vec<(&'static str, Sessions)> {
        let mut out = vec![("memory", Sessions::memory(ttl))];
        match redis_sessions(ttl).await {
            Some(s) => out.push(("redis", s)),
            None if std::env::var_os("CI").is_some() => panic!("Redis is required in CI"),
            None => eprintln!("Redis not running: testing sessions in memory only"),
        }
        out
    }

    #[tokio::test]
    async fn rotation_replay_and_revocation() {
        for (name, s) in backends(3600).await {
            let (session, t1) = s
                .create("usr_a", &client("ua/1", "10.0.0.5"), 100)
                .await
                .unwrap();
            assert!(s.alive(&session.id, "usr_a", 101).await.unwrap(), "{name}");
            assert!(
                !s.alive(&session.id, "usr_b", 101).await.unwrap(),
                "{name}: another user's"
            );

            let Refresh::Rotated {
                token: t2,
                suspicious,
                session: after,
            } = s.refresh(&t1, "10.0.0.9", "ua/1", 110).await.unwrap()
            else {
                panic!("{name}: current token rotates");
            };
            assert!(suspicious.is_empty(), "{name}: same device and range");
            assert_eq!((after.last_seen, after.last_ip.as_str()), (110, "10.0.0.9"));
            assert_ne!(t1, t2);
            // A forged secret on the family is refused without touching the family.
            let forged = format!("syr_{}.{}", session.id, "x".repeat(32));
            assert!(
                matches!(
                    s.refresh(&forged, "1.1.1.1", "ua/1", 111).await.unwrap(),
                    Refresh::Invalid
                ),
                "{name}"
            );
            assert!(s.alive(&session.id, "usr_a", 111).await.unwrap(), "{name}");

            let Refresh::Rotated { token: t3, .. } =
                s.refresh(&t2, "10.0.0.9", "ua/1", 120).await.unwrap()
            else {
                panic!("{name}: second rotation");
            };
            // The first token again: replay. The family is gone, t3 with it.
            match s.refresh(&t1, "6.6.6.6", "evil", 130).await.unwrap() {
                Refresh::Replayed {
                    user_id,
                    session: sid,
                } => {
                    assert_eq!(
                        (user_id.as_str(), sid.as_str()),
                        ("usr_a", session.id.as_str()),
                        "{name}"
                    );
                }
                other => panic!("{name}: replay not detected: {other:?}"),
            }
            assert!(!s.alive(&session.id, "usr_a", 131).await.unwrap(), "{name}");
            assert!(
                matches!(
                    s.refresh(&t3, "10.0.0.9", "ua/1", 132).await.unwrap(),
                    Refresh::Invalid
                ),
                "{name}"
            );
            assert!(s.list("usr_a", 133).await.unwrap().is_empty(), "{name}");
            for junk in [
                "",
                "syr_",
                "syr_zz.x",
                "nope",
                &format!("syr_{}.", session.id),
            ] {
                assert!(
                    matches!(
                        s.refresh(junk, "1.1.1.1", "x", 140).await.unwrap(),
                        Refresh::Invalid
                    ),
                    "{name}: {junk}"
                );
            }
        }
    }

    #[tokio::test]
    async fn devices_suspicious_refreshes_and_remote_logout() {
        for (name, s) in backends(3600).await {
            let (phone, _) = s
                .create("usr_a", &client("phone/1", "192.0.2.10"), 100)
                .await
                .unwrap();
            let (laptop, lt) = s
                .create("usr_a", &client("laptop/1", "192.0.2.11"), 200)
                .await
                .unwrap();
            let (other, _) = s
                .create("usr_b", &client("x", "192.0.2.12"), 200)
                .await
                .unwrap();
            let Refresh::Rotated { suspicious, .. } =
                s.refresh(&lt, "203.0.113.7", "curl/8", 300).await.unwrap()
            else {
                panic!("{name}: rotates");
            };
            let reasons: Vec<&str> = suspicious.iter().map(|e| e.reason.as_str()).collect();
            assert_eq!(reasons, ["new_device", "new_ip_range"], "{name}");
            let list = s.list("usr_a", 301).await.unwrap();
            assert_eq!(
                list.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                [laptop.id.as_str(), phone.id.as_str()],
                "{name}"
            );
            assert_eq!(list[0].suspicious.len(), 2, "{name}: visible on the device");
            assert_eq!(
                (list[0].ip.as_str(), list[0].last_ip.as_str()),
                ("192.0.2.11", "203.0.113.7")
            );
            assert_eq!(list[0].device, "laptop");
            // Remote logout of one device; another user's device cannot be ended by this user.
            assert!(!s.revoke("usr_a", &other.id).await.unwrap(), "{name}");
            assert!(s.revoke("usr_a", &phone.id).await.unwrap(), "{name}");
            assert!(!s.alive(&phone.id, "usr_a", 302).await.unwrap(), "{name}");
            assert!(s.alive(&laptop.id, "usr_a", 302).await.unwrap(), "{name}");
            assert_eq!(s.revoke_all("usr_a", 303).await.unwrap(), 1, "{name}");
            assert!(!s.alive(&laptop.id, "usr_a", 304).await.unwrap(), "{name}");
            assert!(s.alive(&other.id, "usr_b", 304).await.unwrap(), "{name}");
        }
    }

    #[tokio::test]
    async fn sign_in_attempts_are_reserved_given_back_and_cleared() {
        for (name, s) in backends(3600).await {
            let who = crate::crypto::new_id("user-");
            for n in 1..=3 {
                let r = s.reserve_attempt(&who, 100).await.unwrap();
                assert_eq!(r.count, n, "{name}");
                assert!((1..=FAILURE_WINDOW_SECS).contains(&r.retry_after), "{name}");
            }
            s.give_back_attempt(&who).await.unwrap();
            assert_eq!(
                s.reserve_attempt(&who, 101).await.unwrap().count,
                3,
                "{name}"
            );
            s.clear_attempts(&who).await.unwrap();
            assert_eq!(
                s.reserve_attempt(&who, 102).await.unwrap().count,
                1,
                "{name}"
            );
            // Never below zero.
            let other = crate::crypto::new_id("user-");
            s.give_back_attempt(&other).await.unwrap();
            assert_eq!(
                s.reserve_attempt(&other, 103).await.unwrap().count,
                1,
                "{name}"
            );
        }
    }

    /// 50 attempts at once: each gets its own count, so exactly the allowance pass a
    /// `count <= allowance` check.
    #[tokio::test]
    async fn concurrent_reservations_are_counted_one_by_one() {
        for (name, s) in backends(3600).await {
            let who = crate::crypto::new_id("user-");
            let counts =
                futures::future::join_all((0..50).map(|_| s.reserve_attempt(&who, 100))).await;
            let mut counts: Vec<u32> = counts.into_iter().map(|r| r.unwrap().count).collect();
            counts.sort_unstable();
            assert_eq!(counts, (1..=50).collect::<Vec<_>>(), "{name}");
        }
    }

    /// Tokens are signed: another key's, a changed generation, a changed family or a bent
    /// spelling are refused without touching the family.
    #[tokio::test]
    async fn refresh_tokens_cannot_be_forged() {
        let s = Sessions::memory(3600).with_refresh_key(&[1; 32]);
        let other = Sessions::memory(3600).with_refresh_key(&[2; 32]);
        let (session, t0) = s
            .create("usr_a", &client("ua", "10.0.0.5"), 100)
            .await
            .unwrap();
        let Refresh::Rotated { token: t1, .. } =
            s.refresh(&t0, "10.0.0.5", "ua", 101).await.unwrap()
        else {
            panic!("rotates");
        };
        let tag = t1.rsplit('.').next().unwrap();
        let forged = [
            other.token(&session.id, 0),
            other.token(&session.id, 1),
            format!("syr_{}.0.{tag}", session.id),
            format!("syr_{}.+1.{tag}", session.id),
            format!("syr_{}.01.{tag}", session.id),
            format!("syr_{}.1.{tag}x", session.id),
            format!("syr_{}.1", session.id),
        ];
        for f in &forged {
            assert!(
                matches!(
                    s.refresh(f, "1.1.1.1", "x", 102).await.unwrap(),
                    Refresh::Invalid
                ),
                "{f}"
            );
        }
        assert!(s.alive(&session.id, "usr_a", 103).await.unwrap());
        assert!(matches!(
            s.refresh(&t1, "10.0.0.5", "ua", 104).await.unwrap(),
            Refresh::Rotated { .. }
        ));
        // Two control planes with the same key understand each other's tokens.
        let twin = Sessions::memory(3600).with_refresh_key(&[1; 32]);
        assert_eq!(twin.token(&session.id, 7), s.token(&session.id, 7));
    }

    #[tokio::test]
    async fn replay_detection_keeps_constant_state_over_many_rotations() {
        for (name, s) in backends(3600).await {
            let (session, mut token) = s
                .create("usr_a", &client("ua/1", "10.0.0.5"), 100)
                .await
                .unwrap();
            let mut sizes = std::collections::BTreeSet::new();
            let mut old = Vec::new();
            for i in 0..1_000 {
                let Refresh::Rotated { token: next, .. } = s
                    .refresh(&token, "10.0.0.5", "ua/1", 101 + i)
                    .await
                    .unwrap()
                else {
                    panic!("{name}: rotation {i}");
                };
                if i % 250 == 0 {
                    old.push(token.clone());
                }
                token = next;
                sizes.insert(s.stored_entries(&session.id).await);
            }
            assert_eq!(
                sizes.len(),
                1,
                "{name}: state grew with rotations: {sizes:?}"
            );
            // Any older token of the family is still a replay, however old.
            assert!(
                matches!(
                    s.refresh(&old[1], "6.6.6.6", "evil", 2_000).await.unwrap(),
                    Refresh::Replayed { .. }
                ),
                "{name}"
            );
            assert!(
                !s.alive(&session.id, "usr_a", 2_001).await.unwrap(),
                "{name}"
            );
            assert_eq!(s.stored_entries(&session.id).await, 0, "{name}: all gone");
        }
    }

    #[tokio::test]
    async fn a_users_live_sessions_are_capped_and_the_oldest_go_first() {
        for (name, s) in backends(3600).await {
            let user = crate::crypto::new_id("usr_");
            let mut ids = Vec::new();
            for i in 0..45 {
                let (session, _) = s
                    .create(&user, &client("ua", "10.0.0.5"), 100 + i)
                    .await
                    .unwrap();
                ids.push(session.id);
            }
            let live = s.list(&user, 200).await.unwrap();
            assert_eq!(live.len(), DEFAULT_MAX_FAMILIES, "{name}: capped");
            assert_eq!(live[0].id, ids[44], "{name}: newest kept");
            assert!(
                !s.alive(&ids[0], &user, 200).await.unwrap(),
                "{name}: oldest revoked"
            );
            assert!(s.alive(&ids[44], &user, 200).await.unwrap(), "{name}");
        }
    }

    /// Redis down at start, back, lost while running, back again: sessions answer
    /// "unavailable" (never another error) while it is gone and work again without a restart.
    #[tokio::test]
    async fn sessions_survive_redis_going_away_and_coming_back() {
        use crate::test_support::OwnRedis;
        let port = OwnRedis::free_port();
        let s = Sessions::connect(Some(&OwnRedis::url(port)), "sy-outage", 3600)
            .await
            .expect("starts without Redis");
        let started = std::time::Instant::now();
        let err = s
            .create("usr_a", &client("ua", "10.0.0.5"), 100)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "fails fast"
        );
        assert!(err.to_string().contains("unavailable"), "{err}");
        let mut redis = OwnRedis::start(port);
        let c = client("ua", "10.0.0.5");
        let (session, token) = eventually(|| s.create("usr_a", &c, 101)).await;
        assert!(s.alive(&session.id, "usr_a", 102).await.unwrap());
        redis.kill();
        let err = s.alive(&session.id, "usr_a", 103).await.unwrap_err();
        assert!(err.to_string().contains("unavailable"), "{err}");
        let err = s.refresh(&token, "10.0.0.5", "ua", 104).await.unwrap_err();
        assert!(matches!(err, SessionError::Unavailable(_)), "{err}");
        let _redis = OwnRedis::start(port);
        let (again, _) = eventually(|| s.create("usr_a", &c, 105)).await;
        assert!(s.alive(&again.id, "usr_a", 106).await.unwrap());
    }

    /// Retries `f` for a few seconds (a connection lost to a restarted Redis fails once).
    async fn eventually<T, E, F>(mut f: impl FnMut() -> F) -> T
    where
        E: std::fmt::Debug,
        F: std::future::Future<Output = std::result::Result<T, E>>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match f().await {
                Ok(v) => return v,
                Err(e) if std::time::Instant::now() > deadline => panic!("still failing: {e:?}"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(ip_range("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(ip_range("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(ip_range("not an ip"), "not an ip");
    }
}
