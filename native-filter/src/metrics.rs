//! Metrics at Envoy's `/stats/prometheus`, the same names and labels as the wasm filter's:
//! defined with the configuration (Envoy freezes metric creation after it), each request's
//! counted directly (a native call, no batching needed).

use switchyard_core::config::METRIC_TAGS;
use switchyard_core::exchange::{histogram, Counts, COUNTERS};

use crate::ffi::{Config, Stream};

const RECORDS_DROPPED: usize = 5;

/// The histograms and the name parts of their labels, in order.
const HISTOGRAMS: [(&str, &[&str]); 5] = [
    (histogram::TOKEN_USAGE, &["provider", "model", "token_type"]),
    (histogram::DURATION, &["provider", "model", "status"]),
    (histogram::TIME_TO_FIRST_TOKEN, &["provider", "model"]),
    (histogram::TIME_PER_OUTPUT_TOKEN, &["provider", "model"]),
    (histogram::OVERHEAD, &[]),
];

/// The ids Envoy gave one configuration's metrics.
pub(crate) struct Metrics {
    config: Config,
    counters: [Option<usize>; 6],
    histograms: [Option<usize>; 5],
}

impl Metrics {
    pub(crate) fn define(config: Config) -> Metrics {
        let mut m = Metrics {
            config,
            counters: [None; 6],
            histograms: [None; 5],
        };
        for (id, name) in m.counters.iter_mut().zip(COUNTERS) {
            *id = config.define_counter(name);
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
            *id = config.define_histogram(name, &labels);
        }
        m
    }

    pub(crate) fn count(&self, stream: Stream, c: &Counts) {
        let values = [
            1,
            u64::from(c.gateway_error),
            c.prompt_tokens,
            c.completion_tokens,
            u64::from(c.incomplete_stream),
        ];
        for (id, n) in self.counters.iter().zip(values) {
            if let (Some(id), 1..) = (id, n) {
                stream.increment_counter(*id, n);
            }
        }
    }

    pub(crate) fn records_dropped(&self, config: Config, n: u64) {
        if let (Some(id), 1..) = (self.counters[RECORDS_DROPPED], n) {
            config.increment_counter(id, n);
        }
    }

    /// One sample; `labels` are (name part, value) pairs in the histogram's order.
    pub(crate) fn record(&self, name: &str, labels: &[(&str, &str)], value: u64) {
        let Some(at) = HISTOGRAMS.iter().position(|(n, _)| *n == name) else {
            return;
        };
        if let Some(id) = self.histograms[at] {
            let mut values = [""; 4];
            for (slot, (_, v)) in values.iter_mut().zip(labels) {
                *slot = v;
            }
            // Through the configuration: a labelled sample recorded through the stream's
            // callback never reaches Envoy's merged histograms (Envoy 1.40, seen in tests).
            self.config
                .record_histogram(id, &values[..labels.len().min(4)], value);
        }
    }
}
