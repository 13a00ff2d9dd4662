//! End-to-end harness: mock providers, the real control plane binary and the real Envoy with
//! the real filter, each on ephemeral loopback ports, started in that order and polled until
//! ready. Logs are kept in a temp dir and printed when a test fails.
//!
//! - [`process`]: ports, temp dirs, child processes (killed on drop, log dumped on failure),
//!   polling;
//! - [`artifacts`]: where the binaries, the filter's build and the fixtures are;
//! - [`config`]: the control plane's config file, typed, and the default stack's config;
//! - [`control_plane`], [`envoy`]: each started and driven (admin API, stats, certificates);
//! - [`stack`]: the whole thing wired (mock -> control plane -> Envoy);
//! - [`mock`]: the mock providers; [`raw`]: raw HTTP/1.1 exchanges; [`answers`]: reading bodies
//!   and SSE events.

pub mod answers;
pub mod artifacts;
pub mod config;
pub mod control_plane;
pub mod envoy;
pub mod mock;
pub mod process;
pub mod raw;
pub mod stack;

pub use answers::{data_events, read_all, sse_events, without_created};
pub use artifacts::{
    envoy_bin, fixture, fixture_json, native_path, switchyard_bin, wasm_build_path, wasm_path,
    wasm_path_unchecked, workspace_root,
};
pub use config::{config_with_flaky, default_config, Config, Ports};
pub use control_plane::{
    bootstrap_text, dataplane_key, switchyard_cli, ControlPlane, NodeCerts, XDS_SERVER_NAME,
};
pub use envoy::{usage_records, Envoy};
pub use mock::MockOpenAi;
pub use process::{free_port, wait_until, Proc, TempDir};
pub use stack::Stack;

/// The provider key the mock accepts (never a real key).
pub const PROVIDER_KEY: &str = "sk-mock-provider-key-0123456789";
/// A provider key the mock refuses (401): provider `twokeys` has it before a good one.
pub const REVOKED_KEY: &str = "sk-mock-revoked-key-9876543210";
/// The requests-per-second limit of provider `metered`'s only key.
pub const METERED_QPS: u32 = 5;
/// A gateway key configured in every test stack.
pub const GATEWAY_KEY: &str = "sk-test-gateway-key-abcdefgh";
/// A gateway key that may only use `gpt-4o-mini`.
pub const LIMITED_KEY: &str = "sk-test-limited-key-ijklmnop";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
