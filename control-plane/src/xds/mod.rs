//! xDS: Envoy's configuration built from the domain (`build`), versioned snapshots (`cache`) and
//! the ADS gRPC server (`server`).

pub mod build;
pub mod cache;
pub mod server;
