//! xDS: Envoy's configuration built from the domain (`build`), versioned snapshots (`cache`) and
//! the ADS gRPC server (`server`), both sized by `bounds`, on the internal port (`listen`: mutual
//! TLS or a Unix socket).

pub mod acks;
pub mod bounds;
pub mod build;
pub mod cache;
pub mod listen;
pub mod server;
