//! Switchyard's Envoy filter. Everything but `host/` is pure Rust, tested natively.

pub mod attempt;
pub mod auth;
pub mod config;
pub mod cooldown;
pub mod error;
pub mod eventstream;
pub mod exchange;
pub mod gateway_key;
pub mod headers;
pub mod models;
pub mod outbox;
pub mod pricing;
pub mod rank;
pub mod request;
pub mod reserve;
pub mod route;
pub mod sealed;
pub mod sigv4;
pub mod sse;
pub mod stream;
pub mod translate;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod host;
