//! Switchyard's filter as an Envoy dynamic module: the same engine as the wasm filter
//! ([`switchyard_core::exchange`]), called by Envoy natively instead of through a V8 VM. A
//! crossing between Envoy and the filter is a function call here (about 1.5 µs each in V8,
//! some thirty per request), the configuration is parsed once per Envoy on its main thread
//! (not once per worker), and request records leave from the main thread.
//!
//! Two filter names: [`FILTER_NAME`] (the downstream role, configured with the gateway's
//! filter configuration) and [`UPSTREAM_ROOT_ID`] (the upstream role of failover clusters).
//!
//! Rules kept here: never `unwrap` (a panic is caught at the hook: a request not yet forwarded
//! gets a 500, and Envoy lives on), read headers as bytes, and refuse a configuration that does not parse (Envoy keeps
//! serving the last good one).

// Only Linux has Envoy's dynamic module loader; elsewhere the crate is empty.
#![cfg(target_os = "linux")]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unsafe_code)] // the dynamic module ABI
mod ffi;
#[allow(unsafe_code)] // the hooks Envoy calls
mod hooks;
mod http;
mod lease;
mod metrics;
mod plan;
mod records;
mod shared;
mod upstream;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use switchyard_core::config::{LOCAL_REPLY_DETAILS, UPSTREAM_ROOT_ID};
use switchyard_core::exchange::{Outgoing, Reply, Shared as _};
use switchyard_core::route::Index;

use ffi::{Body, Config, HeaderMap, Scheduler, Stream};

/// The downstream role's filter name (as the control plane configures it).
pub const FILTER_NAME: &str = "switchyard";

/// How often the main thread sends request records.
const TICK: Duration = Duration::from_millis(250);

/// Filter state keys as the wasm filter's properties name them (Envoy prefixes a wasm
/// filter's with `wasm.`): the access log, the rate limits and the upstream role read these.
pub(crate) fn state_key(name: &str) -> String {
    format!("wasm.{name}")
}

/// What a hook tells Envoy to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Continue,
    /// Wait for more (headers: stop iteration; bodies: stop and buffer).
    Pause,
    /// The filter answered the request itself.
    Replied,
}

/// One configuration of the downstream role, shared by every worker.
pub(crate) struct Settings {
    pub index: Option<Arc<Index>>,
    /// Every target and provider key of the configuration (whose cooldowns workers share).
    pub target_keys: Vec<u64>,
    pub metrics: metrics::Metrics,
    /// The data plane key (signs lease asks).
    pub dataplane_key: Option<[u8; 32]>,
}

/// What Envoy holds for one configuration.
pub(crate) struct FilterConfig {
    envoy: Config,
    /// `None`: the upstream role.
    settings: Option<Arc<Settings>>,
    /// The data plane key from Envoy's environment (opens provider keys, signs records).
    dataplane_key: Option<[u8; 32]>,
}

/// One stream's filter (boxed once per stream: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Filter {
    Down(http::Request),
    Up(upstream::UpstreamAttempt),
    /// A hook panicked: the rest of the stream passes untouched.
    Broken,
}

/// The request on its way upstream, as the exchange writes it.
pub(crate) struct RequestOut {
    pub stream: Stream,
    pub buffered: Body,
    pub received: Body,
}

impl Outgoing for RequestOut {
    fn set_body(&mut self, body: &[u8]) {
        // What Envoy buffered and this chunk become the new body (Envoy appends this chunk to
        // its buffer when the hook continues).
        self.stream.drain_body(self.buffered);
        self.stream.drain_body(self.received);
        self.stream.append_body(self.received, body);
    }

    fn set_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.stream.set_header(HeaderMap::Request, name, value);
        // The route follows the request's headers (the cluster the exchange chose), as
        // Envoy's wasm host does on every request header write.
        self.stream.clear_route_cache();
    }
}

