//! What answers say about targets and provider keys: one attribution of an answer to the target
//! and key it came from (both filter roles use it), and the failure cooldowns of
//! [`crate::cooldown`] shared with the other workers through [`Shared`] data: a failure is
//! written at once, and each worker reads every target's entry on its tick, so all workers skip
//! a failing target within a second.

use crate::cooldown::{self, Cooldowns, Entry};
use crate::route::Index;

use super::shared::Shared;

/// What one answer says about one target or provider key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub subject: Subject,
    /// The answer's status (0: none at all).
    pub status: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A target, by its cooldown identity ([`Index::target_key`]).
    Target(u64),
    /// A provider key: positions of its provider and of the key among the provider's keys.
    Key { provider: usize, key: usize },
}

/// The one attribution of an answer with `status` from `provider`'s `model`, sent with the key
/// at position `key`: the target's health, and the key's. With several keys, a rate limit is
/// the key's, not the target's.
pub fn attribute(
    index: &Index,
    provider: usize,
    model: &str,
    key: Option<usize>,
    status: u32,
) -> impl Iterator<Item = Observation> {
    let p = index.provider(provider);
    let target = (!(status == 429 && p.keys.len() > 1)).then(|| Observation {
        subject: Subject::Target(index.key_of(provider, model)),
        status,
    });
    let key = key.filter(|&k| k < p.keys.len()).map(|key| Observation {
        subject: Subject::Key { provider, key },
        status,
    });
    target.into_iter().chain(key)
}

/// Where a target's entry is kept in shared data.
fn shared_name(key: u64) -> String {
    format!("switchyard.cooldown.{key:016x}")
}

/// A provider key left out because the provider refused it: its id and for how long (seconds).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused<'i> {
    pub key_id: &'i str,
    pub status: u32,
    pub secs: u64,
}

/// Records what `o` says in this worker's `local` cooldowns at `now` and shares the change.
/// `retry_after` is the answer's `retry-after` in seconds, read only for a rate limit.
pub fn observe<'i>(
    index: &'i Index,
    local: &mut Cooldowns,
    shared: &impl Shared,
    o: Observation,
    retry_after: impl FnOnce() -> Option<u64>,
    now: u64,
) -> Option<Refused<'i>> {
    match o.subject {
        Subject::Target(key) => {
            if o.status == 0 {
                return None; // no answer at all (the client went away): says nothing of the target
            }
            let failed = cooldown::is_failure(o.status);
            share(local, shared, key, o.status, failed, None, retry_after, now);
            None
        }
        Subject::Key { provider, key } => {
            let key_id = index.provider(provider).keys.get(key)?.id.as_str();
            // Refused (401/403): left out for an hour; rate limited: like a failing target.
            let at_least = cooldown::key_failure(o.status);
            let identity = cooldown::key_identity(key_id);
            let failed = at_least.is_some();
            share(
                local,
                shared,
                identity,
                o.status,
                failed,
                at_least,
                retry_after,
                now,
            );
            match at_least {
                Some(secs @ 1..) => Some(Refused {
                    key_id,
                    status: o.status,
                    secs,
                }),
                _ => None,
            }
        }
    }
}

/// Records a failure (cooling down for the usual backoff, or longer if `at_least` or the
/// answer's `retry-after` asks) or a success, and shares the change with the other workers.
#[allow(clippy::too_many_arguments)]
fn share(
    local: &mut Cooldowns,
    shared: &impl Shared,
    key: u64,
    status: u32,
    failed: bool,
    at_least: Option<u64>,
    retry_after: impl FnOnce() -> Option<u64>,
    now: u64,
) {
    let entry = if failed {
        let asked = if status == 429 { retry_after() } else { None };
        Some(local.failed(key, now, asked.max(at_least)))
    } else if (1..400).contains(&status) && local.succeeded(key) {
        Some(Entry::default())
    } else {
        None
    };
    if let Some(entry) = entry {
        let _ = shared.set(&shared_name(key), entry.encode().as_bytes(), None);
        bump_generation(shared);
    }
}

/// Shared data counting the changes to any entry: a worker reads the entries again only when
/// it moved, so that a tick costs one read however many targets there are.
const GENERATION: &str = "switchyard.cooldown.generation";

/// Counts one change, after the entry is written (a worker that sees the new count sees the
/// entry). Compare-and-swap, so that two workers' changes count twice; after a few lost races
/// the count is written anyway: it still moves, which is all readers look for.
fn bump_generation(shared: &impl Shared) {
    for _ in 0..4 {
        let Ok((value, cas)) = shared.get(GENERATION) else {
            return;
        };
        let next = generation_after(value.as_deref());
        if shared.set(GENERATION, &next, cas).is_ok() {
            return;
        }
    }
    if let Ok((value, _)) = shared.get(GENERATION) {
        let _ = shared.set(GENERATION, &generation_after(value.as_deref()), None);
    }
}

fn generation_after(value: Option<&[u8]>) -> [u8; 8] {
    let n = value
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map_or(0, u64::from_le_bytes);
    n.wrapping_add(1).to_le_bytes()
}

