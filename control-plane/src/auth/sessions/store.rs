//! Where sessions live: one trait, [`SessionStore`], with two implementations side by side (in
//! memory for one control plane, in Redis shared by every control plane). Each operation is
//! atomic for the family it touches: of two concurrent uses of one token, one rotates and the
//! other is a replay.

use futures::future::BoxFuture;

use super::device::{Session, Suspicious};
use super::Result;
use crate::auth::attempts::Reserved;

/// A refresh token's use as the store sees it.
pub(super) struct Use<'a> {
    /// The generation the token names (below `u64::MAX`).
    pub presented: u64,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub now: i64,
    /// Seconds the family lives after this use.
    pub ttl: i64,
}

/// What a use did to the family.
pub(super) enum Rotation {
    /// The generation was current: the family moved to the next one.
    Rotated {
        session: Box<Session>,
        /// How this use differs from the sign-in (also recorded on the family).
        suspicious: Vec<Suspicious>,
    },
    /// An earlier generation: two parties hold the family, which is revoked.
    Replayed { user_id: String },
    /// Unknown, expired, revoked, or a generation never issued.
    Invalid,
}

/// The session store: refresh token families (one per signed-in device) and sign-in attempt
/// counters. Chosen once, when [`super::Sessions`] is made.
pub(super) trait SessionStore: Send + Sync {
    /// Whether the store answers now (health checks, start-up).
    fn reachable(&self) -> BoxFuture<'_, bool>;

    /// Called at sign-in: stores `session` as a new family at generation 0, living `ttl`
    /// seconds; the user's families beyond `max_families` end, least recently used first.
    fn create<'a>(
        &'a self,
        session: &'a Session,
        ttl: i64,
        max_families: usize,
        now: i64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Called when an authentic refresh token of family `id` is used: rotation, or replay
    /// detection (see [`Rotation`]).
    fn rotate<'a>(&'a self, id: &'a str, used: Use<'a>) -> BoxFuture<'a, Result<Rotation>>;

    /// Called on every admin request with an access token: whether family `id` of `user_id`
    /// is alive; marks it seen.
    fn alive<'a>(&'a self, id: &'a str, user_id: &'a str, now: i64) -> BoxFuture<'a, Result<bool>>;

    /// The user's live families, in no particular order.
    fn list<'a>(&'a self, user_id: &'a str, now: i64) -> BoxFuture<'a, Result<Vec<Session>>>;

    /// Ends family `id` if it is `user_id`'s; whether it was.
    fn revoke<'a>(&'a self, user_id: &'a str, id: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Counts a sign-in attempt of `subject`; a new window lasts `window` seconds.
    fn reserve_attempt<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        window: i64,
    ) -> BoxFuture<'a, Result<Reserved>>;

    /// Takes one attempt of `subject` back, never below zero.
    fn give_back_attempt<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Forgets `subject`'s attempts.
    fn clear_attempts<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<()>>;

    /// How many entries the store holds for family `id` (fields, list items): what must not
    /// grow with the family's age.
    #[cfg(test)]
    fn stored_entries<'a>(&'a self, id: &'a str) -> BoxFuture<'a, usize>;
}
