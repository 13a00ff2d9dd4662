//! Attempt counters over fixed windows, in memory and bounded: the sign-in throttle's store
//! when sessions are in memory, and the admin API's count of bad credentials per address.

use std::collections::HashMap;
use std::sync::Mutex;

/// Counters per subject (an address, a name and an address), each counting from its first
/// attempt until its window ends. Subjects are chosen by clients, so the map is capped: when
/// full, ended windows go first, then the window that ends soonest.
pub struct Attempts {
    counts: Mutex<HashMap<String, Count>>,
    cap: usize,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    n: u32,
    /// Unix seconds when the window ends.
    until: i64,
}

/// An attempt counted: how many the window holds with it, and seconds until the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub count: u32,
    pub retry_after: i64,
}

impl Attempts {
    pub fn new(cap: usize) -> Attempts {
        Attempts {
            counts: Mutex::default(),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Count>> {
        // A panic while holding the lock cannot leave a count half-written: use it as it is.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an attempt of `subject` at `now`; a new window lasts `window` seconds.
    pub fn reserve(&self, subject: &str, now: i64, window: i64) -> Reserved {
        let mut counts = self.lock();
        if let Some(c) = counts.get_mut(subject).filter(|c| c.until > now) {
            c.n = c.n.saturating_add(1);
            return Reserved {
                count: c.n,
                retry_after: c.until - now,
            };
        }
        if counts.len() >= self.cap && !counts.contains_key(subject) {
            counts.retain(|_, c| c.until > now);
            if counts.len() >= self.cap {
                // Linear, but only while the map is full of live windows (a flood from more
                // addresses than the cap); each entry cost its sender an attempt.
                let soonest = counts
                    .iter()
                    .min_by_key(|(_, c)| c.until)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    counts.remove(&k);
                }
            }
        }
        counts.insert(
            subject.to_owned(),
            Count {
                n: 1,
                until: now + window,
            },
        );
        Reserved {
            count: 1,
            retry_after: window,
        }
    }

    /// Attempts of `subject` in its current window.
    pub fn count(&self, subject: &str, now: i64) -> Reserved {
        match self.lock().get(subject).filter(|c| c.until > now) {
            Some(c) => Reserved {
                count: c.n,
                retry_after: c.until - now,
            },
            None => Reserved {
                count: 0,
                retry_after: 0,
            },
        }
    }

    /// Takes one attempt back (it did not count after all).
    pub fn give_back(&self, subject: &str) {
        if let Some(c) = self.lock().get_mut(subject) {
            c.n = c.n.saturating_sub(1);
        }
    }

    /// Forgets `subject`'s window.
    pub fn clear(&self, subject: &str) {
        self.lock().remove(subject);
    }

    #[cfg(test)]
    fn subjects(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_give_back_and_end() {
        let a = Attempts::new(10);
        assert_eq!(a.reserve("x", 100, 60).count, 1);
        assert_eq!(
            a.reserve("x", 130, 60),
            Reserved {
                count: 2,
                retry_after: 30
            }
        );
        a.give_back("x");
        assert_eq!(a.count("x", 131).count, 1);
        // The window ends 60 s after its first attempt, however many came since.
        assert_eq!(a.count("x", 160).count, 0);
        assert_eq!(a.reserve("x", 160, 60).count, 1);
        a.clear("x");
        assert_eq!(a.count("x", 161).count, 0);
        a.give_back("nobody");
    }

    #[test]
    fn the_map_is_capped_and_the_soonest_ending_window_goes_first() {
        let a = Attempts::new(3);
        a.reserve("old", 100, 60);
        a.reserve("mid", 110, 60);
        a.reserve("new", 120, 60);
        a.reserve("new", 121, 60);
        a.reserve("another", 125, 60);
        assert_eq!(a.subjects(), 3);
        assert_eq!(a.count("old", 126).count, 0, "evicted");
        assert_eq!(a.count("new", 126).count, 2, "kept");
        // Ended windows make room before any live one is evicted.
        a.reserve("later", 175, 60);
        assert_eq!(a.count("new", 176).count, 2);
        assert_eq!(a.count("another", 176).count, 1);
        for i in 0..1_000 {
            a.reserve(&format!("flood{i}"), 200, 60);
        }
        assert_eq!(a.subjects(), 3);
    }
}
