//! Metrics at Envoy's `/stats/prometheus`, the same names and labels as the wasm filter's.
//! Envoy lets a module define metrics only while their owner is being created, so they are
//! defined once: by the bootstrap extension (process-wide, which keeps labelled series alive
//! across configuration changes) or, in an Envoy started without it, by each filter
//! configuration. Each request counts directly (a native call: no batching needed).

use std::sync::OnceLock;

use switchyard_core::config::METRIC_TAGS;
use switchyard_core::exchange::{histogram, Counts, COUNTERS};

use crate::ffi::{self, Registry};

const RECORDS_DROPPED: usize = 5;

/// The histograms and the name parts of their labels, in order.
const HISTOGRAMS: [(&str, &[&str]); 5] = [
    (histogram::TOKEN_USAGE, &["provider", "model", "token_type"]),
    (histogram::DURATION, &["provider", "model", "status"]),
    (histogram::TIME_TO_FIRST_TOKEN, &["provider", "model"]),
    (histogram::TIME_PER_OUTPUT_TOKEN, &["provider", "model"]),
    (histogram::OVERHEAD, &[]),
];

/// The metrics the bootstrap extension defined, when Envoy runs it.
static PROCESS: OnceLock<Metrics> = OnceLock::new();

/// Metric ids and where they live.
#[derive(Clone, Copy)]
pub(crate) struct Metrics {
    registry: Registry,
    counters: [Option<usize>; 6],
    histograms: [Option<usize>; 5],
}

impl Metrics {
    /// Defines every metric with `registry` (while its owner is being created).
    fn define_in(registry: Registry) -> Metrics {
        let mut m = Metrics {
            registry,
            counters: [None; 6],
            histograms: [None; 5],
        };
        for (id, name) in m.counters.iter_mut().zip(COUNTERS) {
            *id = registry.define_counter(name);
        }
        for (id, (name, parts)) in m.histograms.iter_mut().zip(HISTOGRAMS) {
            // Prometheus label names, as the bootstrap's tags name them for the wasm filter.
            let labels: Vec<&str> = parts
                .iter()
                .map(|part| {
                    METRIC_TAGS
                        .iter()
                        .find(|(_, p)| p == part)
                        .map_or(*part, |(label, _)| *label)
                })
                .collect();
            *id = registry.define_histogram(name, &labels);
        }
        m
    }

    /// The bootstrap extension's metrics (once per process).
    pub(crate) fn define_for_process(registry: Registry) {
        if PROCESS.set(Metrics::define_in(registry)).is_err() {
            ffi::log(
                ffi::LOG_WARN,
                "switchyard: a second bootstrap extension ignored",
            );
        }
    }

    /// A filter configuration's metrics: the process's, else its own.
    pub(crate) fn for_filter_config(registry: Registry) -> Metrics {
        PROCESS
            .get()
            .copied()
            .unwrap_or_else(|| Metrics::define_in(registry))
    }

    pub(crate) fn count(&self, c: &Counts) {
        let values = [
            1,
            u64::from(c.gateway_error),
            c.prompt_tokens,
            c.completion_tokens,
            u64::from(c.incomplete_stream),
        ];
        for (id, n) in self.counters.iter().zip(values) {
            if let (Some(id), 1..) = (id, n) {
                self.registry.increment_counter(*id, n);
            }
        }
    }

    pub(crate) fn records_dropped(&self, n: u64) {
        if let (Some(id), 1..) = (self.counters[RECORDS_DROPPED], n) {
            self.registry.increment_counter(id, n);
        }
    }

    /// One sample; `labels` are (name part, value) pairs in the histogram's order.
    pub(crate) fn record(&self, name: &str, labels: &[(&str, &str)], value: u64) {
        let Some(at) = HISTOGRAMS.iter().position(|(n, _)| *n == name) else {
            return;
        };
        let Some(id) = self.histograms[at] else {
            return;
        };
        let mut values = [""; 4];
        for (slot, (_, v)) in values.iter_mut().zip(labels) {
            *slot = v;
        }
        if !self
            .registry
            .record_histogram(id, &values[..labels.len().min(4)], value)
        {
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
