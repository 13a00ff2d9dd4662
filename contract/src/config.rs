//! The filter's configuration contract: what the control plane pushes over ECDS (serde only).
//!
//! The control plane builds a [`FilterConfig`] from its store and serialises it to JSON; the filter
//! parses it once per `on_configure` and turns it into its routing index for O(1) lookups.
//! Fields are added, never renamed: an old filter must keep parsing a newer control plane's config.

use serde::{Deserialize, Serialize};

use crate::pricing::Price;

/// The whole configuration of one filter instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FilterConfig {
    /// Opaque version of this configuration (logged, and echoed in the request record).
    pub version: String,
    /// Largest request body accepted, in bytes; bigger bodies get 413.
    pub max_body_bytes: usize,
    /// The most of a provider's answer the filter holds at once: a whole answer it translates,
    /// or one stream event. More is a 502 (`provider_response_too_large`).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Gateway API keys, identified by the digest of their secret (see `crate::key_digest::digest`).
    #[serde(default)]
    pub keys: Vec<GatewayKey>,
    /// The deployment's key digest key (64 hex digits, usually sealed for the data plane): key
    /// digests are HMAC-SHA256 under it, so a leaked configuration gives nothing to
    /// brute-force a weak key with. Absent: plain SHA-256 digests (older control planes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_digest_key: Option<String>,
    /// Upstream providers with their clusters and keys.
    #[serde(default)]
    pub providers: Vec<Provider>,
    /// Every model name a client may send, logical or derived (`provider/model`, plain upstream names).
    #[serde(default)]
    pub models: Vec<ModelRoute>,
    /// How the `balanced` strategy weighs latency, cost and reliability.
    #[serde(default)]
    pub balance: BalanceWeights,
    /// Where each request's record goes (the control plane's request log); absent: nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<RecordSink>,
    /// Also publish each record as filter state (`wasm.switchyard_usage`) for Envoy's own
    /// access log; one host call per request, so only when that log is on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record_state: bool,
    /// How long a request waits for its key's lease ask (see [`crate::lease`]) before it is let
    /// through anyway.
    #[serde(default = "default_lease_timeout_ms")]
    pub lease_timeout_ms: u32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            version: String::new(),
            max_body_bytes: 0,
            max_response_bytes: default_max_response_bytes(),
            keys: Vec::new(),
            key_digest_key: None,
            providers: Vec::new(),
            models: Vec::new(),
            balance: BalanceWeights::default(),
            records: None,
            record_state: false,
            lease_timeout_ms: default_lease_timeout_ms(),
        }
    }
}

/// Half a second: limits must not take the gateway down with the control plane.
pub fn default_lease_timeout_ms() -> u32 {
    500
}

/// 32 MiB: room for a batch of generated images in base64, far below what would strain a worker.
pub fn default_max_response_bytes() -> usize {
    32 << 20
}

/// Where the filter sends request records: batches of JSON lines, POSTed over an Envoy cluster
/// to the control plane, kept and sent again until the control plane confirms it stored them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordSink {
    /// The Envoy cluster that reaches the control plane.
    pub cluster: String,
    /// `:authority` of the request.
    pub authority: String,
    /// `:path` of the request.
    pub path: String,
}

/// A gateway API key as the data plane knows it: never the secret, only its digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatewayKey {
    /// Stable id of the key in the store (for logs and usage records).
    pub id: String,
    /// Lower-case hex digest of the secret the client presents (see `crate::key_digest::digest`).
    pub digest: String,
    /// Owner of the key.
    #[serde(default)]
    pub user: String,
    /// Model patterns this key may use: exact names, `*`, or a prefix ending in `*`.
    #[serde(default)]
    pub models: Vec<String>,
    /// Unix time (seconds) after which the key is refused; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The key or its owner has global limits (requests or tokens per minute, spend caps,
    /// credits): its requests spend from its lease (see [`crate::lease`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub limited: bool,
}

/// The API family a provider speaks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    OpenaiCompatible,
    AzureOpenai,
    Anthropic,
    Gemini,
    Vertex,
    Bedrock,
}

impl ProviderKind {
    /// Kinds whose wire format is OpenAI's own, so requests pass with only `model` rewritten
    /// (and the provider's quirks applied).
    pub fn speaks_openai(self) -> bool {
        matches!(
            self,
            ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::AzureOpenai
        )
    }
}

