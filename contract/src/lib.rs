//! What Switchyard's filter and control plane agree on, in one place: the filter's
//! configuration, the names both spell alike, the request record, the limits protocol and the
//! sealed-secret format. Each format has one writer and one reader here, tested against each
//! other; neither side formats or parses them by hand.

pub mod config;
pub mod ids;
pub mod json;
#[cfg(feature = "crypto")]
pub mod key_digest;
pub mod limits;
pub mod names;
pub mod pricing;
pub mod record;
pub mod sealed;
pub mod usage;