/// Takes the other workers' entries for these targets when any changed since `seen` (the
/// generation this worker last read, updated here).
pub fn refresh(local: &mut Cooldowns, shared: &impl Shared, keys: &[u64], seen: &mut Vec<u8>) {
    let Ok((generation, _)) = shared.get(GENERATION) else {
        return;
    };
    // None yet (nothing ever changed) reads as generation 0.
    let generation = generation.unwrap_or_else(|| 0u64.to_le_bytes().to_vec());
    if generation == *seen {
        return;
    }
    for &key in keys {
        if let Ok((Some(bytes), _)) = shared.get(&shared_name(key)) {
            if let Some(entry) = Entry::decode(&bytes) {
                local.merge(key, entry);
            }
        }
    }
    *seen = generation;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::shared::Memory;
    use crate::exchange::tests::one_provider as index;

    #[test]
    fn a_failure_seen_by_one_worker_cools_the_target_for_all_until_it_expires() {
        let index = index(r#"{"id":"k1","secret":"s"}"#);
        let shared = Memory::at(100);
        let mut a = Cooldowns::default();
        let mut b = Cooldowns::default();
        let mut seen = Vec::new();
        let target = index.key_of(0, "up");
        for o in attribute(&index, 0, "up", Some(0), 503) {
            observe(&index, &mut a, &shared, o, || None, 100);
        }
        assert_eq!(a.until(target, 100), Some(105));
        refresh(&mut b, &shared, &[target], &mut seen);
        assert_eq!(
            b.until(target, 101),
            Some(105),
            "shared with the other worker"
        );
        assert_eq!(b.until(target, 105), None, "over at its end");
        // A success clears it everywhere.
        for o in attribute(&index, 0, "up", Some(0), 200) {
            observe(&index, &mut a, &shared, o, || None, 102);
        }
        refresh(&mut b, &shared, &[target], &mut seen);
        assert!(a.is_empty() && b.is_empty());
    }

    /// A tick reads one value unless an entry changed: a worker with a thousand targets does
    /// not read a thousand values four times a second.
    #[test]
    fn entries_are_read_again_only_after_a_change() {
        let index = index(r#"{"id":"k1","secret":"s"}"#);
        let shared = Memory::at(100);
        let target = index.key_of(0, "up");
        let (mut a, mut b, mut seen) = (Cooldowns::default(), Cooldowns::default(), Vec::new());
        refresh(&mut b, &shared, &[target], &mut seen);
        assert!(!seen.is_empty(), "read once");
        // Written behind the generation's back: not read.
        let cooling = Entry::decode(b"105 1 100").expect("an entry");
        shared
            .set(&shared_name(target), cooling.encode().as_bytes(), None)
            .unwrap();
        refresh(&mut b, &shared, &[target], &mut seen);
        assert_eq!(
            b.until(target, 101),
            None,
            "nothing changed as far as b knows"
        );
        // A change made the usual way moves the generation.
        for o in attribute(&index, 0, "up", Some(0), 503) {
            observe(&index, &mut a, &shared, o, || None, 100);
        }
        refresh(&mut b, &shared, &[target], &mut seen);
        assert!(b.until(target, 101).is_some(), "read after the change");
    }

    #[test]
    fn a_rate_limit_waits_as_long_as_the_provider_asks() {
        let index = index(r#"{"id":"k1","secret":"s"}"#);
        let shared = Memory::at(0);
        let mut local = Cooldowns::default();
        for o in attribute(&index, 0, "up", Some(0), 429) {
            observe(&index, &mut local, &shared, o, || Some(60), 10);
        }
        assert_eq!(local.until(index.key_of(0, "up"), 10), Some(70));
        assert_eq!(local.until(cooldown::key_identity("k1"), 10), Some(70));
        // Not read for anything else.
        let mut other = Cooldowns::default();
        for o in attribute(&index, 0, "up", Some(0), 503) {
            observe(&index, &mut other, &shared, o, || unreachable!(), 10);
        }
    }

    #[test]
    fn a_refused_key_is_left_out_and_told_and_an_unanswered_request_says_nothing() {
        let index = index(r#"{"id":"k1","secret":"s"},{"id":"k2","secret":"t"}"#);
        let shared = Memory::at(0);
        let mut local = Cooldowns::default();
        let told: Vec<_> = attribute(&index, 0, "up", Some(1), 401)
            .filter_map(|o| observe(&index, &mut local, &shared, o, || None, 10))
            .collect();
        assert_eq!(
            told,
            [Refused {
                key_id: "k2",
                status: 401,
                secs: cooldown::KEY_REFUSED
            }]
        );
        // With several keys a rate limit is the key's alone.
        let seen: Vec<_> = attribute(&index, 0, "up", Some(0), 429).collect();
        assert_eq!(
            seen,
            [Observation {
                subject: Subject::Key {
                    provider: 0,
                    key: 0
                },
                status: 429
            }]
        );
        let mut none = Cooldowns::default();
        for o in attribute(&index, 0, "up", None, 0) {
            observe(&index, &mut none, &shared, o, || None, 10);
        }
        assert!(none.is_empty());
    }
}