/// An upstream provider: where to send requests and how to authenticate them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Envoy cluster that reaches the provider.
    pub cluster: String,
    /// `:authority` to send (the provider's host, with port when not the scheme's default).
    pub authority: String,
    /// Path prefix from the base URL (e.g. `/v1`), without a trailing slash; may be empty.
    #[serde(default)]
    pub path_prefix: String,
    /// Header carrying the provider key (lower case), e.g. `authorization`.
    pub auth_header: String,
    /// Text before the key in that header, e.g. `Bearer `.
    #[serde(default)]
    pub auth_prefix: String,
    /// Provider keys, used in turn by weight.
    #[serde(default)]
    pub keys: Vec<ProviderKey>,
    /// Headers the provider's API requires on every request (e.g. `anthropic-version`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// How request paths are built below `path_prefix`.
    #[serde(default, skip_serializing_if = "PathStyle::is_default")]
    pub path_style: PathStyle,
    /// Query string for every request path, without `?` (e.g. `api-version=2024-10-21`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// AWS region, for providers whose requests are signed (Bedrock).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// What an OpenAI-style provider does differently from OpenAI (see [`Quirks`]).
    #[serde(default, skip_serializing_if = "Quirks::is_none")]
    pub quirks: Quirks,
    /// Prices of the provider's models by upstream name, for each request's cost.
    #[serde(
        default,
        skip_serializing_if = "std::collections::HashMap::is_empty",
        serialize_with = "sorted"
    )]
    pub prices: std::collections::HashMap<String, Price>,
}

/// How an OpenAI-style provider builds its paths.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PathStyle {
    /// `{prefix}/chat/completions`, `{prefix}/embeddings`.
    #[default]
    Openai,
    /// Azure OpenAI: `{prefix}/openai/deployments/{model}/chat/completions`.
    AzureDeployment,
}

impl PathStyle {
    fn is_default(&self) -> bool {
        *self == PathStyle::Openai
    }
}

/// Request differences of an OpenAI-compatible provider, applied to the top-level JSON fields
/// (data from the provider's preset; empty for OpenAI itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Quirks {
    /// Fields the provider does not take; dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// Fields the provider names differently: (OpenAI's name, the provider's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<(String, String)>,
    /// Whether the provider takes `stream_options.include_usage`; when not, streams are sent
    /// without it and usage is taken from wherever the provider puts it.
    #[serde(default = "yes")]
    pub stream_usage: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            drop: Vec::new(),
            rename: Vec::new(),
            stream_usage: true,
        }
    }
}

impl Quirks {
    pub fn is_none(&self) -> bool {
        *self == Quirks::default()
    }
}

fn yes() -> bool {
    true
}

/// One provider key as the data plane needs it (the control plane keeps it encrypted at rest).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct ProviderKey {
    pub id: String,
    pub secret: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// Requests per second this key may carry, across all of an Envoy's workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps: Option<u32>,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even in debug output.
        f.debug_struct("ProviderKey")
            .field("id", &self.id)
            .field("weight", &self.weight)
            .field("qps", &self.qps)
            .finish_non_exhaustive()
    }
}

fn one() -> u32 {
    1
}

/// A model name clients may send and the targets that serve it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRoute {
    pub name: String,
    pub targets: Vec<Target>,
    /// How the targets are ranked for each request (see the filter's `rank`).
    #[serde(default, skip_serializing_if = "is_weighted")]
    pub strategy: Strategy,
    /// For a model with several targets: per target (same order), the Envoy cluster that tries
    /// that target first and the others after it (an aggregate cluster, see DESIGN.md). Empty:
    /// requests go straight to the target's provider cluster, without failover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<String>,
    /// The same for requests that need capabilities not every target has: per set of needs
    /// (a [`Capability`] bit mask), per target the cluster over the capable targets only
    /// (empty for a target without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_capable: Vec<(u8, Vec<String>)>,
    /// The users whose keys may use this name (a private provider's models: its owner and the
    /// users it is shared with); empty: every key. To anyone else the name does not exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// What `/v1/models` says of it besides its name.
    #[serde(default, skip_serializing_if = "ModelCard::is_empty")]
    pub card: ModelCard,
}

/// What a model can do, as the control plane detected it (or an admin set it).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    Chat,
    Vision,
    FunctionCalling,
    ImageGeneration,
    Embeddings,
    Reasoning,
}

