//! Names the filter and the control plane's Envoy configuration must spell alike: internal
//! headers, Envoy cluster names, the upstream role's root id, endpoint metadata, metric tags;
//! and what a model name may be.

use std::fmt;

/// Name of the request header the filter writes and the route reads with `cluster_header`.
pub const CLUSTER_HEADER: &str = "x-switchyard-cluster";

/// Set (to `openai`) on an OpenAI client's request that carries `anthropic-version` only because
/// the filter added it for an Anthropic provider: Envoy's own error replies then take OpenAI's
/// shape, not Anthropic's (whose clients are known by that header). Removed before the provider.
pub const CLIENT_API_HEADER: &str = "x-switchyard-api";

/// Every header the filter uses between its roles and Envoy (routing, limits) starts with this:
/// Envoy removes all such headers from a client's request before any filter runs, so none can
/// come from a client.
pub const INTERNAL_HEADER_PREFIX: &str = "x-switchyard-";

/// The response code details of the filter's own local replies: Envoy's local reply mappers
/// leave these as they are and turn Envoy's own replies into JSON.
pub const LOCAL_REPLY_DETAILS: &str = "switchyard";

/// Present on streamed requests to a failover cluster: their route also abandons an attempt
/// whose provider stays silent (`first_byte_timeout_secs`).
pub const STREAM_HEADER: &str = "x-switchyard-stream";

/// The root id of the filter's second role: the upstream HTTP filter of failover clusters, run
/// once per attempt to prepare the request for the target Envoy chose.
pub const UPSTREAM_ROOT_ID: &str = "switchyard-upstream";

/// The root id, and VM id, of the filter's third role: the records service, a singleton on
/// Envoy's main thread (a bootstrap extension) to which the workers hand their request records,
/// and which sends them to the control plane in batches, off the worker threads.
pub const RECORDS_ROOT_ID: &str = "switchyard-records";

/// The endpoint metadata namespace (`filter_metadata`) of target clusters; its
/// [`METADATA_TARGET_FIELD`] field names the target as [`TargetName`] writes it.
pub const METADATA_NAMESPACE: &str = "switchyard";

/// The field of [`METADATA_NAMESPACE`] naming the target an endpoint reaches.
pub const METADATA_TARGET_FIELD: &str = "target";

/// Labels of the filter's histograms travel in the metric name, `;name=value` each, and the
/// bootstrap's `stats_config.stats_tags` turns them into Prometheus labels: (label, name part).
pub const METRIC_TAGS: [(&str, &str); 4] = [
    ("gen_ai_provider_name", "provider"),
    ("gen_ai_response_model", "model"),
    ("gen_ai_token_type", "token_type"),
    ("http_status_class", "status"),
];

/// Why a model name from a client was refused before any lookup.
pub fn check_model_name(model: &str) -> Result<(), &'static str> {
    const MAX: usize = 256;
    if model.is_empty() {
        return Err("`model` must not be empty");
    }
    if model.len() > MAX {
        return Err("`model` is longer than 256 bytes");
    }
    if model.chars().any(|c| c.is_control()) {
        return Err("`model` contains control characters");
    }
    Ok(())
}

/// What the name of a provider's cluster starts with (the provider's name follows).
pub const PROVIDER_CLUSTER_PREFIX: &str = "provider-";

/// What the name of a failover (aggregate) cluster starts with: the attempts it allows, a
/// `-`, then what tells it apart (see [`failover_prefix`]).
pub const FAILOVER_CLUSTER_PREFIX: &str = "failover-";

/// The cluster of a provider.
pub fn provider_cluster(provider: &str) -> String {
    format!("{PROVIDER_CLUSTER_PREFIX}{provider}")
}

/// Name prefix of failover clusters allowing `attempts` attempts; the route that retries
/// matches it.
pub fn failover_prefix(attempts: usize) -> String {
    format!("{FAILOVER_CLUSTER_PREFIX}{attempts}-")
}

/// A target as both sides name it, `provider/model`: in request records (the attempts that
/// failed) and in target clusters' endpoint metadata. Provider names hold no `/`; model
/// names may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetName<'a> {
    pub provider: &'a str,
    pub model: &'a str,
}

impl<'a> TargetName<'a> {
    /// Reads `provider/model` (split at the first `/`).
    pub fn parse(name: &'a str) -> Option<TargetName<'a>> {
        let (provider, model) = name.split_once('/')?;
        Some(TargetName { provider, model })
    }
}

impl fmt::Display for TargetName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.provider)?;
        f.write_str("/")?;
        f.write_str(self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_headers_share_the_prefix_envoy_strips() {
        for name in [CLUSTER_HEADER, CLIENT_API_HEADER, STREAM_HEADER] {
            assert!(name.starts_with(INTERNAL_HEADER_PREFIX), "{name}");
        }
    }

    #[test]
    fn hostile_model_names_are_refused() {
        assert!(check_model_name("gpt-4o").is_ok());
        assert!(check_model_name("anthropic/claude-sonnet-4-5@2025").is_ok());
        assert!(check_model_name("").is_err());
        assert!(check_model_name("a\r\nx-evil: 1").is_err());
        assert!(check_model_name("a\u{0}b").is_err());
        assert!(check_model_name(&"m".repeat(257)).is_err());
    }

    #[test]
    fn cluster_names() {
        assert_eq!(provider_cluster("openai"), "provider-openai");
        assert_eq!(failover_prefix(2), "failover-2-");
        assert!(failover_prefix(3).starts_with(FAILOVER_CLUSTER_PREFIX));
    }

    #[test]
    fn target_names_round_trip_with_slashes_in_the_model() {
        for (provider, model) in [("p", "m"), ("groq", "meta-llama/llama-4"), ("p", "")] {
            let name = TargetName { provider, model };
            let text = name.to_string();
            assert_eq!(TargetName::parse(&text), Some(name), "{text}");
        }
        assert_eq!(TargetName::parse("no-slash"), None);
    }
}
