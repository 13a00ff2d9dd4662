//! Switchyard's gateway engine, pure Rust: the per-request exchange (routing, ranking,
//! cooldowns, attempts, failover), translation between client and provider wire formats,
//! SSE and event-stream framing, usage and pricing. No proxy-wasm: everything here is tested
//! natively, and `wasm-filter/` adapts it to Envoy.

// A panic traps the VM and fails every request on that worker: none in the engine's code
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
pub mod lease;
pub mod models;
pub mod needle;
pub mod outbox;
pub mod provider;
pub mod rank;
pub mod request;
pub mod reserve;
pub mod route;
pub mod sealed;
pub mod sse;
pub mod translate;
pub mod usage;
