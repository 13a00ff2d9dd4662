//! The request's end: usage settled (a stream left early is estimated), what the answers told of
//! each target's and key's health, the end for its key's lease, the request's record,
//! the counters and the GenAI histogram samples.

use super::health::{self, Observation};
use super::{Exchange, Response, Shared};

/// Histogram names (Envoy's take integers: units in the names), after OpenTelemetry's GenAI
/// conventions; their labels (provider, model, token type, status class: all bounded by the
/// configuration) travel in the name and become Prometheus labels by the bootstrap's
/// `stats_tags`.
pub mod histogram {
    pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
    pub const DURATION: &str = "gen_ai_client_operation_duration_ms";
    pub const TIME_TO_FIRST_TOKEN: &str = "gen_ai_server_time_to_first_token_ms";
    pub const TIME_PER_OUTPUT_TOKEN: &str = "gen_ai_server_time_per_output_token_us";
    pub const OVERHEAD: &str = "switchyard_gateway_overhead_us";

    /// The status classes of [`DURATION`]'s `status` label.
    pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

    /// A histogram's full name with its labels, as Envoy stores it: `name;key=value;...`
    /// (the bootstrap's `stats_tags` turn the parts into Prometheus labels), written over
    /// `out` (a buffer kept per worker: a known series costs no allocation).
    pub fn full_name(out: &mut String, name: &str, labels: &[(&str, &str)]) {
        out.clear();
        out.push_str(name);
        for (key, value) in labels {
            out.push(';');
            out.push_str(key);
            out.push('=');
            // The separators cannot appear inside a value (nearly always none is there: the
            // value goes in whole).
            if value.contains([';', '=']) {
                out.extend(
                    value
                        .chars()
                        .map(|c| if c == ';' || c == '=' { '_' } else { c }),
                );
            } else {
                out.push_str(value);
            }
        }
    }

    /// Every series a configuration can record (see `Exchange::samples`), with its labels:
    /// per provider and upstream model of its targets, token usage by type, duration by
    /// status class, time to first token and per output token; and the gateway's overhead.
    /// Bounded by the configuration, so a host that must define its metrics up front (Envoy's
    /// dynamic modules) can define them all.
    pub fn every_series(index: &crate::route::Index, mut each: impl FnMut(&str, &[(&str, &str)])) {
        for (provider, model) in index.provider_models() {
            for kind in ["input", "output"] {
                let labels = [
                    ("provider", provider),
                    ("model", model),
                    ("token_type", kind),
                ];
                each(TOKEN_USAGE, &labels);
            }
            for class in STATUS_CLASSES {
                let labels = [("provider", provider), ("model", model), ("status", class)];
                each(DURATION, &labels);
            }
            let labels = [("provider", provider), ("model", model)];
            each(TIME_TO_FIRST_TOKEN, &labels);
            each(TIME_PER_OUTPUT_TOKEN, &labels);
        }
        each(OVERHEAD, &[]);
    }
}

/// The filter's counters at Envoy's `/stats/prometheus`, in the order both adapters keep them:
/// requests, gateway errors, prompt and completion tokens, incomplete streams, records dropped.
pub const COUNTERS: [&str; 6] = [
    "switchyard_requests_total",
    "switchyard_gateway_errors_total",
    "switchyard_prompt_tokens_total",
    "switchyard_completion_tokens_total",
    "switchyard_incomplete_streams_total",
    "switchyard_records_dropped_total",
];

/// A request admitted under its key's lease ended: what goes back to the lease (see
/// [`crate::lease::ended`]).
#[derive(Debug, PartialEq, Eq)]
pub struct LeaseEnd {
    pub key: String,
    pub request: String,
    /// Its reservation was taken from the lease.
    pub leased: bool,
    pub reserve: u64,
    pub tokens: u64,
    pub cost: u64,
}

/// What the request adds to the worker's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub gateway_error: bool,
    pub incomplete_stream: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Everything the host publishes when the request ends.
#[derive(Debug)]
pub struct Outcome {
    /// The status the client got.
    pub status: u32,
    /// When the request ended (Unix ns).
    pub end_ns: u64,
    /// What the answer told of each target's and provider key's health.
    pub observations: Vec<Observation>,
    pub lease_end: Option<LeaseEnd>,
    /// The request's record, when the configuration publishes records.
    pub record: Option<String>,
    /// It goes to filter state (for access logs).
    pub record_to_state: bool,
    /// It goes to the control plane.
    pub record_to_outbox: bool,
    pub counts: Counts,
}

impl Exchange {
    /// The request is done; `response_code` reads the status Envoy sent (asked only when the
    /// gateway did not answer itself).
    pub fn finish(&mut self, response_code: impl FnOnce() -> u32, clock: &impl Shared) -> Outcome {
        self.estimate_unfinished_stream();
        let status = if self.local_reply {
            self.local_status
        } else if let Some(fault) = self.provider_fault {
            fault
        } else if self.answer_ended && self.sent_status != 0 {
            // The whole answer went through this filter, the last one to write the client's
            // headers: its status is the one sent (one host call fewer per request).
            self.sent_status
        } else {
            response_code()
        };
        let end_ns = clock.now_ns();
        let observations = self.observations(status);
        let cost = self.cost();
        let lease_end = self.leased.as_ref().and_then(|l| {
            let k = self.key.zip(self.index.as_deref()).map(|(k, i)| i.key(k))?;
            Some(LeaseEnd {
                key: k.id.clone(),
                request: self.id.clone(),
                leased: l.leased,
                reserve: l.reserve,
                tokens: self.usage.map_or(0, |u| u.total),
                cost: cost.unwrap_or(0),
            })
        });
        let (record_to_state, record_to_outbox) = self
            .index
            .as_deref()
            .map_or((false, false), |i| (i.record_state, i.records.is_some()));
        let record =
            (record_to_state || record_to_outbox).then(|| self.record(status, end_ns, cost));
        let counts = Counts {
            gateway_error: self.local_error,
            incomplete_stream: self.stream && self.provider.is_some() && !self.complete,
            prompt_tokens: self.usage.map_or(0, |u| u.prompt),
            completion_tokens: self.usage.map_or(0, |u| u.completion),
        };
        Outcome {
            status,
            end_ns,
            observations,
            lease_end,
            record,
            record_to_state,
            record_to_outbox,
            counts,
        }
    }

