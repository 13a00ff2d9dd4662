//! What one discovery of a provider came to: its status as the admin API shows it, or why it
//! did not happen.

use serde::Serialize;

/// How the latest discovery of a provider went.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Status {
    /// Unix seconds.
    pub at: i64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Models the provider listed.
    pub listed: usize,
}

/// Why a discovery did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It could not be tried: off, no key, an address no longer allowed.
    NotPossible(String),
    /// The provider gave no usable list.
    Provider(String),
    /// The store or the publish failed.
    Internal(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::NotPossible(m) | Failure::Provider(m) | Failure::Internal(m) => m,
        }
    }
}
