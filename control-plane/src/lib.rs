//! Switchyard's control plane: configuration, store, admin API and the xDS server that
//! configures Envoy.

pub mod admin;
pub mod apply;
pub mod audit_retention;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod discovery;
pub mod discovery_schedule;
pub mod domain;
pub mod health;
pub mod identity;
pub mod limits;
pub mod log_retention;
pub mod metrics;
pub mod names;
pub mod pki;
pub mod pricing;
pub mod probe;
pub mod probe_rounds;
pub mod providers;
pub mod reconcile;
pub mod redis_link;
pub mod scope;
pub mod secrets;
pub mod serve;
pub mod snapshot;
pub mod ssrf;
pub mod state;
pub mod store;
pub mod tls_renewal;
pub mod usage;
pub mod vertex_tokens;
pub mod xds;

/// Vertex access tokens, under their old name.
pub use providers::vertex::token as gcp;

#[cfg(test)]
mod test_support;
