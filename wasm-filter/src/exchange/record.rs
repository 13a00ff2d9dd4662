//! The request's record: one JSON object per request (see the control plane's `usage::Record`),
//! written in one function.

use std::fmt::Write as _;

use crate::error::push_json_string;
use crate::request::Endpoint;

use super::Exchange;

impl Exchange {
    /// The request's record: one JSON object (see the control plane's `usage::Record`).
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
        let mut out = String::with_capacity(512);
        out.push_str("{\"id\":\"");
        out.push_str(&self.id);
        let ms = |ns: u64| ns / 1_000_000;
        let since_start = |ns: u64| (ns >= self.start_ns).then(|| ms(ns - self.start_ns));
        let _ = write!(
            out,
            "\",\"at\":{},\"api\":\"{}\",\"status\":{status}",
            ms(self.start_ns),
            self.endpoint.map_or("", Endpoint::name),
        );
        if !self.error_code.is_empty() {
            let _ = write!(out, ",\"error\":\"{}\"", self.error_code);
        }
        out.push_str(",\"key\":");
        push_json_string(&mut out, key_id);
        out.push_str(",\"user\":");
        push_json_string(&mut out, user);
        out.push_str(",\"model\":");
        push_json_string(&mut out, &self.model);
        out.push_str(",\"provider\":");
        push_json_string(&mut out, provider.map_or("", |p| p.name.as_str()));
        out.push_str(",\"upstream_model\":");
        push_json_string(&mut out, &self.upstream_model);
        // Attempts before the last one failed (they were retried): the health figures count them.
        let mut attempts = usize::from(provider.is_some());
        if let (Some(index), Some(plan)) = (index, &self.plan) {
            let entry = plan.entry();
            let tried = plan.attempts();
            attempts = attempts.max(tried.len());
            let failed = tried.len().saturating_sub(1);
            let mut listed = 0;
            for tried in tried.iter().take(failed) {
                if let Some(t) = entry.and_then(|e| e.targets.get(tried.target)) {
                    out.push_str(if listed == 0 { ",\"failed\":[" } else { "," });
                    listed += 1;
                    let name = format!("{}/{}", index.provider(t.provider).name, t.model);
                    push_json_string(&mut out, &name);
                }
            }
            if listed > 0 {
                out.push(']');
            }
        }
        if self.estimated {
            out.push_str(",\"estimated\":true");
        }
        let _ = write!(
            out,
            ",\"attempts\":{attempts},\"stream\":{},\"complete\":{},\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{},\"cached_tokens\":{},\"cache_write_tokens\":{},\"reasoning_tokens\":{}",
            self.stream, self.complete, u.prompt, u.completion, u.total, u.cached, u.cache_write, u.reasoning
        );
        if let Some(cost) = cost {
            let _ = write!(out, ",\"cost_micros\":{cost}");
        }
        if let Some(d) = since_start(end_ns) {
            let _ = write!(out, ",\"duration_ms\":{d}");
        }
        if let Some(d) = since_start(self.first_byte_ns) {
            let _ = write!(out, ",\"upstream_ms\":{d}");
        }
        if let Some(d) = since_start(self.first_token_ns) {
            let _ = write!(out, ",\"ttft_ms\":{d}");
        }
        out.push('}');
        out
    }
}
