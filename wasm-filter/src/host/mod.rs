//! The only code that touches proxy-wasm: the root context (configuration, metrics) and the
//! per-request HTTP context.
//!
//! Rules kept here: never `unwrap` a host call (a trap kills the worker's VM), read headers as
//! bytes (`get_map_value` panics on non-UTF-8 values), and keep the last good configuration when
//! a new one does not parse.

mod abi;
mod http;
mod plan;
mod records;
mod upstream;

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::config::UPSTREAM_ROOT_ID;
use crate::route::Index;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Metrics at Envoy's `/stats/prometheus` (names without prefix); upstream errors are Envoy's
/// own per-cluster `upstream_rq_xx` stats. Counters add to VM-local totals that the root
/// context's tick flushes, so a request costs no counter host calls. Histograms, named after
/// OpenTelemetry's GenAI conventions (`gen_ai.client.token.usage`, ...), take one host call per
/// sample; their labels (provider, model, token type, status class: all bounded by the
/// configuration) travel in the metric name and become Prometheus labels by the bootstrap's
/// `stats_tags`.
pub(crate) mod metrics {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use proxy_wasm::hostcalls;
    use proxy_wasm::types::MetricType;

    #[derive(Debug, Default)]
    pub(crate) struct Pending {
        pub requests: u64,
        pub gateway_errors: u64,
        pub prompt_tokens: u64,
        pub completion_tokens: u64,
        pub incomplete_streams: u64,
        pub records_dropped: u64,
    }

    const NAMES: [&str; 6] = [
        "switchyard_requests_total",
        "switchyard_gateway_errors_total",
        "switchyard_prompt_tokens_total",
        "switchyard_completion_tokens_total",
        "switchyard_incomplete_streams_total",
        "switchyard_records_dropped_total",
    ];

    /// Histograms (Envoy's take integers: units in the names).
    pub(crate) const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
    pub(crate) const DURATION: &str = "gen_ai_client_operation_duration_ms";
    pub(crate) const TIME_TO_FIRST_TOKEN: &str = "gen_ai_server_time_to_first_token_ms";
    pub(crate) const TIME_PER_OUTPUT_TOKEN: &str = "gen_ai_server_time_per_output_token_us";
    pub(crate) const OVERHEAD: &str = "switchyard_gateway_overhead_us";

    thread_local! {
        // One VM per worker thread: these are that worker's.
        static PENDING: RefCell<Pending> = RefCell::default();
        static IDS: Cell<Option<[u32; 6]>> = const { Cell::new(None) };
        /// Histogram ids by full name (labels included), defined on first use.
        static HISTOGRAMS: RefCell<HashMap<String, u32>> = RefCell::default();
        static NAME: RefCell<String> = RefCell::default();
    }

    pub(crate) fn count(f: impl FnOnce(&mut Pending)) {
        PENDING.with(|p| f(&mut p.borrow_mut()));
    }

    /// Records one sample; `labels` are (name part, value) pairs of [`crate::config::METRIC_TAGS`].
    pub(crate) fn record(name: &str, labels: &[(&str, &str)], value: u64) {
        // The full name is built in one buffer per worker: a known histogram costs no
        // allocation (a request records four to six samples).
        let id = NAME.with(|buffer| {
            let mut full = buffer.borrow_mut();
            full.clear();
            full.push_str(name);
            for (key, value) in labels {
                full.push(';');
                full.push_str(key);
                full.push('=');
                // The separators cannot appear inside a value.
                full.extend(
                    value
                        .chars()
                        .map(|c| if c == ';' || c == '=' { '_' } else { c }),
                );
            }
            HISTOGRAMS.with(|h| {
                if let Some(id) = h.borrow().get(full.as_str()) {
                    return Some(*id);
                }
                let id = hostcalls::define_metric(MetricType::Histogram, &full).ok()?;
                h.borrow_mut().insert(full.clone(), id);
                Some(id)
            })
        });
        if let Some(id) = id {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// Defines the counters once per VM.
    pub(crate) fn define() {
        if IDS.get().is_some() {
            return;
        }
        let mut ids = [0u32; 6];
        for (id, name) in ids.iter_mut().zip(NAMES) {
            match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(v) => *id = v,
                Err(e) => {
                    log::warn!("switchyard: metric {name} not defined: {e:?}");
                    return;
                }
            }
        }
        IDS.set(Some(ids));
    }

    /// Adds the pending totals to Envoy's counters.
    pub(crate) fn flush() {
        let Some(ids) = IDS.get() else { return };
        let p = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        let values = [
            p.requests,
            p.gateway_errors,
            p.prompt_tokens,
            p.completion_tokens,
            p.incomplete_streams,
            p.records_dropped,
        ];
        for (id, n) in ids.into_iter().zip(values) {
            // Counters reject offsets <= 0.
            if let Ok(n @ 1..) = i64::try_from(n) {
                let _ = hostcalls::increment_metric(id, n);
            }
        }
    }
}

/// This worker's failure cooldowns (see [`crate::cooldown`]), shared with the other workers
/// through proxy-wasm shared data: a failure is written at once, and each worker reads every
/// target's entry on its tick, so all workers skip a failing target within a second.
pub(crate) mod cooldowns {
    use std::cell::RefCell;

