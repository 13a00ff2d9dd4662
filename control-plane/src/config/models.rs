//! Logical models over providers' models, and aliases.

use serde::Deserialize;

use super::one;
use crate::domain::Strategy;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default = "crate::domain::default_strategy")]
    pub strategy: Strategy,
    pub targets: Vec<TargetSpec>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub provider: String,
    pub model: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub priority: u32,
    /// What the target can do (`function_calling`, `vision`); absent: everything. Requests with
    /// tools or images go only to targets that can take them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub capabilities: Option<Vec<switchyard_contract::config::Capability>>,
}

/// Another name for a model: `{name: fast, target: openai/gpt-4o-mini}`, or a glob over a
/// provider's models, `{name: "claude-*", target: anthropic}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasSpec {
    pub name: String,
    pub target: String,
}
