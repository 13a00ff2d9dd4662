//! Sessions: one refresh token family per signed-in device, in Redis (shared by every control
//! plane) or in memory.
//!
//! A refresh token is `syr_{family}.{secret}`; only its SHA-256 digest is kept. Each use rotates
//! it: the family's current digest is swapped for the new token's, and the old digest goes to the
//! family's used set. A used token presented again means two parties hold the family (a stolen
//! token, or a stolen copy of an old one): the whole family is revoked, and the access tokens
//! issued under it stop working at once, because every admin request checks that its family is
//! alive. A refresh from another device fingerprint (user agent) or IP range than the sign-in's
//! is allowed but recorded on the family, where its owner sees it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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
    /// Unknown, expired, revoked or malformed.
    Invalid,
}

/// Most suspicious refreshes kept per family.
const EVENTS_KEPT: usize = 20;
/// Failed sign-ins counted over this many seconds.
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;

pub struct Sessions {
    backend: Backend,
    /// Seconds a family lives after its last use.
    ttl: i64,
}

enum Backend {
    Memory(Mutex<Memory>),
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
    },
}

#[derive(Default)]
struct Memory {
    families: HashMap<String, Family>,
    failures: HashMap<String, (u32, i64)>,
}

struct Family {
    current: String,
    used: HashSet<String>,
    session: Session,
    expires: i64,
}

/// Swaps the current digest when it is the presented one; reports replay when the presented
/// digest was used before (and deletes the family); else nothing.
/// KEYS: family hash, used set, events list. ARGV: presented, next, now, ip, user agent, ttl.
const ROTATE_LUA: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'cur')
if not cur then return {'invalid'} end
local user = redis.call('HGET', KEYS[1], 'user_id')
if cur == ARGV[1] then
  redis.call('HSET', KEYS[1], 'cur', ARGV[2], 'seen', ARGV[3], 'last_ip', ARGV[4], 'last_ua', ARGV[5])
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
  return {'ok', user, redis.call('HGET', KEYS[1], 'meta')}
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  return {'replay', user}
end
return {'invalid'}
"#;

