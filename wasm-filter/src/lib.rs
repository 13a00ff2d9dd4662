//! Switchyard's Envoy filter. Everything but `host/` is pure Rust, tested natively.

// A panic traps the VM and fails every request on that worker: none in the filter's code
// (tests may; see clippy.toml). On top of the workspace's lints.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod attempt;
pub mod auth;
pub mod config;
pub mod cooldown;
pub mod error;
pub mod exchange;
pub mod gateway_key;
pub mod headers;
pub mod models;
pub mod outbox;
pub mod provider;
pub mod rank;
pub mod request;
pub mod reserve;
pub mod route;
pub mod sealed;
pub mod sse;
pub mod stream;
pub mod translate;
pub mod usage;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the proxy-wasm ABI calls (host/abi.rs)
mod host;
