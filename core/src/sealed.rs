//! Secrets sealed for the data plane and signed record batches: the format and its
//! cryptography are the contract's (`switchyard_contract::sealed`); the filter opens sealed
//! values and signs its batches.

pub use switchyard_contract::sealed::*;
