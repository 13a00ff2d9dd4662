//! The request's record: one JSON object per request (`switchyard_contract::record`),
//! written in one function.

use switchyard_contract::names::TargetName;
use switchyard_contract::record::RequestRecord;

use crate::request::Endpoint;

use super::Exchange;

impl Exchange {
    /// The request's record: one JSON object (`switchyard_contract::record`).
    pub(super) fn record(&self, status: u32, end_ns: u64, cost: Option<u64>) -> String {
        let index = self.index.as_deref();
        let provider = match (index, self.provider) {
            (Some(index), Some(i)) => Some(index.provider(i)),
            _ => None,
        };
        let (key_id, user) = match (index, self.key) {
            (Some(index), Some(k)) => (index.key(k).id.as_str(), index.key(k).user.as_str()),
            _ => ("", ""),
        };
        let u = self.usage.unwrap_or_default();
        let ms = |ns: u64| ns / 1_000_000;
        let since_start = |ns: u64| (ns >= self.start_ns).then(|| ms(ns - self.start_ns));
        // Attempts before the last one failed (they were retried): the health figures count them.
        let mut attempts = usize::from(provider.is_some());
        let mut failed = Vec::new();
        if let (Some(index), Some(plan)) = (index, &self.plan) {
            let entry = plan.entry();
            let tried = plan.attempts();
            attempts = attempts.max(tried.len());
            let retried = tried.len().saturating_sub(1);
            for tried in tried.iter().take(retried) {
                if let Some(t) = entry.and_then(|e| e.targets.get(tried.target)) {
                    failed.push(TargetName {
                        provider: index.provider(t.provider).name.as_str(),
                        model: t.model.as_str(),
                    });
                }
            }
        }
        let record = RequestRecord {
            id: self.id.as_str(),
            at: ms(self.start_ns),
            api: self.endpoint.map_or("", Endpoint::name),
            status,
            error: self.error_code,
            key: key_id,
            user,
            model: self.model.as_str(),
            provider: provider.map_or("", |p| p.name.as_str()),
            upstream_model: self.upstream_model.as_str(),
            failed,
            estimated: self.estimated,
            attempts: attempts as u64,
            stream: self.stream,
            complete: self.complete,
            prompt_tokens: u.prompt,
            completion_tokens: u.completion,
            total_tokens: u.total,
            cached_tokens: u.cached,
            cache_write_tokens: u.cache_write,
            reasoning_tokens: u.reasoning,
            cost_micros: cost,
            duration_ms: since_start(end_ns),
            upstream_ms: since_start(self.first_byte_ns),
            ttft_ms: since_start(self.first_token_ns),
        };
        let mut out = String::with_capacity(512);
        record.write(&mut out);
        out
    }
}
