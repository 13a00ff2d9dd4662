//! What every worker of one Envoy shares, as the exchange sees it: a key-value store with
//! compare-and-swap (proxy-wasm shared data in the filter, [`Memory`] in tests) and the clock.

/// Shared data and the clock. Implemented by the host over proxy-wasm's shared data; by
/// [`Memory`] in tests, so that per-key QPS windows and shared cooldowns run natively.
pub trait Shared {
    /// The value stored under `name` (if any) and the token to compare-and-swap it with.
    /// `Err` when the host keeps no shared data at all.
    fn get(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Unavailable>;

    /// Stores `value` under `name`; with `cas`, only if nobody wrote it since the read that
    /// returned that token.
    fn set(&self, name: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;

    /// The host's clock in Unix nanoseconds (0 if it cannot be read).
    fn now_ns(&self) -> u64;

    /// The host's clock in Unix seconds.
    fn now_secs(&self) -> u64 {
        self.now_ns() / 1_000_000_000
    }
}

/// The host keeps no shared data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Why a write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Another worker wrote the value since it was read.
    CasMismatch,
    /// Any other refusal.
    Other,
}

#[cfg(test)]
pub use memory::Memory;

#[cfg(test)]
mod memory {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use super::{SetError, Shared, Unavailable};

    /// An in-memory [`Shared`]: values with a version each, a settable clock, and a write
    /// another worker makes between this worker's read and its write.
    #[derive(Default)]
    pub struct Memory {
        values: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        now_ns: Cell<u64>,
        /// Written right after the next read of its name (another worker got there first).
        interleaved: RefCell<Option<(String, Vec<u8>)>>,
    }

    impl Memory {
        pub fn at(secs: u64) -> Memory {
            let m = Memory::default();
            m.set_secs(secs);
            m
        }

        pub fn set_secs(&self, secs: u64) {
            self.now_ns.set(secs * 1_000_000_000);
        }

        /// Another worker writes `value` under `name` right after this worker's next read.
        pub fn interleave(&self, name: &str, value: &[u8]) {
            *self.interleaved.borrow_mut() = Some((name.to_owned(), value.to_vec()));
        }

        pub fn value(&self, name: &str) -> Option<Vec<u8>> {
            self.values.borrow().get(name).map(|(v, _)| v.clone())
        }

        fn write(&self, name: &str, value: &[u8]) {
            let mut values = self.values.borrow_mut();
            let version = values.get(name).map_or(1, |(_, v)| v + 1);
            values.insert(name.to_owned(), (value.to_vec(), version));
        }
    }

    impl Shared for Memory {
        fn get(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Unavailable> {
            let read = self.values.borrow().get(name).cloned();
            let other = self.interleaved.borrow_mut().take();
            match other {
                Some((n, v)) if n == name => self.write(&n, &v),
                other => *self.interleaved.borrow_mut() = other,
            }
            Ok(match read {
                Some((value, version)) => (Some(value), Some(version)),
                None => (None, None),
            })
        }

        fn set(&self, name: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
            let current = self.values.borrow().get(name).map(|(_, v)| *v);
            if let (Some(cas), Some(current)) = (cas, current) {
                if cas != current {
                    return Err(SetError::CasMismatch);
                }
            }
            self.write(name, value);
            Ok(())
        }

        fn now_ns(&self) -> u64 {
            self.now_ns.get()
        }
    }
}
