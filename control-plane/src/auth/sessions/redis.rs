//! Sessions in Redis, shared by every control plane: a family is a hash (its generation, owner,
//! static facts and last use) and a list of its suspicious refreshes, each user has an index of
//! its families, and every key has the family's TTL. Rotation and replay detection are one Lua
//! script, so two uses of one token cannot both rotate. Redis is reached through a
//! [`RedisLink`]: while it is down, every call answers [`SessionError::Unavailable`] at once.

use std::collections::HashMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::device::{suspicious, Session, Suspicious, EVENTS_KEPT};
use super::store::{Rotation, SessionStore, Use};
use super::{Result, SessionError};
use crate::auth::attempts::Reserved;
use crate::redis_link::{RedisLink, Waits};

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

/// The families and attempt counters in Redis, keys under a prefix.
pub(super) struct RedisSessions {
    link: RedisLink,
    prefix: String,
}

impl RedisSessions {
    /// Checks the URL only: Redis is connected on first use.
    pub(super) fn open(url: &str, prefix: &str) -> Result<RedisSessions> {
        let link = RedisLink::open(url, Waits::SESSIONS, "sessions")
            .map_err(|e| SessionError::Internal(format!("the Redis URL: {e}")))?;
        Ok(RedisSessions {
            link,
            prefix: prefix.into(),
        })
    }

    /// A handle on the connection for one call.
    fn conn(&self) -> RedisLink {
        self.link.clone()
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = format!("{}:session", self.prefix);
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    fn attempts_key(&self, subject: &str) -> String {
        // Hashed: subjects hold names clients send, and keys should not.
        format!("{}:signin-attempts:{}", self.prefix, digest(subject))
    }

    async fn create(
        &self,
        session: &Session,
        ttl: i64,
        max_families: usize,
        now: i64,
    ) -> Result<()> {
        let meta = serde_json::to_string(&Meta {
            device: session.device.clone(),
            user_agent: session.user_agent.clone(),
            ip: session.ip.clone(),
            created_at: now,
        })?;
        let (id, user_id) = (session.id.as_str(), session.user_id.as_str());
        let family = self.key(&[id]);
        let index = self.key(&["user", user_id]);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &family,
                &[
                    ("user_id", user_id),
                    ("gen", "0"),
                    ("meta", &meta),
                    ("seen", &now.to_string()),
                    ("last_ip", &session.ip),
                    ("last_ua", &session.user_agent),
                ],
            )
            .ignore()
            .expire(&family, ttl)
            .ignore()
            .sadd(&index, id)
            .ignore()
            .expire(&index, ttl)
            .ignore();
        pipe.query_async::<()>(&mut self.conn()).await?;
        self.trim(user_id, id, max_families).await
    }

    /// The key of `user_id`'s index of families, and the ids in it (some may have ended
    /// since).
    async fn family_ids(
        &self,
        conn: &mut RedisLink,
        user_id: &str,
    ) -> Result<(String, Vec<String>)> {
        let index = self.key(&["user", user_id]);
        let ids = redis::cmd("SMEMBERS").arg(&index).query_async(conn).await?;
        Ok((index, ids))
    }

