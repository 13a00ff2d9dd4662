//! What Switchyard's filter and control plane agree on, in one place: the filter's
//! configuration, the names both spell alike, the request record, the limits protocol and the
//! sealed-secret format. Each format has one writer and one reader here, tested against each
//! other; neither side formats or parses them by hand.

// Linked into the filter, where a panic traps the VM: none here (tests may; see clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod config;
pub mod ids;
pub mod json;
#[cfg(feature = "crypto")]
pub mod key_digest;
pub mod lease;
pub mod limits;
pub mod names;
pub mod pricing;
pub mod record;
pub mod sealed;
pub mod usage;
