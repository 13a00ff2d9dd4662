//! Metrics at Envoy's `/stats/prometheus` (names without prefix); upstream errors are Envoy's
//! own per-cluster `upstream_rq_xx` stats. Counters add to VM-local totals that the root
//! context's tick flushes, so a request costs no counter host calls. Histograms (see
//! [`switchyard_core::exchange::histogram`]) take one host call per sample.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use switchyard_core::exchange::COUNTERS as NAMES;

#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub requests: u64,
    pub gateway_errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub incomplete_streams: u64,
    pub records_dropped: u64,
}

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

/// Records one sample; `labels` are (name part, value) pairs of [`switchyard_core::config::METRIC_TAGS`].
pub(crate) fn record(name: &str, labels: &[(&str, &str)], value: u64) {
    // The full name is built in one buffer per worker: a known histogram costs no
    // allocation (a request records four to six samples).
    let id = NAME.with(|buffer| {
        let mut full = buffer.borrow_mut();
        switchyard_core::exchange::histogram::full_name(&mut full, name, labels);
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
