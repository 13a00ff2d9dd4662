//! AWS's wire protocols, pure and shared by the filter (requests to Bedrock, its streamed
//! answers), the control plane (Bedrock's model listing) and the tests' mock of Bedrock.

// Linked into the filter, where a panic traps the VM: none here (tests may; see clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod eventstream;
pub mod sigv4;
