//! Metrics at Envoy's `/stats/prometheus`, the same names and labels as the wasm filter's.
//! Envoy lets a module define metrics only while their owner is being created. Counters are
//! defined once, by the bootstrap extension (process-wide: they outlive configuration
//! changes), or, in an Envoy started without it, by each filter configuration. Histograms are
//! defined by each filter configuration, one per series its configuration can record (see
//! [`histogram::every_series`]), labels in the name as the wasm build's (the bootstrap's
//! `stats_tags` make them Prometheus labels), and recorded without labels: a sample recorded
//! with labels made Envoy build and look up its stat name each time (about 4,000
//! instructions, a tenth of what the filter added to a request). Envoy keeps one histogram per
//! name across scopes, so a new configuration, which defines its series before the old one
//! goes, carries on the same series. Each request counts directly (a native call: no batching
//! needed).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use switchyard_core::exchange::{histogram, Counts, COUNTERS};
use switchyard_core::route::Index;

use crate::ffi::{self, Registry};

const RECORDS_DROPPED: usize = 5;

/// The counters the bootstrap extension defined, when Envoy runs it.
static PROCESS: OnceLock<Counters> = OnceLock::new();

thread_local! {
    /// A histogram's full name, built in one buffer per worker.
    static NAME: RefCell<String> = RefCell::default();
}

/// Counter ids and where they live.
#[derive(Clone, Copy)]
struct Counters {
    registry: Registry,
    ids: [Option<usize>; 6],
}

impl Counters {
    fn define_in(registry: Registry) -> Counters {
        let mut ids = [None; 6];
        for (id, name) in ids.iter_mut().zip(COUNTERS) {
            *id = registry.define_counter(name);
        }
        Counters { registry, ids }
    }
}

/// A configuration's metrics: the counters (the process's, else its own) and its histograms.
pub(crate) struct Metrics {
    counters: Counters,
    registry: Registry,
    /// Histogram ids by full name (labels included).
    histograms: HashMap<String, usize, foldhash::fast::RandomState>,
}

impl Metrics {
    /// The bootstrap extension's counters (once per process).
    pub(crate) fn define_for_process(registry: Registry) {
        if PROCESS.set(Counters::define_in(registry)).is_err() {
            ffi::log(
                ffi::LOG_WARN,
                "switchyard: a second bootstrap extension ignored",
            );
        }
    }

    /// A filter configuration's metrics (while it is being created): every histogram series
    /// `index` can record, and the counters.
    pub(crate) fn for_filter_config(registry: Registry, index: &Index) -> Metrics {
        let counters = PROCESS
            .get()
            .copied()
            .unwrap_or_else(|| Counters::define_in(registry));
        let mut histograms = HashMap::default();
        let mut full = String::new();
        histogram::every_series(index, |name, labels| {
            histogram::full_name(&mut full, name, labels);
            if let Some(id) = registry.define_histogram(&full, &[]) {
                histograms.insert(full.clone(), id);
            }
        });
        Metrics {
            counters,
            registry,
            histograms,
        }
    }

    pub(crate) fn count(&self, c: &Counts) {
        let values = [
            1,
            u64::from(c.gateway_error),
            c.prompt_tokens,
            c.completion_tokens,
            u64::from(c.incomplete_stream),
        ];
        for (id, n) in self.counters.ids.iter().zip(values) {
            if let (Some(id), 1..) = (id, n) {
                self.counters.registry.increment_counter(*id, n);
            }
        }
    }

    pub(crate) fn records_dropped(&self, n: u64) {
        if let (Some(id), 1..) = (self.counters.ids[RECORDS_DROPPED], n) {
            self.counters.registry.increment_counter(id, n);
        }
    }

    /// One sample; `labels` are (name part, value) pairs in the histogram's order. A series
    /// the configuration did not define (none: see [`histogram::every_series`]) is not kept.
    pub(crate) fn record(&self, name: &str, labels: &[(&str, &str)], value: u64) {
        let id = NAME.with(|buffer| {
            let mut full = buffer.borrow_mut();
            histogram::full_name(&mut full, name, labels);
            self.histograms.get(full.as_str()).copied()
        });
        let recorded = id.is_some_and(|id| self.registry.record_histogram(id, &[], value));
        if !recorded {
            static LOGGED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                ffi::log(
                    ffi::LOG_WARN,
                    &format!("switchyard: histogram {name} refused a sample"),
                );
            }
        }
    }
}
