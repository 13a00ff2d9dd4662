//! Pure failure cooldowns: a target (provider and model) that fails is skipped for a while, the
//! while doubling with each failure in a row (5 s, 10 s, ... up to 5 minutes, or longer when the
//! provider's `retry-after` says so) and ending at its first success. The host keeps one
//! [`Cooldowns`] per worker and shares entries with the other workers through proxy-wasm shared
//! data (see [`crate::exchange::health`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// The first cooldown, in seconds; each further failure in a row doubles it.
pub const FIRST: u64 = 5;
/// The longest cooldown a run of failures earns (a `retry-after` may ask for more).
pub const LONGEST: u64 = 300;

/// One target's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entry {
    /// Unix seconds until which the target is skipped.
    pub until: u64,
    /// Failures in a row.
    pub strikes: u32,
    /// Unix seconds of the latest failure.
    pub at: u64,
}

impl Entry {
    /// `"until strikes at"`, the form shared between workers.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.until, self.strikes, self.at)
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        Some(Entry {
            until: parts.next()?.parse().ok()?,
            strikes: parts.next()?.parse().ok()?,
            // Written by a filter from before `at` existed: unknown, as old as can be.
            at: parts.next().map_or(Some(0), |a| a.parse().ok())?,
        })
    }
}

/// Whether a response status counts against the target: server errors (Envoy's own 502/503/504
/// for connect failures, resets and timeouts included) and rate limits. Client errors do not.
pub fn is_failure(status: u32) -> bool {
    status >= 500 || status == 429
}

/// How long a provider key that the provider refused (401, 403) is left out: the key is wrong
/// or revoked, and only an admin can mend that (a new configuration clears it).
pub const KEY_REFUSED: u64 = 3600;

/// What a response says about the provider key that was sent: `Some(seconds)` to leave it out
/// for at least that long (refused: [`KEY_REFUSED`]; rate limited: the usual backoff, or the
/// provider's `retry-after`), `None` when it says nothing against the key.
pub fn key_failure(status: u32) -> Option<u64> {
    match status {
        401 | 403 => Some(KEY_REFUSED),
        429 => Some(0),
        _ => None,
    }
}

/// A provider key's identity for cooldowns (distinct from every target's).
pub fn key_identity(key_id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "provider-key".hash(&mut h);
    key_id.hash(&mut h);
    // A third part: no (provider, model) pair hashes the same way.
    0u8.hash(&mut h);
    h.finish()
}

/// A per-second request window shared by all workers: `second` and requests counted in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub second: u64,
    pub count: u64,
}