    use proxy_wasm::hostcalls;
    use proxy_wasm::types::MapType;

    use crate::cooldown::{self, Cooldowns, Entry};

    thread_local! {
        static LOCAL: RefCell<Cooldowns> = RefCell::default();
    }

    fn shared_key(key: u64) -> String {
        format!("switchyard.cooldown.{key:016x}")
    }

    pub(crate) fn with<R>(f: impl FnOnce(&Cooldowns) -> R) -> R {
        LOCAL.with(|c| f(&c.borrow()))
    }

    /// Records the outcome of a request to a target.
    pub(crate) fn observe(key: u64, status: u32, now: u64) {
        if status == 0 {
            return; // no answer at all (the client went away): says nothing of the target
        }
        share(key, status, cooldown::is_failure(status), None, now);
    }

    /// Records what a response says about the provider key that was sent (401/403: refused,
    /// left out for an hour; 429: rate limited, left out like a failing target).
    pub(crate) fn observe_key(key_id: &str, status: u32, now: u64) {
        let at_least = cooldown::key_failure(status);
        if let Some(secs @ 1..) = at_least {
            log::warn!(
                "switchyard: provider key {key_id} refused ({status}): left out for {secs} s"
            );
        }
        share(
            cooldown::key_identity(key_id),
            status,
            at_least.is_some(),
            at_least,
            now,
        );
    }

    /// Records a failure (cooling down for the usual backoff, or longer if `at_least` or the
    /// response's `retry-after` asks) or a success, and shares the change with the other workers.
    fn share(key: u64, status: u32, failed: bool, at_least: Option<u64>, now: u64) {
        let entry = if failed {
            let wait = retry_after(status).max(at_least);
            Some(LOCAL.with(|c| c.borrow_mut().failed(key, now, wait)))
        } else if (1..400).contains(&status) && LOCAL.with(|c| c.borrow_mut().succeeded(key)) {
            Some(Entry::default())
        } else {
            None
        };
        if let Some(entry) = entry {
            let _ =
                hostcalls::set_shared_data(&shared_key(key), Some(entry.encode().as_bytes()), None);
        }
    }

    /// The response's `retry-after` in seconds, on a 429.
    fn retry_after(status: u32) -> Option<u64> {
        (status == 429)
            .then(|| hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, "retry-after"))
            .and_then(|r| r.ok().flatten())
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<u64>().ok())
    }

    /// Takes the other workers' entries for these targets.
    pub(crate) fn refresh(keys: &[u64]) {
        for &key in keys {
            if let Ok((Some(bytes), _)) = hostcalls::get_shared_data(&shared_key(key)) {
                if let Some(entry) = Entry::decode(&bytes) {
                    LOCAL.with(|c| c.borrow_mut().merge(key, entry));
                }
            }
        }
    }
}

/// Provider keys for one attempt: in weighted turn, skipping keys in cooldown (refused or rate
/// limited) unless all are, and keys whose requests-per-second limit is spent in this second,
/// counted across all workers in proxy-wasm shared data (compare-and-swap: exact).
pub(crate) mod keys {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::Status;

    use crate::config::{Provider, ProviderKey};
    use crate::cooldown::{self, Window};
    use crate::error::FilterError;
    use crate::route::Index;

    /// Why no key could be had.
    pub(crate) enum NoKey {
        /// Every key's QPS limit is spent for this second.
        Saturated,
        /// The provider has no key at all.
        Missing,
    }

