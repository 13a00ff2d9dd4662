//! proxy-wasm shared data and the host's clock behind [`Shared`], and this worker's cooldowns
//! (kept in step with the other workers' by [`switchyard_core::exchange::health`]).

use std::cell::RefCell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

use switchyard_core::cooldown::Cooldowns;
use switchyard_core::exchange::health::{self, Observation};
use switchyard_core::exchange::shared::{SetError, Shared, Unavailable};
use switchyard_core::route::Index;

/// Envoy's shared data (one store for every worker of the Envoy) and clock.
pub(crate) struct Host;

impl Shared for Host {
    fn get(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Unavailable> {
        hostcalls::get_shared_data(name).map_err(|_| Unavailable)
    }

    fn set(&self, name: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        hostcalls::set_shared_data(name, Some(value), cas).map_err(|e| match e {
            Status::CasMismatch => SetError::CasMismatch,
            _ => SetError::Other,
        })
    }

    fn now_ns(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

thread_local! {
    // One VM per worker thread: these are that worker's.
    static COOLDOWNS: RefCell<Cooldowns> = RefCell::default();
    /// The shared cooldowns' generation this worker last read.
    static SEEN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads this worker's cooldowns.
pub(crate) fn cooldowns<R>(f: impl FnOnce(&Cooldowns) -> R) -> R {
    COOLDOWNS.with(|c| f(&c.borrow()))
}

/// Records what answers told (see [`health::observe`]) at `now` (Unix seconds, read by the
/// caller: each clock reading is a host call) and shares it with the other workers.
pub(crate) fn observe(index: &Index, observations: &[Observation], now: u64) {
    if observations.is_empty() {
        return;
    }
    COOLDOWNS.with(|c| {
        let mut local = c.borrow_mut();
        for &o in observations {
            let refused = health::observe(index, &mut local, &Host, o, retry_after, now);
            if let Some(r) = refused {
                log::warn!(
                    "switchyard: provider key {} refused ({}): left out for {} s",
                    r.key_id,
                    r.status,
                    r.secs
                );
            }
        }
    });
}

/// Takes the other workers' cooldowns for these targets.
pub(crate) fn refresh(keys: &[u64]) {
    COOLDOWNS.with(|c| {
        SEEN.with(|seen| health::refresh(&mut c.borrow_mut(), &Host, keys, &mut seen.borrow_mut()))
    });
}

/// The response's `retry-after` in seconds.
fn retry_after() -> Option<u64> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, "retry-after")
        .ok()
        .flatten()
        .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<u64>().ok())
}
