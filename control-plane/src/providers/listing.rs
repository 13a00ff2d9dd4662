//! A provider's model list as discovery reads it: the models found, page by page, and the
//! requests of one read through the list.

use serde::Serialize;

use super::{authorize, ProviderSpec, Tag};
use crate::domain::ProviderSettings;

/// One model as a provider lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discovered {
    /// The name requests use (Gemini's without `models/`; Azure's deployment name).
    pub id: String,
    pub display_name: Option<String>,
    /// Sorted, no repeats.
    pub tags: Vec<Tag>,
    pub context_window: Option<u64>,
    /// For Azure: the model behind the deployment.
    pub base_model: Option<String>,
    /// The tags come from the provider's metadata (or its documented model family), not from
    /// a guess by name.
    pub tags_from_metadata: bool,
    /// Unix seconds the provider says the model was made.
    pub created: Option<i64>,
}

/// One page: its models and, when there is more, the cursor for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub models: Vec<Discovered>,
    pub next: Option<String>,
}

/// Page size asked of providers that page.
pub const PAGE_SIZE: u32 = 100;

/// One read through a provider's model list: the requests to send and how to read the
/// answers. `crate::discovery` sends them, follows the pages and bounds what it reads.
pub trait Listing: Send {
    /// The request for a list read once before the pages, whose models come first and which
    /// the pages may need to be read (Bedrock's foundation models, whose tags its inference
    /// profiles take); `None` when there is none.
    fn lead(&self, _http: &reqwest::Client) -> Result<Option<reqwest::RequestBuilder>, String> {
        Ok(None)
    }

    /// Reads the answer to [`Listing::lead`]: its models.
    fn read_lead(&mut self, _body: &[u8]) -> Result<Vec<Discovered>, String> {
        Ok(Vec::new())
    }

    /// The request for the page after `cursor` (`None`: the first).
    fn page(
        &self,
        http: &reqwest::Client,
        cursor: Option<&str>,
    ) -> Result<reqwest::RequestBuilder, String>;

    /// Statuses of a page that mean the list is not there: the read ends without it.
    fn absent(&self) -> &'static [u16] {
        &[]
    }

    /// Reads one page.
    fn read_page(&mut self, body: &[u8]) -> Result<Page, String>;
}

/// The usual list: pages at [`ProviderSpec::models_path`] below the base URL, asked with the
/// key in the kind's header and read by [`ProviderSpec::parse_models`].
pub(super) struct OnBaseUrl<'a, S: ?Sized> {
    pub spec: &'a S,
    /// Without a trailing `/`.
    pub base_url: &'a str,
    pub settings: &'a ProviderSettings,
    pub secret: &'a str,
}

impl<S: ProviderSpec + ?Sized> Listing for OnBaseUrl<'_, S> {
    fn page(
        &self,
        http: &reqwest::Client,
        cursor: Option<&str>,
    ) -> Result<reqwest::RequestBuilder, String> {
        let path = self
            .spec
            .models_path(self.settings, cursor)
            .ok_or("this kind of provider has no model list")?;
        let req = http.get(format!("{}{path}", self.base_url));
        Ok(authorize(self.spec, req, self.secret))
    }

    fn read_page(&mut self, body: &[u8]) -> Result<Page, String> {
        self.spec.parse_models(self.settings, body)
    }
}

/// The error for a body that is not the model list it should be.
pub(super) fn not_a_list(what: &str, e: serde_json::Error) -> String {
    format!("not a {what} model list: {e}")
}

/// `s` encoded for a query string (a cursor a provider gave).
pub(super) fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A model list fixture of the end-to-end tests' mock providers.
#[cfg(test)]
pub(super) fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ids of a page's models, in order.
#[cfg(test)]
pub(super) fn ids(page: &Page) -> Vec<&str> {
    page.models.iter().map(|m| m.id.as_str()).collect()
}