    /// Every answer from (or about) a provider tells on the target's health.
    fn observations(&self, status: u32) -> Vec<Observation> {
        let (Some(index), Some(provider), false) = (&self.index, self.provider, self.local_reply)
        else {
            return Vec::new();
        };
        match &self.plan {
            // The upstream role saw each attempt's answer; attempts that got none (connect
            // failure, reset, timeout) failed, the last one as Envoy told the client.
            Some(plan) if !plan.attempts().is_empty() => {
                let Some(entry) = plan.entry() else {
                    return Vec::new();
                };
                let attempts = plan.attempts();
                let last = attempts.len() - 1;
                let mut seen = Vec::new();
                for (i, tried) in attempts.iter().enumerate() {
                    if tried.status != 0 {
                        continue;
                    }
                    let failed = if i == last && status != 0 {
                        status
                    } else {
                        503
                    };
                    if let Some(t) = entry.targets.get(tried.target) {
                        seen.extend(health::attribute(index, t.provider, &t.model, None, failed));
                    }
                }
                if let Some(fault) = self.provider_fault {
                    // The attempt that answered was fine to the upstream role; its answer
                    // was not.
                    seen.extend(health::attribute(
                        index,
                        provider,
                        &self.upstream_model,
                        self.provider_key,
                        fault,
                    ));
                }
                seen
            }
            _ => health::attribute(
                index,
                provider,
                &self.upstream_model,
                self.provider_key,
                status,
            )
            .collect(),
        }
    }

    /// A stream the client left (or the provider cut) before the provider's own count arrived
    /// is charged for what was sent: the usage known so far (a translated stream may have the
    /// prompt's count), the completion at least the text the client received, and the prompt
    /// estimated from the request's size when unknown. The record says so (`estimated`).
    fn estimate_unfinished_stream(&mut self) {
        if !self.stream || self.complete || self.provider.is_none() || self.streamed_tokens == 0 {
            return;
        }
        let known = self.usage.or(match &self.response {
            Response::Translated(t) => t.usage(),
            _ => None,
        });
        let mut u = known.unwrap_or_default();
        if u.completion < self.streamed_tokens {
            u.completion = self.streamed_tokens;
            self.estimated = true;
        }
        if u.prompt == 0 {
            u.prompt = (self.request_bytes as u64).div_ceil(4);
            self.estimated = true;
        }
        u.total = u.prompt.saturating_add(u.completion);
        self.usage = Some(u);
    }

    /// The GenAI histogram samples of a request that reached a provider: `record(name, labels,
    /// value)` for each.
    pub fn samples(
        &self,
        status: u32,
        end_ns: u64,
        mut record: impl FnMut(&str, &[(&str, &str)], u64),
    ) {
        let (Some(index), Some(provider)) = (self.index.as_deref(), self.provider) else {
            return;
        };
        let provider = index.provider(provider).name.as_str();
        let model = self.upstream_model.as_str();
        let class = match status {
            100..=599 => histogram::STATUS_CLASSES[(status / 100 - 1) as usize],
            _ => "none",
        };
        let ms = |from: u64, to: u64| (to.saturating_sub(from)) / 1_000_000;
        if let Some(u) = self.usage {
            for (kind, n) in [("input", u.prompt), ("output", u.completion)] {
                let labels = [
                    ("provider", provider),
                    ("model", model),
                    ("token_type", kind),
                ];
                record(histogram::TOKEN_USAGE, &labels, n);
            }
        }
        let labels = [("provider", provider), ("model", model), ("status", class)];
        record(histogram::DURATION, &labels, ms(self.start_ns, end_ns));
        let labels = &labels[..2];
        if self.first_token_ns != 0 {
            record(
                histogram::TIME_TO_FIRST_TOKEN,
                labels,
                ms(self.start_ns, self.first_token_ns),
            );
            let output = self.usage.map_or(0, |u| u.completion);
            if output > 1 && self.last_chunk_ns > self.first_token_ns {
                let per_token = (self.last_chunk_ns - self.first_token_ns) / 1_000 / (output - 1);
                record(histogram::TIME_PER_OUTPUT_TOKEN, labels, per_token);
            }
        }
        if self.released_ns != 0 && self.last_chunk_ns != 0 {
            let ours = self.released_ns.saturating_sub(self.start_ns)
                + end_ns.saturating_sub(self.last_chunk_ns);
            record(histogram::OVERHEAD, &[], ours / 1_000);
        }
    }

    /// What the request cost at its model's price (`None`: no price known, or no provider).
    fn cost(&self) -> Option<u64> {
        let index = self.index.as_deref()?;
        let provider = index.provider(self.provider?);
        let price = provider.prices.get(&self.upstream_model)?;
        Some(price.cost_micros(&self.usage.unwrap_or_default()))
    }
}
