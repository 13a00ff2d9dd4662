//! Sessions in this process's memory: one control plane, lost on restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::future::{ready, BoxFuture};

use super::device::{suspicious, Session, EVENTS_KEPT};
use super::store::{Rotation, SessionStore, Use};
use super::Result;
use crate::auth::attempts::{Attempts, Reserved};

/// Most attempt windows kept in memory (subjects are names and addresses clients choose).
const MEMORY_ATTEMPT_SUBJECTS: usize = 100_000;

/// The families and attempt counters of this process.
pub(super) struct MemorySessions {
    families: Mutex<HashMap<String, Family>>,
    attempts: Attempts,
}

struct Family {
    generation: u64,
    session: Session,
    expires: i64,
}

impl MemorySessions {
    pub(super) fn new() -> MemorySessions {
        MemorySessions {
            families: Mutex::default(),
            attempts: Attempts::new(MEMORY_ATTEMPT_SUBJECTS),
        }
    }

    fn families(&self) -> MutexGuard<'_, HashMap<String, Family>> {
        // Nothing panics while a lock is held: a poisoned lock's data is whole.
        self.families.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn create(&self, session: &Session, ttl: i64, max_families: usize, now: i64) {
        let mut families = self.families();
        families.retain(|_, f| f.expires > now);
        let mut mine: Vec<(i64, String)> = families
            .values()
            .filter(|f| f.session.user_id == session.user_id)
            .map(|f| (f.session.last_seen, f.session.id.clone()))
            .collect();
        mine.sort();
        let over = (mine.len() + 1).saturating_sub(max_families);
        for (_, old) in mine.into_iter().take(over) {
            families.remove(&old);
        }
        families.insert(
            session.id.clone(),
            Family {
                generation: 0,
                session: session.clone(),
                expires: now + ttl,
            },
        );
    }

    fn rotate(&self, id: &str, used: &Use<'_>) -> Rotation {
        let mut families = self.families();
        let Some(f) = families.get_mut(id).filter(|f| f.expires > used.now) else {
            families.remove(id);
            return Rotation::Invalid;
        };
        if used.presented == f.generation {
            f.generation = used.presented.saturating_add(1);
            f.expires = used.now + used.ttl;
            let events = suspicious(&f.session, used.ip, used.user_agent, used.now);
            let s = &mut f.session;
            s.last_seen = used.now;
            s.last_ip = used.ip.into();
            s.last_user_agent = used.user_agent.into();
            for e in &events {
                s.suspicious.insert(0, e.clone());
            }
            s.suspicious.truncate(EVENTS_KEPT);
            return Rotation::Rotated {
                session: Box::new(s.clone()),
                suspicious: events,
            };
        }
        if used.presented < f.generation {
            let user_id = f.session.user_id.clone();
            families.remove(id);
            return Rotation::Replayed { user_id };
        }
        Rotation::Invalid
    }

    fn alive(&self, id: &str, user_id: &str, now: i64) -> bool {
        match self.families().get_mut(id) {
            Some(f) if f.expires > now && f.session.user_id == user_id => {
                f.session.last_seen = now;
                true
            }
            _ => false,
        }
    }

    fn list(&self, user_id: &str, now: i64) -> Vec<Session> {
        let mut families = self.families();
        families.retain(|_, f| f.expires > now);
        families
            .values()
            .filter(|f| f.session.user_id == user_id)
            .map(|f| f.session.clone())
            .collect()
    }

    fn revoke(&self, user_id: &str, id: &str) -> bool {
        let mut families = self.families();
        if families
            .get(id)
            .is_some_and(|f| f.session.user_id == user_id)
        {
            families.remove(id);
            return true;
        }
        false
    }
}

/// An answer at once.
fn at_once<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(ready(value))
}

impl SessionStore for MemorySessions {
    fn reachable(&self) -> BoxFuture<'_, bool> {
        at_once(true)
    }

    fn create<'a>(
        &'a self,
        session: &'a Session,
        ttl: i64,
        max_families: usize,
        at: i64,
    ) -> BoxFuture<'a, Result<()>> {
        MemorySessions::create(self, session, ttl, max_families, at);
        at_once(Ok(()))
    }

    fn rotate<'a>(&'a self, id: &'a str, used: Use<'a>) -> BoxFuture<'a, Result<Rotation>> {
        at_once(Ok(MemorySessions::rotate(self, id, &used)))
    }

    fn alive<'a>(&'a self, id: &'a str, user_id: &'a str, at: i64) -> BoxFuture<'a, Result<bool>> {
        at_once(Ok(MemorySessions::alive(self, id, user_id, at)))
    }

    fn list<'a>(&'a self, user_id: &'a str, at: i64) -> BoxFuture<'a, Result<Vec<Session>>> {
        at_once(Ok(MemorySessions::list(self, user_id, at)))
    }

    fn revoke<'a>(&'a self, user_id: &'a str, id: &'a str) -> BoxFuture<'a, Result<bool>> {
        at_once(Ok(MemorySessions::revoke(self, user_id, id)))
    }

    fn reserve_attempt<'a>(
        &'a self,
        subject: &'a str,
        at: i64,
        window: i64,
    ) -> BoxFuture<'a, Result<Reserved>> {
        at_once(Ok(self.attempts.reserve(subject, at, window)))
    }

    fn give_back_attempt<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<()>> {
        self.attempts.give_back(subject);
        at_once(Ok(()))
    }

    fn clear_attempts<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<()>> {
        self.attempts.clear(subject);
        at_once(Ok(()))
    }

    #[cfg(test)]
    fn stored_entries<'a>(&'a self, id: &'a str) -> BoxFuture<'a, usize> {
        // The generation, the session, the expiry; events are capped.
        at_once(
            self.families()
                .get(id)
                .map_or(0, |f| 3 + f.session.suspicious.len()),
        )
    }
}