/// Sends a local reply (with the request's id when the client is to get it).
pub(crate) fn reply(stream: Stream, reply: &Reply, request_id: Option<&str>) {
    stream.send_response(
        reply.status,
        &reply.headers(request_id),
        &reply.body,
        LOCAL_REPLY_DETAILS,
    );
}

impl FilterConfig {
    fn new(envoy: Config, name: &[u8], config: &[u8]) -> Option<FilterConfig> {
        let dataplane_key = std::env::var(switchyard_core::sealed::KEY_ENV)
            .ok()
            .and_then(|k| switchyard_core::sealed::parse_key(&k));
        if name == UPSTREAM_ROOT_ID.as_bytes() {
            return Some(FilterConfig {
                envoy,
                settings: None,
                dataplane_key,
            });
        }
        if name != FILTER_NAME.as_bytes() {
            ffi::log(ffi::LOG_ERROR, "switchyard: unknown filter name");
            return None;
        }
        let index = match Index::from_json(config, dataplane_key.as_ref()) {
            Ok(index) => index,
            Err(e) => {
                ffi::log(
                    ffi::LOG_ERROR,
                    &format!("switchyard: configuration rejected: {e}"),
                );
                return None;
            }
        };
        ffi::log(
            ffi::LOG_INFO,
            &format!("switchyard: configuration version {} loaded", index.version),
        );
        let mut target_keys = index.all_target_keys();
        target_keys.extend(
            index
                .all_keys()
                .map(|k| switchyard_core::cooldown::key_identity(&k.id)),
        );
        switchyard_core::exchange::keys::prepare_windows(&index, &shared::Host);
        let metrics =
            metrics::Metrics::for_filter_config(ffi::Registry::of_filter_config(envoy), &index);
        Some(FilterConfig {
            envoy,
            settings: Some(Arc::new(Settings {
                index: Some(Arc::new(index)),
                target_keys,
                metrics,
                dataplane_key,
            })),
            dataplane_key,
        })
    }

    fn new_filter(&self) -> Filter {
        match &self.settings {
            Some(settings) => Filter::Down(http::Request::new(Arc::clone(settings))),
            None => Filter::Up(upstream::UpstreamAttempt::new()),
        }
    }

    /// The main thread's tick: gives back what expired leases left, sends request records.
    fn tick(&self) {
        let Some(settings) = &self.settings else {
            return;
        };
        let now_ms = shared::Host.now_ns() / 1_000_000;
        if let Some(index) = &settings.index {
            lease::tick(self.envoy, index, self.dataplane_key.as_ref(), now_ms);
        }
        let Some(sink) = settings.index.as_ref().and_then(|i| i.records.as_ref()) else {
            return;
        };
        let dropped = records::tick(self.envoy, sink, now_ms, self.dataplane_key.as_ref());
        settings.metrics.records_dropped(dropped);
    }
}

/// The live downstream configurations' schedulers (by the configuration's address): the
/// ticker thread wakes the newest one's main-thread hook.
static TICKERS: Mutex<Vec<(usize, Scheduler)>> = Mutex::new(Vec::new());

/// Starts the ticker thread once per process.
fn start_ticker() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("switchyard-tick".into())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                let tickers = TICKERS.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((_, scheduler)) = tickers.last() {
                    scheduler.commit(0);
                }
            });
        if spawned.is_err() {
            ffi::log(
                ffi::LOG_ERROR,
                "switchyard: no ticker thread: request records will not be sent",
            );
        }
    });
}

fn add_ticker(config: &FilterConfig) {
    if config.settings.is_none() {
        return;
    }
    start_ticker();
    let key = std::ptr::from_ref(config) as usize;
    TICKERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((key, config.envoy.scheduler()));
}

fn remove_ticker(config: &FilterConfig) {
    let key = std::ptr::from_ref(config) as usize;
    TICKERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(k, _)| *k != key);
}

/// The index and plans are shared across Envoy's threads.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Index>();
};
