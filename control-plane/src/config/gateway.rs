//! The Envoy side: its listener and admin addresses, and the bounds and timeouts the control
//! plane sets on it.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The Envoy side: its listener and admin addresses and what the control plane tells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    #[serde(default = "default_gateway_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_gateway_admin")]
    pub admin: SocketAddr,
    /// The filter as Envoy will open it: the native build (an Envoy dynamic module, `.so`, the
    /// default) or the proxy-wasm one (`.wasm`). Also accepted as `filter`.
    #[serde(default = "default_wasm", alias = "filter")]
    pub wasm: PathBuf,
    /// Largest request body accepted (bytes).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Upper bound for one request, streams included (seconds; 0 = none).
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// CA bundle for verifying `https://` providers.
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
    /// Write one access-log line per request (with its usage record) to Envoy's stdout.
    #[serde(default = "yes")]
    pub access_log: bool,
    /// How long a limited key's request waits for its lease ask to the control plane before
    /// it is let through anyway.
    #[serde(default = "default_limits_timeout_ms")]
    pub limits_timeout_ms: u32,
    /// Most attempts one request makes on a model with several targets (one per target).
    #[serde(default = "default_failover_attempts")]
    pub failover_attempts: u32,
    /// A streamed answer whose provider sends nothing for this long (before its first byte, or
    /// between two chunks) is abandoned: before any byte reached the client the request moves to
    /// the next target; after, the stream ends with an error. 0 = no limit.
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte_timeout_secs: u64,
    /// A non-streamed answer not complete after this long moves to the next target (0 = only
    /// `request_timeout_secs` bounds it: whole answers of reasoning models can take minutes).
    #[serde(default)]
    pub attempt_timeout_secs: u64,
    /// Provider keys travel to Envoy sealed under the data plane key, so that Envoy's
    /// configuration and admin `config_dump` hold only ciphertext; Envoy gets the key from its
    /// environment (`SWITCHYARD_DATAPLANE_KEY`, printed by `switchyard dataplane-key`).
    #[serde(default = "yes")]
    pub seal_provider_keys: bool,
    /// The most of one provider answer the filter holds: a whole answer it translates, or one
    /// stream event; more is a 502 (`provider_response_too_large`).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// A client must send its request headers within this (seconds); then a 408.
    #[serde(default = "default_request_headers_timeout")]
    pub request_headers_timeout_secs: u64,
    /// A client must send its whole request (headers and body) within this (seconds).
    #[serde(default = "default_request_receive_timeout")]
    pub request_receive_timeout_secs: u64,
    /// A client connection with no request in flight is closed after this (seconds).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// A request with no bytes moving either way for this long is ended (seconds); it must
    /// allow for non-streamed answers of reasoning models, silent for minutes.
    #[serde(default = "default_stream_idle_timeout")]
    pub stream_idle_timeout_secs: u64,
    /// Proxies in front of Envoy whose `X-Forwarded-For` entries are trusted (0: the client is
    /// the peer address).
    #[serde(default)]
    pub trusted_hops: u32,
    /// Most concurrent requests on one HTTP/2 client connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Envoy's overload manager: most downstream connections open at once, over every
    /// listener but the admin (0 = no limit).
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Envoy's overload manager: the heap size its memory actions scale to (shrink the heap,
    /// reset the streams holding most memory, disable keep-alive, stop accepting connections,
    /// then requests); 0 = no heap actions.
    #[serde(default = "default_max_heap_bytes")]
    pub max_heap_bytes: u64,
    /// How long an admin write that changes Envoy's configuration waits for every connected
    /// Envoy to acknowledge it before answering (then 202, and the client polls
    /// `/admin/v1/config/status`); milliseconds, 0 = answer without waiting (202 whenever an
    /// Envoy is connected).
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
}

fn default_ack_timeout_ms() -> u64 {
    2000
}

fn default_max_response_bytes() -> usize {
    switchyard_contract::config::default_max_response_bytes()
}

fn default_request_headers_timeout() -> u64 {
    10
}

fn default_request_receive_timeout() -> u64 {
    60
}

fn default_idle_timeout() -> u64 {
    60
}

fn default_stream_idle_timeout() -> u64 {
    300
}

fn default_max_concurrent_streams() -> u32 {
    128
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            listen: default_gateway_listen(),
            admin: default_gateway_admin(),
            wasm: default_wasm(),
            max_body_bytes: default_max_body(),
            request_timeout_secs: default_timeout(),
            ca_file: default_ca_file(),
            access_log: true,
            limits_timeout_ms: default_limits_timeout_ms(),
            failover_attempts: default_failover_attempts(),
            first_byte_timeout_secs: default_first_byte_timeout(),
            attempt_timeout_secs: 0,
            seal_provider_keys: true,
            max_response_bytes: default_max_response_bytes(),
            request_headers_timeout_secs: default_request_headers_timeout(),
            request_receive_timeout_secs: default_request_receive_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            stream_idle_timeout_secs: default_stream_idle_timeout(),
            trusted_hops: 0,
            max_concurrent_streams: default_max_concurrent_streams(),
            max_connections: default_max_connections(),
            max_heap_bytes: default_max_heap_bytes(),
            ack_timeout_ms: default_ack_timeout_ms(),
        }
    }
}

fn default_limits_timeout_ms() -> u32 {
    500
}

fn default_gateway_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10000))
}

fn default_gateway_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

fn default_wasm() -> PathBuf {
    "target/release/libswitchyard_native.so".into()
}

fn default_max_body() -> usize {
    4 * 1024 * 1024
}

fn default_failover_attempts() -> u32 {
    3
}

fn default_max_connections() -> u64 {
    10_000
}

fn default_max_heap_bytes() -> u64 {
    1 << 30
}

fn default_first_byte_timeout() -> u64 {
    30
}

fn default_timeout() -> u64 {
    600
}

fn default_ca_file() -> PathBuf {
    "/etc/ssl/certs/ca-certificates.crt".into()
}

fn yes() -> bool {
    true
}
