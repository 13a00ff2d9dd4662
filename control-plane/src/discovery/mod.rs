//! Model discovery: each provider's model list read through its kind's listing
//! ([`crate::providers`]), bounded ([`fetch`]), recorded in the catalog and published
//! ([`runner`]), with the outcome kept per provider ([`outcome`]).
//!
//! Capabilities come from the provider's metadata where it has any (Gemini's generation
//! methods and thinking flag, Bedrock's modalities), else from the model's name; an admin
//! overrides them per model.

pub mod fetch;
mod outcome;
mod runner;

#[cfg(test)]
use crate::domain::{ProviderKind, ProviderSettings};
#[cfg(test)]
use crate::providers;

pub use crate::providers::{tags_from_name, Discovered, Page, Tag};
pub use fetch::{list, MAX_MODELS, MAX_PAGES};
pub use outcome::{Failure, Status};
pub use runner::{discover, Discoverer, Runner};

/// Parses one page of `kind`'s model list; `azure_deployments`: Azure's list of deployments
/// rather than its v1 API's list of models. (For tests that start from a provider's answer.)
#[cfg(test)]
pub(crate) fn parse_page(
    kind: ProviderKind,
    azure_deployments: bool,
    body: &[u8],
) -> Result<Page, String> {
    let settings = ProviderSettings {
        api_version: azure_deployments.then(|| providers::AZURE_API_VERSION.into()),
        ..Default::default()
    };
    providers::spec(kind).parse_models(&settings, body)
}