    impl NoKey {
        pub(crate) fn error(&self, provider: &Provider, model: &str) -> FilterError {
            match self {
                NoKey::Saturated => FilterError::keys_saturated(model),
                NoKey::Missing => FilterError::no_provider_key(&provider.name),
            }
        }
    }

    fn window_name(key: &ProviderKey) -> String {
        format!("switchyard.qps.{}", key.id)
    }

    pub(crate) fn pick<'a>(
        index: &Index,
        provider: &'a Provider,
        now: u64,
    ) -> Result<&'a ProviderKey, NoKey> {
        let candidates = index.key_candidates(provider);
        let cooling = |k: &ProviderKey| {
            super::cooldowns::with(|c| {
                !c.is_empty() && c.until(cooldown::key_identity(&k.id), now).is_some()
            })
        };
        let mut saturated = false;
        for pass_cooling in [false, true] {
            for key in candidates.clone().filter(|k| cooling(k) == pass_cooling) {
                match key.qps {
                    None => return Ok(key),
                    Some(qps) if admit(key, qps, now) => return Ok(key),
                    Some(_) => saturated = true,
                }
            }
        }
        Err(if saturated {
            NoKey::Saturated
        } else {
            NoKey::Missing
        })
    }

    /// Counts one request against `key`'s window for `now`, if its limit allows.
    fn admit(key: &ProviderKey, qps: u32, now: u64) -> bool {
        let name = window_name(key);
        for _ in 0..32 {
            let Ok((bytes, cas)) = hostcalls::get_shared_data(&name) else {
                return true; // no shared data: fail open rather than refuse everything
            };
            let window = bytes.map_or_else(Window::default, |b| Window::decode(&b));
            let Some(next) = window.admit(now, qps) else {
                return false;
            };
            match hostcalls::set_shared_data(&name, Some(&next.encode()), cas) {
                Ok(()) => return true,
                Err(Status::CasMismatch) => continue,
                Err(_) => return true,
            }
        }
        false
    }

    /// Creates each limited key's window once, so that every later write is a compare-and-swap
    /// (a write to a missing entry is unconditional).
    pub(crate) fn prepare_windows(index: &Index) {
        for key in index.all_keys().filter(|k| k.qps.is_some()) {
            let name = window_name(key);
            if let Ok((None, _)) = hostcalls::get_shared_data(&name) {
                let _ = hostcalls::set_shared_data(&name, Some(&Window::default().encode()), None);
            }
        }
    }
}

/// How often counted metrics reach Envoy's stats, other workers' cooldowns are read, and
/// request records leave for the control plane.
const TICK: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Default)]
struct Root {
    /// The upstream filter of failover clusters (its root id says so); it needs no
    /// configuration of its own: each request's plan carries the downstream filter's index.
    upstream: bool,
    index: Option<Rc<Index>>,
    /// Every target of the current configuration, for [`cooldowns::refresh`].
    target_keys: Vec<u64>,
    /// The data plane key from Envoy's environment (opens provider keys, signs records).
    dataplane_key: Option<[u8; 32]>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        records::answered(token, now_ms());
    }
}

/// The host's clock in Unix milliseconds (0 if it cannot be read).
pub(crate) fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// The host's clock in Unix nanoseconds (0 if it cannot be read).
pub(crate) fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(_) => {
                log::warn!("switchyard: no plugin configuration");
                return false;
            }
        };
        // Given by Envoy's `vm_config.environment_variables.host_env_keys`.
        let dataplane_key = std::env::var(crate::sealed::KEY_ENV)
            .ok()
            .and_then(|k| crate::sealed::parse_key(&k));
        self.dataplane_key = dataplane_key;
        match Index::from_json(&bytes, dataplane_key.as_ref()) {
            Ok(index) => {
                log::info!("switchyard: configuration version {} loaded", index.version);
                self.target_keys = index.all_target_keys();
                self.target_keys.extend(
                    index
                        .all_keys()
                        .map(|k| crate::cooldown::key_identity(&k.id)),
                );
                keys::prepare_windows(&index);
                self.index = Some(Rc::new(index));
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
        Some(Box::new(http::Request::new(self.index.clone())))
    }

    fn on_tick(&mut self) {
        metrics::flush();
        cooldowns::refresh(&self.target_keys);
        if let Some(sink) = self.index.as_ref().and_then(|i| i.records.as_ref()) {
            records::flush(sink, now_ms(), self.dataplane_key.as_ref());
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