    /// Ends `user_id`'s families beyond the cap, least recently used first, never `keep` (the
    /// one just made); drops ended families from the user's index.
    async fn trim(&self, user_id: &str, keep: &str, max_families: usize) -> Result<()> {
        let mut conn = self.conn();
        let (index, ids) = self.family_ids(&mut conn, user_id).await?;
        if ids.len() <= max_families {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.key(&[id]), "seen");
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
        let over = (live.len() + 1).saturating_sub(max_families);
        for (_, id) in live.into_iter().take(over) {
            pipe.del(&[self.key(&[&id]), self.key(&[&id, "events"])])
                .ignore()
                .srem(&index, &id)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn rotate(&self, id: &str, used: Use<'_>) -> Result<Rotation> {
        let mut conn = self.conn();
        let events = self.key(&[id, "events"]);
        let reply: Vec<String> = redis::Script::new(ROTATE_LUA)
            .key(self.key(&[id]))
            .key(&events)
            .arg(used.presented)
            .arg(used.now)
            .arg(used.ip)
            .arg(used.user_agent)
            .arg(used.ttl)
            .arg(id)
            .arg(format!("{}:", self.key(&["user"])))
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
                    last_seen: used.now,
                    last_ip: used.ip.into(),
                    last_user_agent: used.user_agent.into(),
                    suspicious: Vec::new(),
                };
                let found = suspicious(&session, used.ip, used.user_agent, used.now);
                if !found.is_empty() {
                    let mut pipe = redis::pipe();
                    for e in &found {
                        pipe.lpush(&events, serde_json::to_string(e)?).ignore();
                    }
                    pipe.ltrim(&events, 0, EVENTS_KEPT as isize - 1)
                        .ignore()
                        .expire(&events, used.ttl)
                        .ignore();
                    pipe.query_async::<()>(&mut conn).await?;
                }
                session.suspicious = self.events(&mut conn, id).await?;
                Ok(Rotation::Rotated {
                    session: Box::new(session),
                    suspicious: found,
                })
            }
            Some("replay") if reply.len() == 2 => Ok(Rotation::Replayed {
                user_id: reply[1].clone(),
            }),
            _ => Ok(Rotation::Invalid),
        }
    }

    async fn events(&self, conn: &mut RedisLink, id: &str) -> Result<Vec<Suspicious>> {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(self.key(&[id, "events"]))
            .arg(0)
            .arg(EVENTS_KEPT as i64 - 1)
            .query_async(conn)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }

    async fn alive(&self, id: &str, user_id: &str, now: i64) -> Result<bool> {
        let alive: i64 = redis::Script::new(ALIVE_LUA)
            .key(self.key(&[id]))
            .arg(user_id)
            .arg(now)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(alive == 1)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<Session>> {
        let mut conn = self.conn();
        let (index, ids) = self.family_ids(&mut conn, user_id).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let fields: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(self.key(&[&id]))
                .query_async(&mut conn)
                .await?;
            let (Some(meta), Some(owner)) = (fields.get("meta"), fields.get("user_id")) else {
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
                suspicious: self.events(&mut conn, &id).await?,
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
        Ok(out)
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let family = self.key(&[id]);
        let owner: Option<String> = redis::cmd("HGET")
            .arg(&family)
            .arg("user_id")
            .query_async(&mut conn)
            .await?;
        if owner.as_deref() != Some(user_id) {
            return Ok(false);
        }
        let mut pipe = redis::pipe();
        pipe.del(&[family, self.key(&[id, "events"])])
            .ignore()
            .srem(self.key(&["user", user_id]), id)
            .ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(true)
    }

    async fn reserve_attempt(&self, subject: &str, window: i64) -> Result<Reserved> {
        let (count, retry_after): (u32, i64) = redis::Script::new(RESERVE_LUA)
            .key(self.attempts_key(subject))
            .arg(window)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Reserved { count, retry_after })
    }

    async fn give_back_attempt(&self, subject: &str) -> Result<()> {
        redis::Script::new(GIVE_BACK_LUA)
            .key(self.attempts_key(subject))
            .invoke_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn clear_attempts(&self, subject: &str) -> Result<()> {
        redis::cmd("DEL")
            .arg(self.attempts_key(subject))
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    #[cfg(test)]
    async fn stored_entries(&self, id: &str) -> usize {
        let mut conn = self.conn();
        let mut n = 0;
        for k in [self.key(&[id]), self.key(&[id, "events"])] {
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

impl SessionStore for RedisSessions {
    fn reachable(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.link.reachable())
    }

    fn create<'a>(
        &'a self,
        session: &'a Session,
        ttl: i64,
        max_families: usize,
        now: i64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(RedisSessions::create(self, session, ttl, max_families, now))
    }

    fn rotate<'a>(&'a self, id: &'a str, used: Use<'a>) -> BoxFuture<'a, Result<Rotation>> {
        Box::pin(RedisSessions::rotate(self, id, used))
    }

    fn alive<'a>(&'a self, id: &'a str, user_id: &'a str, now: i64) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisSessions::alive(self, id, user_id, now))
    }

    fn list<'a>(&'a self, user_id: &'a str, _now: i64) -> BoxFuture<'a, Result<Vec<Session>>> {
        Box::pin(RedisSessions::list(self, user_id))
    }

    fn revoke<'a>(&'a self, user_id: &'a str, id: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisSessions::revoke(self, user_id, id))
    }

    fn reserve_attempt<'a>(
        &'a self,
        subject: &'a str,
        _now: i64,
        window: i64,
    ) -> BoxFuture<'a, Result<Reserved>> {
        Box::pin(RedisSessions::reserve_attempt(self, subject, window))
    }

    fn give_back_attempt<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(RedisSessions::give_back_attempt(self, subject))
    }

    fn clear_attempts<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(RedisSessions::clear_attempts(self, subject))
    }

    #[cfg(test)]
    fn stored_entries<'a>(&'a self, id: &'a str) -> BoxFuture<'a, usize> {
        Box::pin(RedisSessions::stored_entries(self, id))
    }
}