impl Window {
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.second.to_le_bytes());
        out[8..].copy_from_slice(&self.count.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Window {
        let word = |r: std::ops::Range<usize>| {
            bytes
                .get(r)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        Window {
            second: word(0..8),
            count: word(8..16),
        }
    }

    /// The window after admitting one more request at `now`, or `None` when `qps` are spent.
    pub fn admit(self, now: u64, qps: u32) -> Option<Window> {
        if self.second != now {
            return (qps > 0).then_some(Window {
                second: now,
                count: 1,
            });
        }
        (self.count < u64::from(qps)).then_some(Window {
            second: now,
            count: self.count + 1,
        })
    }
}

/// The cooldown after `strikes` failures in a row.
pub fn backoff(strikes: u32) -> u64 {
    let doublings = strikes.saturating_sub(1).min(16);
    (FIRST << doublings).min(LONGEST)
}

/// A target's identity across configurations and workers.
pub fn target_key(provider: &str, model: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    provider.hash(&mut h);
    model.hash(&mut h);
    h.finish()
}

/// The cooldowns one worker knows.
#[derive(Debug, Default)]
pub struct Cooldowns {
    entries: HashMap<u64, Entry>,
}

impl Cooldowns {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Until when the target is skipped, if it is (at `now`).
    pub fn until(&self, key: u64, now: u64) -> Option<u64> {
        self.until_since(key, now, 0)
    }

    /// [`Cooldowns::until`], ignoring a cooldown whose latest failure came before `since` (the
    /// target has been seen healthy after it: a successful probe).
    pub fn until_since(&self, key: u64, now: u64, since: u64) -> Option<u64> {
        self.entries
            .get(&key)
            .filter(|e| e.at >= since)
            .map(|e| e.until)
            .filter(|&until| until > now)
    }

    /// Records a failure at `now`; returns the new entry. A run of failures that ended long
    /// ago (no failure for [`LONGEST`] after its last cooldown) does not count any more.
    pub fn failed(&mut self, key: u64, now: u64, retry_after: Option<u64>) -> Entry {
        let e = self.entries.entry(key).or_default();
        if now > e.until.saturating_add(LONGEST) {
            e.strikes = 0;
        }
        e.strikes = e.strikes.saturating_add(1);
        let wait = backoff(e.strikes).max(retry_after.unwrap_or(0));
        e.until = now + wait;
        e.at = now;
        *e
    }

    /// Records a success; returns whether there was a record to clear.
    pub fn succeeded(&mut self, key: u64) -> bool {
        self.entries.remove(&key).is_some()
    }

    /// Takes another worker's view of a target: the later cooldown wins; a cleared one
    /// (`strikes` 0) clears this worker's.
    pub fn merge(&mut self, key: u64, other: Entry) {
        if other.strikes == 0 {
            self.entries.remove(&key);
            return;
        }
        let e = self.entries.entry(key).or_default();
        if other.until > e.until {
            *e = other;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldowns_grow_with_failures_and_end_on_success() {
        let mut c = Cooldowns::default();
        let k = target_key("dead", "m");
        assert_eq!(
            c.failed(k, 100, None),
            Entry {
                until: 105,
                strikes: 1,
                at: 100
            }
        );
        assert_eq!(c.until(k, 104), Some(105));
        assert_eq!(c.until(k, 105), None, "over at its end");
        assert_eq!(c.failed(k, 200, None).until, 210);
        assert_eq!(c.failed(k, 300, None).until, 320);
        // A rate limit that asks for longer gets longer.
        assert_eq!(c.failed(k, 400, Some(600)).until, 1000);
        assert!(c.succeeded(k));
        assert_eq!(c.until(k, 400), None);
        // Old failures are forgiven: a failure long after the last cooldown starts afresh.
        c.failed(k, 2000, None);
        assert_eq!(
            c.failed(k, 5000, None),
            Entry {
                until: 5005,
                strikes: 1,
                at: 5000
            }
        );
        assert_eq!(backoff(50), LONGEST);
    }

    #[test]
    fn workers_share_entries() {
        let k = target_key("p", "m");
        let mut a = Cooldowns::default();
        let e = a.failed(k, 10, None);
        let shared = Entry::decode(e.encode().as_bytes()).expect("decodes");
        let mut b = Cooldowns::default();
        b.merge(k, shared);
        assert_eq!(b.until(k, 11), Some(15));
        b.merge(
            k,
            Entry {
                until: 0,
                strikes: 0,
                at: 0,
            },
        );
        assert!(b.is_empty());
        assert_eq!(Entry::decode(b"garbage"), None);
        assert_eq!(
            Entry::decode(b"15 1"),
            Some(Entry {
                until: 15,
                strikes: 1,
                at: 0
            }),
            "an older filter's entry"
        );
        assert_ne!(target_key("a", "bc"), target_key("ab", "c"));
    }

    #[test]
    fn failures_are_server_errors_and_rate_limits() {
        assert!(is_failure(500) && is_failure(503) && is_failure(429));
        assert!(!is_failure(400) && !is_failure(404) && !is_failure(200));
    }

    #[test]
    fn keys_fail_on_refusal_and_rate_limits_only() {
        assert_eq!(key_failure(401), Some(KEY_REFUSED));
        assert_eq!(key_failure(403), Some(KEY_REFUSED));
        assert_eq!(key_failure(429), Some(0));
        assert_eq!(key_failure(500), None);
        assert_eq!(key_failure(200), None);
        assert_ne!(key_identity("k1"), key_identity("k2"));
        assert_ne!(key_identity("m"), target_key("provider-key", "m"));
    }

    #[test]
    fn a_window_admits_qps_requests_per_second() {
        let mut w = Window::default();
        for _ in 0..3 {
            w = w.admit(100, 3).expect("within the limit");
        }
        assert_eq!(w.admit(100, 3), None, "the fourth in the same second");
        let next = w.admit(101, 3).expect("a new second");
        assert_eq!(
            next,
            Window {
                second: 101,
                count: 1
            }
        );
        assert_eq!(Window::decode(&next.encode()), next);
        assert_eq!(Window::decode(b"short"), Window::default());
        assert_eq!(Window::default().admit(5, 0), None, "qps 0 admits nothing");
    }

    #[test]
    fn a_target_seen_healthy_after_its_failure_is_not_cooling() {
        let mut c = Cooldowns::default();
        let k = target_key("p", "m");
        c.failed(k, 100, Some(300));
        assert_eq!(c.until_since(k, 110, 90), Some(400));
        assert_eq!(c.until_since(k, 110, 101), None, "a probe passed at 101");
    }
}
