//! Switchyard's control plane: configuration, store, admin API and the xDS server that
//! configures Envoy.

pub mod admin;
pub mod app;
pub mod auth;
pub mod certs;
pub mod config;
pub mod crypto;
pub mod discovery;
pub mod domain;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod pki;
pub mod probe;
pub mod providers;
pub mod redis_link;
pub mod scope;
pub mod snapshot;
pub mod ssrf;
pub mod store;
pub mod usage;
pub mod xds;

/// Vertex access tokens, under their old name.
pub use providers::vertex::token as gcp;

#[cfg(test)]
mod test_support;
