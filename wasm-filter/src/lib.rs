//! Switchyard's Envoy filter: the only code that touches proxy-wasm. The root context
//! (configuration, metrics, the tick) and the two HTTP roles are adapters that read from and
//! write to Envoy and leave every decision to [`switchyard_core::exchange`].
//!
//! Rules kept here: never `unwrap` a host call (a trap kills the worker's VM), read headers as
//! bytes (`get_map_value` panics on non-UTF-8 values), and keep the last good configuration when
//! a new one does not parse.

// Only the wasm build has a host to adapt to; natively the crate is empty.
#![cfg(target_arch = "wasm32")]
// A panic traps the VM and fails every request on that worker. On top of the workspace's lints.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unsafe_code)] // the proxy-wasm ABI calls
mod abi;
mod http;
mod lease;
mod metrics;
mod plan;
mod records;
mod shared;
mod upstream;

use std::sync::Arc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use switchyard_core::config::{RECORDS_ROOT_ID, UPSTREAM_ROOT_ID};
use switchyard_core::exchange::Shared as _;
use switchyard_core::route::Index;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// How often counted metrics reach Envoy's stats, other workers' cooldowns are read, and
/// request records leave for the control plane.
const TICK: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Default)]
struct Root {
    /// The upstream filter of failover clusters (its root id says so); it needs no
    /// configuration of its own: each request's plan carries the downstream filter's index.
    upstream: bool,
    /// The records service (its root id says so): see [`records::Service`].
    records: Option<records::Service>,
    index: Option<Arc<Index>>,
    /// Every target and provider key of the current configuration, for [`shared::refresh`].
    target_keys: Vec<u64>,
    /// The data plane key from Envoy's environment (opens provider keys, signs records).
    dataplane_key: Option<[u8; 32]>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        if !lease::returned(token, body) {
            records::answered(token, now_ms());
        }
    }
}

/// The host's clock in Unix milliseconds (0 if it cannot be read).
pub(crate) fn now_ms() -> u64 {
    shared::Host.now_ns() / 1_000_000
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id = hostcalls::get_property(vec!["plugin_root_id"])
            .ok()
            .flatten()
            .unwrap_or_default();
        if root_id == UPSTREAM_ROOT_ID.as_bytes() {
            self.upstream = true;
            return true;
        }
        metrics::define();
        let _ = hostcalls::set_tick_period(TICK);
        if root_id == RECORDS_ROOT_ID.as_bytes() {
            self.dataplane_key = std::env::var(switchyard_core::sealed::KEY_ENV)
                .ok()
                .and_then(|k| switchyard_core::sealed::parse_key(&k));
            self.records = records::Service::start();
            return self.records.is_some();
        }
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(_) => {
                log::warn!("switchyard: no plugin configuration");
                return false;
            }
        };
        // Given by Envoy's `vm_config.environment_variables.host_env_keys`.
        let dataplane_key = std::env::var(switchyard_core::sealed::KEY_ENV)
            .ok()
            .and_then(|k| switchyard_core::sealed::parse_key(&k));
        self.dataplane_key = dataplane_key;
        match Index::from_json(&bytes, dataplane_key.as_ref()) {
            Ok(index) => {
                log::info!("switchyard: configuration version {} loaded", index.version);
                self.target_keys = index.all_target_keys();
                self.target_keys.extend(
                    index
                        .all_keys()
                        .map(|k| switchyard_core::cooldown::key_identity(&k.id)),
                );
                switchyard_core::exchange::keys::prepare_windows(&index, &shared::Host);
                records::set_sink(index.records.as_ref());
                self.index = Some(Arc::new(index));
                true
            }
            Err(e) => {
                // Returning false rejects the config; Envoy keeps serving the last good one.
                log::error!("switchyard: configuration rejected: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.upstream {
            return Some(Box::<upstream::UpstreamAttempt>::default());
        }
        Some(Box::new(http::Request::new(
            self.index.clone(),
            self.dataplane_key,
        )))
    }

    fn on_tick(&mut self) {
        metrics::flush();
        if let Some(service) = &mut self.records {
            service.tick(now_ms(), self.dataplane_key.as_ref());
            return;
        }
        shared::refresh(&self.target_keys);
        if let Some(index) = &self.index {
            if let Some(sink) = &index.records {
                records::worker_tick(sink, now_ms(), self.dataplane_key.as_ref());
            }
            lease::tick(index, self.dataplane_key.as_ref(), now_ms());
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Some(service) = &mut self.records {
            service.queue_ready(queue_id);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