/// The static part of a family, stored once as JSON.
#[derive(Serialize, Deserialize)]
struct Meta {
    device: String,
    user_agent: String,
    ip: String,
    created_at: i64,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The family id in a refresh token.
fn family_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("syr_")?;
    let (family, secret) = rest.split_once('.')?;
    (family.len() == 24 && family.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(family)
}

fn new_token(family: &str) -> String {
    crate::crypto::token(&format!("syr_{family}."))
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

impl Sessions {
    pub fn memory(ttl_secs: i64) -> Sessions {
        Sessions {
            backend: Backend::Memory(Mutex::default()),
            ttl: ttl_secs,
        }
    }

    pub async fn connect(
        redis_url: Option<&str>,
        prefix: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<Sessions> {
        let Some(url) = redis_url else {
            return Ok(Sessions::memory(ttl_secs));
        };
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new(client).await?;
        Ok(Sessions {
            backend: Backend::Redis {
                conn,
                prefix: prefix.into(),
            },
            ttl: ttl_secs,
        })
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

    /// Starts a family for a sign-in; returns it and its first refresh token.
    pub async fn create(
        &self,
        user_id: &str,
        client: &Client,
        now: i64,
    ) -> anyhow::Result<(Session, String)> {
        let id = crate::crypto::new_id("");
        let token = new_token(&id);
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
            Backend::Memory(m) => {
                let mut m = m.lock().map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
                m.families.insert(
                    id.clone(),
                    Family {
                        current: digest(&token),
                        used: HashSet::new(),
                        session: session.clone(),
                        expires: now + self.ttl,
                    },
                );
            }
            Backend::Redis { conn, prefix } => {
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
                            ("cur", &digest(&token)),
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
                pipe.query_async::<()>(&mut conn.clone()).await?;
            }
        }
        Ok((session, token))
    }

    /// Uses a refresh token (see the module's documentation).
    pub async fn refresh(
        &self,
        token: &str,
        ip: &str,
        user_agent: &str,
        now: i64,
    ) -> anyhow::Result<Refresh> {
        let Some(id) = family_of(token) else {
            return Ok(Refresh::Invalid);
        };
        let presented = digest(token);
        let next = new_token(id);
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
                let Some(f) = m.families.get_mut(id).filter(|f| f.expires > now) else {
                    m.families.remove(id);
                    return Ok(Refresh::Invalid);
                };
                if f.current == presented {
                    f.used
                        .insert(std::mem::replace(&mut f.current, digest(&next)));
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
                        token: next,
                        session: Box::new(s.clone()),
                        suspicious: events,
                    });
                }
                if f.used.contains(&presented) {
                    let user_id = f.session.user_id.clone();
                    m.families.remove(id);
                    return Ok(Refresh::Replayed {
                        user_id,
                        session: id.into(),
                    });
                }
                Ok(Refresh::Invalid)
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let family = Self::key(prefix, &[id]);
                let used = Self::key(prefix, &[id, "used"]);
                let events = Self::key(prefix, &[id, "events"]);
                let reply: Vec<String> = redis::Script::new(ROTATE_LUA)
                    .key(&family)
                    .key(&used)
                    .key(&events)
                    .arg(&presented)
                    .arg(digest(&next))
                    .arg(now)
                    .arg(ip)
                    .arg(user_agent)
                    .arg(self.ttl)
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
                        session.suspicious = self.events(&mut conn, prefix, id).await?;
                        Ok(Refresh::Rotated {
                            token: next,
                            session: Box::new(session),
                            suspicious: found,
                        })
                    }
                    Some("replay") if reply.len() == 2 => {
                        let index = Self::key(prefix, &["user", &reply[1]]);
                        redis::cmd("SREM")
                            .arg(&index)
                            .arg(id)
                            .query_async::<()>(&mut conn)
                            .await?;
                        Ok(Refresh::Replayed {
                            user_id: reply[1].clone(),
                            session: id.into(),
                        })
                    }
                    _ => Ok(Refresh::Invalid),
                }
            }
        }
    }

    async fn events(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        prefix: &str,
        id: &str,
    ) -> anyhow::Result<Vec<Suspicious>> {
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

    /// Whether the family hash `family` (in Redis) exists and belongs to `user_id`.
    async fn owned_by(
        conn: &mut redis::aio::ConnectionManager,
        family: &str,
        user_id: &str,
    ) -> anyhow::Result<bool> {
        let owner: Option<String> = redis::cmd("HGET")
            .arg(family)
            .arg("user_id")
            .query_async(conn)
            .await?;
        Ok(owner.as_deref() == Some(user_id))
    }

    /// Whether the family `id` of `user_id` is alive; marks it seen.
    pub async fn alive(&self, id: &str, user_id: &str, now: i64) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
                Ok(match m.families.get_mut(id) {
                    Some(f) if f.expires > now && f.session.user_id == user_id => {
                        f.session.last_seen = now;
                        true
                    }
                    _ => false,
                })
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let family = Self::key(prefix, &[id]);
                if !Self::owned_by(&mut conn, &family, user_id).await? {
                    return Ok(false);
                }
                redis::cmd("HSET")
                    .arg(&family)
                    .arg("seen")
                    .arg(now)
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(true)
            }
        }
    }

    /// The user's live families (devices), most recently seen first.
    pub async fn list(&self, user_id: &str, now: i64) -> anyhow::Result<Vec<Session>> {
        let mut out = match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
                m.families.retain(|_, f| f.expires > now);
                m.families
                    .values()
                    .filter(|f| f.session.user_id == user_id)
                    .map(|f| f.session.clone())
                    .collect()
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let index = Self::key(prefix, &["user", user_id]);
                let ids: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&index)
                    .query_async(&mut conn)
                    .await?;
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
                        suspicious: self.events(&mut conn, prefix, &id).await?,
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
    pub async fn revoke(&self, user_id: &str, id: &str) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
                if m.families
                    .get(id)
                    .is_some_and(|f| f.session.user_id == user_id)
                {
                    m.families.remove(id);
                    return Ok(true);
                }
                Ok(false)
            }
            Backend::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let family = Self::key(prefix, &[id]);
                if !Self::owned_by(&mut conn, &family, user_id).await? {
                    return Ok(false);
                }
                let mut pipe = redis::pipe();
                pipe.del(&[
                    family,
                    Self::key(prefix, &[id, "used"]),
                    Self::key(prefix, &[id, "events"]),
                ])
                .ignore()
                .srem(Self::key(prefix, &["user", user_id]), id)
                .ignore();
                pipe.query_async::<()>(&mut conn).await?;
                Ok(true)
            }
        }
    }

    /// Ends every family of `user_id`; how many were alive.
    pub async fn revoke_all(&self, user_id: &str, now: i64) -> anyhow::Result<usize> {
        let mut n = 0;
        for s in self.list(user_id, now).await? {
            if self.revoke(user_id, &s.id).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Failed sign-ins of `subject` (a user name, or an address) in the current window.
    pub async fn failures(&self, subject: &str, now: i64) -> anyhow::Result<u32> {
        match &self.backend {
            Backend::Memory(m) => {
                let m = m.lock().map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
                Ok(m.failures
                    .get(subject)
                    .filter(|(_, until)| *until > now)
                    .map_or(0, |(n, _)| *n))
            }
            Backend::Redis { conn, prefix } => {
                let n: Option<u32> = redis::cmd("GET")
                    .arg(Self::failure_key(prefix, subject))
                    .query_async(&mut conn.clone())
                    .await?;
                Ok(n.unwrap_or(0))
            }
        }
    }

    fn failure_key(prefix: &str, subject: &str) -> String {
        format!("{prefix}:signin-failures:{}", digest(subject))
    }

    pub async fn add_failure(&self, subject: &str, now: i64) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
                m.failures.retain(|_, (_, until)| *until > now);
                let e = m
                    .failures
                    .entry(subject.into())
                    .or_insert((0, now + FAILURE_WINDOW_SECS));
                e.0 += 1;
            }
            Backend::Redis { conn, prefix } => {
                let key = Self::failure_key(prefix, subject);
                let mut pipe = redis::pipe();
                pipe.incr(&key, 1)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(FAILURE_WINDOW_SECS)
                    .arg("NX")
                    .ignore();
                pipe.query_async::<()>(&mut conn.clone()).await?;
            }
        }
        Ok(())
    }

    pub async fn clear_failures(&self, subject: &str) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().map_err(|_| anyhow::anyhow!("sessions poisoned"))?;
                m.failures.remove(subject);
            }
            Backend::Redis { conn, prefix } => {
                redis::cmd("DEL")
                    .arg(Self::failure_key(prefix, subject))
                    .query_async::<()>(&mut conn.clone())
                    .await?;
            }
        }
        Ok(())
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
        Sessions::connect(Some("redis://127.0.0.1:6379"), &prefix, ttl)
            .await
            .ok()
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
    async fn sign_in_failures_are_counted_per_subject() {
        for (name, s) in backends(3600).await {
            let who = crate::crypto::new_id("user-");
            assert_eq!(s.failures(&who, 100).await.unwrap(), 0);
            for _ in 0..3 {
                s.add_failure(&who, 100).await.unwrap();
            }
            assert_eq!(s.failures(&who, 101).await.unwrap(), 3, "{name}");
            s.clear_failures(&who).await.unwrap();
            assert_eq!(s.failures(&who, 102).await.unwrap(), 0, "{name}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(ip_range("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(ip_range("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(ip_range("not an ip"), "not an ip");
    }
}
