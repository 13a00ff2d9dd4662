//! What the workers of one Envoy share, behind [`Shared`]: a process-wide map with the same
//! compare-and-swap semantics as proxy-wasm's shared data, the clock, and each worker's
//! cooldowns (kept in step with the other workers' by [`switchyard_core::exchange::health`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use switchyard_core::cooldown::Cooldowns;
use switchyard_core::exchange::health::{self, Observation};
use switchyard_core::exchange::shared::{SetError, Shared, Unavailable};
use switchyard_core::route::Index;

use crate::ffi::{self, HeaderMap, Stream};

/// How often a worker takes the other workers' cooldowns.
const REFRESH_NS: u64 = 250_000_000;

/// One value and its version (never 0 once written).
type Entry = (Vec<u8>, u32);

fn store() -> &'static Mutex<HashMap<String, Entry>> {
    static STORE: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    STORE.get_or_init(Mutex::default)
}

/// The process's shared data and clock.
pub(crate) struct Host;

impl Shared for Host {
    fn get(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Unavailable> {
        let store = store().lock().map_err(|_| Unavailable)?;
        Ok(match store.get(name) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, name: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        let mut store = store().lock().map_err(|_| SetError::Other)?;
        let current = store.get(name).map(|(_, c)| *c);
        // As proxy-wasm's: a version of 0 (or none) writes whatever is there.
        if let Some(expected @ 1..) = cas {
            if current.is_some_and(|c| c != expected) {
                return Err(SetError::CasMismatch);
            }
        }
        let next = current.map_or(1, |c| c.wrapping_add(1).max(1));
        match store.get_mut(name) {
            Some(entry) => {
                entry.0.clear();
                entry.0.extend_from_slice(value);
                entry.1 = next;
            }
            None => {
                store.insert(name.to_owned(), (value.to_vec(), next));
            }
        }
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

thread_local! {
    // Envoy runs each stream's callbacks on one worker thread: these are that worker's.
    static COOLDOWNS: RefCell<Cooldowns> = RefCell::default();
    /// The shared cooldowns' generation this worker last read, and when.
    static SEEN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static REFRESHED: Cell<u64> = const { Cell::new(0) };
}

/// Reads this worker's cooldowns, first taking the other workers' when they are due.
pub(crate) fn cooldowns<R>(keys: &[u64], now_ns: u64, f: impl FnOnce(&Cooldowns) -> R) -> R {
    if now_ns.saturating_sub(REFRESHED.get()) >= REFRESH_NS {
        REFRESHED.set(now_ns);
        COOLDOWNS.with(|c| {
            SEEN.with(|seen| {
                health::refresh(&mut c.borrow_mut(), &Host, keys, &mut seen.borrow_mut())
            })
        });
    }
    COOLDOWNS.with(|c| f(&c.borrow()))
}

/// Records what answers told (see [`health::observe`]) at `now` (Unix seconds) and shares it
/// with the other workers; `stream` gives the answer's `retry-after`.
pub(crate) fn observe(index: &Index, observations: &[Observation], now: u64, stream: Stream) {
    if observations.is_empty() {
        return;
    }
    let retry_after = || {
        stream
            .header(HeaderMap::Response, "retry-after")
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<u64>().ok())
    };
    COOLDOWNS.with(|c| {
        let mut local = c.borrow_mut();
        for &o in observations {
            if let Some(r) = health::observe(index, &mut local, &Host, o, retry_after, now) {
                ffi::log(
                    ffi::LOG_WARN,
                    &format!(
                        "switchyard: provider key {} refused ({}): left out for {} s",
                        r.key_id, r.status, r.secs
                    ),
                );
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_version_is_refused_and_a_fresh_one_written() {
        let name = "shared-test-cas";
        Host.set(name, b"a", None).unwrap();
        let (value, cas) = Host.get(name).unwrap();
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        Host.set(name, b"b", cas).unwrap();
        assert!(matches!(
            Host.set(name, b"c", cas),
            Err(SetError::CasMismatch)
        ));
        let (value, _) = Host.get(name).unwrap();
        assert_eq!(value.as_deref(), Some(&b"b"[..]));
    }
}
