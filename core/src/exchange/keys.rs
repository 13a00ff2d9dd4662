//! Provider keys for one attempt: in weighted turn, skipping keys in cooldown (refused or rate
//! limited) unless all are, and keys whose requests-per-second limit is spent in this second,
//! counted across all workers in [`Shared`] data (compare-and-swap: exact).

use crate::config::{Provider, ProviderKey};
use crate::cooldown::{self, Cooldowns, Window};
use crate::error::FilterError;
use crate::route::Index;

use super::shared::{SetError, Shared};

/// Why no key could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoKey {
    /// Every key's QPS limit is spent for this second.
    Saturated,
    /// The provider has no key at all.
    Missing,
}

impl NoKey {
    pub fn error(self, provider: &Provider, model: &str) -> FilterError {
        match self {
            NoKey::Saturated => FilterError::keys_saturated(model),
            NoKey::Missing => FilterError::no_provider_key(&provider.name),
        }
    }
}

/// Where a key's window is kept in shared data.
fn window_name(key: &ProviderKey) -> String {
    format!("switchyard.qps.{}", key.id)
}

/// The key for one request to `provider` at `now` (Unix seconds).
pub fn pick<'a>(
    index: &Index,
    provider: &'a Provider,
    cooldowns: &Cooldowns,
    shared: &impl Shared,
    now: u64,
) -> Result<&'a ProviderKey, NoKey> {
    let candidates = index.key_candidates(provider);
    let cooling = |k: &ProviderKey| {
        !cooldowns.is_empty()
            && cooldowns
                .until(cooldown::key_identity(&k.id), now)
                .is_some()
    };
    let mut saturated = false;
    for pass_cooling in [false, true] {
        for key in candidates.clone().filter(|k| cooling(k) == pass_cooling) {
            match key.qps {
                None => return Ok(key),
                Some(qps) if admit(shared, key, qps, now) => return Ok(key),
                Some(_) => saturated = true,
            }
        }
    }
    Err(if saturated {
        NoKey::Saturated
    } else {
        NoKey::Missing
    })
}

/// Counts one request against `key`'s window for `now`, if its limit allows.
fn admit(shared: &impl Shared, key: &ProviderKey, qps: u32, now: u64) -> bool {
    let name = window_name(key);
    for _ in 0..32 {
        let Ok((bytes, cas)) = shared.get(&name) else {
            return true; // no shared data: fail open rather than refuse everything
        };
        let window = bytes.map_or_else(Window::default, |b| Window::decode(&b));
        let Some(next) = window.admit(now, qps) else {
            return false;
        };
        match shared.set(&name, &next.encode(), cas) {
            Ok(()) => return true,
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Other) => return true,
        }
    }
    false
}

/// Creates each limited key's window once, so that every later write is a compare-and-swap
/// (a write to a missing entry is unconditional).
pub fn prepare_windows(index: &Index, shared: &impl Shared) {
    for key in index.all_keys().filter(|k| k.qps.is_some()) {
        let name = window_name(key);
        if let Ok((None, _)) = shared.get(&name) {
            let _ = shared.set(&name, &Window::default().encode(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::shared::Memory;
    use crate::exchange::tests::one_provider;

    fn index(qps: &str) -> Index {
        one_provider(&format!(r#"{{"id":"k1","secret":"s1"{qps}}}"#))
    }

    #[test]
    fn a_limited_key_is_admitted_up_to_its_qps_and_again_in_the_next_second() {
        let index = index(r#","qps":2"#);
        let shared = Memory::at(100);
        prepare_windows(&index, &shared);
        let provider = index.provider(0);
        let none = Cooldowns::default();
        for _ in 0..2 {
            assert_eq!(
                pick(&index, provider, &none, &shared, 100).unwrap().id,
                "k1"
            );
        }
        assert_eq!(
            pick(&index, provider, &none, &shared, 100).unwrap_err(),
            NoKey::Saturated
        );
        assert_eq!(
            pick(&index, provider, &none, &shared, 101).unwrap().id,
            "k1",
            "a new second"
        );
    }

    #[test]
    fn a_write_by_another_worker_in_between_is_counted_and_retried() {
        let index = index(r#","qps":2"#);
        let shared = Memory::at(100);
        prepare_windows(&index, &shared);
        let provider = index.provider(0);
        let none = Cooldowns::default();
        // Another worker admits one request between this worker's read and its write: the
        // compare-and-swap fails, the retry reads that request and admits this one as the second.
        let other = Window {
            second: 100,
            count: 1,
        };
        shared.interleave("switchyard.qps.k1", &other.encode());
        assert!(pick(&index, provider, &none, &shared, 100).is_ok());
        let window = Window::decode(&shared.value("switchyard.qps.k1").unwrap());
        assert_eq!(window.count, 2, "both workers' requests counted");
        assert_eq!(
            pick(&index, provider, &none, &shared, 100).unwrap_err(),
            NoKey::Saturated
        );
    }

    #[test]
    fn a_key_in_cooldown_is_used_only_when_every_key_is() {
        let index = one_provider(r#"{"id":"k1","secret":"s1"},{"id":"k2","secret":"s2"}"#);
        let shared = Memory::at(100);
        let provider = index.provider(0);
        let mut cooling = Cooldowns::default();
        cooling.failed(cooldown::key_identity("k1"), 100, Some(3600));
        for _ in 0..4 {
            assert_eq!(
                pick(&index, provider, &cooling, &shared, 100).unwrap().id,
                "k2"
            );
        }
        cooling.failed(cooldown::key_identity("k2"), 100, Some(3600));
        assert!(pick(&index, provider, &cooling, &shared, 100).is_ok());
        let unlimited = self::index("");
        assert!(pick(&unlimited, unlimited.provider(0), &cooling, &shared, 100).is_ok());
    }
}