impl Tag {
    pub const ALL: [Tag; 6] = [
        Tag::Chat,
        Tag::Vision,
        Tag::FunctionCalling,
        Tag::ImageGeneration,
        Tag::Embeddings,
        Tag::Reasoning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Chat => "chat",
            Tag::Vision => "vision",
            Tag::FunctionCalling => "function_calling",
            Tag::ImageGeneration => "image_generation",
            Tag::Embeddings => "embeddings",
            Tag::Reasoning => "reasoning",
        }
    }

    /// The routing capability this tag stands for, if any.
    pub fn capability(self) -> Option<Capability> {
        match self {
            Tag::Vision => Some(Capability::Vision),
            Tag::FunctionCalling => Some(Capability::FunctionCalling),
            _ => None,
        }
    }
}

/// What `/v1/models` shows of a model besides its name (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelCard {
    /// The provider serving it (`switchyard` for logical models).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owned_by: String,
    /// Unix seconds: when the provider made it, or when the gateway first saw it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Most input tokens a request may carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Sorted, without repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

impl ModelCard {
    pub fn is_empty(&self) -> bool {
        *self == ModelCard::default()
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What a request may need of a target beyond plain chat.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Tools (function calling).
    FunctionCalling,
    /// Images in the messages.
    Vision,
}

impl Capability {
    pub const ALL: u8 = 0b11;

    pub fn bit(self) -> u8 {
        match self {
            Capability::FunctionCalling => 0b01,
            Capability::Vision => 0b10,
        }
    }

    /// The bit mask of a target's declared capabilities (undeclared: all of them).
    pub fn mask(declared: Option<&[Capability]>) -> u8 {
        declared.map_or(Self::ALL, |caps| caps.iter().fold(0, |m, c| m | c.bit()))
    }
}

fn is_weighted(s: &Strategy) -> bool {
    *s == Strategy::Weighted
}

/// One way to serve a model: a provider and the provider's own name for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub provider: String,
    pub model: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// 0 is tried first; higher tiers are fallbacks.
    #[serde(default)]
    pub priority: u32,
    /// What the control plane measured for this target (absent until it has figures).
    #[serde(default, skip_serializing_if = "TargetStats::is_unknown")]
    pub stats: TargetStats,
    /// What the target can do; absent: everything a request may need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Capability>>,
}

/// What a model's targets are ranked by.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// By weight only.
    #[default]
    Weighted,
    /// Lowest recent latency (time to first token where known).
    Latency,
    /// Lowest price per token for the measured token mix.
    Cost,
    /// Highest recent success rate.
    Reliability,
    /// A weighted sum of the three.
    Balanced,
}

/// How `balanced` weighs its figures (normalised to sum to one).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct BalanceWeights {
    pub latency: f64,
    pub cost: f64,
    pub reliability: f64,
}

impl Default for BalanceWeights {
    fn default() -> Self {
        BalanceWeights {
            latency: 1.0,
            cost: 1.0,
            reliability: 1.0,
        }
    }
}

/// What the control plane measured for one target; absent figures are unknown.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetStats {
    /// Recent time to first token (or latency), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Recent share of successful requests, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// Price per million tokens for the measured token mix, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_mtok: Option<f64>,
    /// Unix seconds until which the target is cooling down after failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<u64>,
    /// Unix seconds since which the provider answers again (a successful probe after failed
    /// ones): this Envoy's own cooldowns from failures before then are over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<u64>,
}

impl TargetStats {
    pub fn is_unknown(&self) -> bool {
        *self == TargetStats::default()
    }
}

/// A map written in key order: the same configuration always serialises to the same bytes
/// (and so the same version).
fn sorted<S: serde::Serializer, V: Serialize>(
    map: &std::collections::HashMap<String, V>,
    s: S,
) -> Result<S::Ok, S::Error> {
    map.iter()
        .collect::<std::collections::BTreeMap<&String, &V>>()
        .serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_key_debug_hides_secret() {
        let key = ProviderKey {
            id: "k1".into(),
            secret: "sk-live-secret".into(),
            weight: 1,
            qps: None,
        };
        let printed = format!("{key:?}");
        assert!(printed.contains("k1"));
        assert!(!printed.contains("sk-live-secret"));
    }

    #[test]
    fn unknown_fields_from_a_newer_control_plane_are_tolerated() {
        let cfg: FilterConfig =
            serde_json::from_str(r#"{"version":"7","max_body_bytes":10,"future":{"x":1}}"#)
                .expect("parses");
        assert_eq!(cfg.version, "7");
        assert!(cfg.keys.is_empty());
    }
}
