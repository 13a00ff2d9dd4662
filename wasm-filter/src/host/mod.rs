//! The only code that touches proxy-wasm: the root context (configuration, metrics) and the
//! per-request HTTP context.
//!
//! Rules kept here: never `unwrap` a host call (a trap kills the worker's VM), read headers as
//! bytes (`get_map_value` panics on non-UTF-8 values), and keep the last good configuration when
//! a new one does not parse.

mod http;

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MetricType};

use crate::route::Index;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Counters exported at Envoy's `/stats/prometheus` (names without prefix).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Metrics {
    requests: Option<u32>,
    local_errors: Option<u32>,
    upstream_errors: Option<u32>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    incomplete_streams: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| match hostcalls::define_metric(MetricType::Counter, name) {
            Ok(id) => Some(id),
            Err(e) => {
                log::warn!("switchyard: metric {name} not defined: {e:?}");
                None
            }
        };
        Metrics {
            requests: counter("switchyard_requests_total"),
            local_errors: counter("switchyard_gateway_errors_total"),
            upstream_errors: counter("switchyard_upstream_errors_total"),
            prompt_tokens: counter("switchyard_prompt_tokens_total"),
            completion_tokens: counter("switchyard_completion_tokens_total"),
            incomplete_streams: counter("switchyard_incomplete_streams_total"),
        }
    }

    fn add(id: Option<u32>, n: u64) {
        // Counters reject offsets <= 0; a failed increment is not worth a trap.
        if let (Some(id), Ok(n @ 1..)) = (id, i64::try_from(n)) {
            if let Err(e) = hostcalls::increment_metric(id, n) {
                log::warn!("switchyard: metric {id} increment failed: {e:?}");
            }
        }
    }
}

#[derive(Default)]
struct Root {
    index: Option<Rc<Index>>,
    metrics: Option<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        if self.metrics.is_none() {
            self.metrics = Some(Metrics::define());
        }
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(_) => {
                log::warn!("switchyard: no plugin configuration");
                return false;
            }
        };
        match Index::from_json(&bytes) {
            Ok(index) => {
                log::info!("switchyard: configuration version {} loaded", index.version);
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
        Some(Box::new(http::Request::new(
            self.index.clone(),
            self.metrics.unwrap_or_default(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
