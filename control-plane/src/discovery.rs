//! Model discovery: what each provider's models endpoint says, in each provider's own format,
//! turned into one shape. Pure (pages in, models and the next page's cursor out); the fetching
//! loop and the store live elsewhere.
//!
//! Formats (as documented by each provider):
//! - OpenAI and OpenAI-compatible, `GET {base}/models`: `{"object":"list","data":[{"id",
//!   "object":"model","created","owned_by"}]}`, one page.
//! - Anthropic, `GET /v1/models?limit=&after_id=`: `{"data":[{"type":"model","id",
//!   "display_name","created_at"}],"has_more","first_id","last_id"}`.
//! - Gemini, `GET /v1beta/models?pageSize=&pageToken=`: `{"models":[{"name":"models/..",
//!   "displayName","inputTokenLimit","outputTokenLimit","supportedGenerationMethods",
//!   "thinking"}],"nextPageToken"}`.
//! - Azure OpenAI deployments, `GET /openai/deployments?api-version=2022-12-01`:
//!   `{"data":[{"id" (the deployment),"model","status","object":"deployment"}]}`.
//! - Bedrock `ListFoundationModels`, `GET https://bedrock.{region}.amazonaws.com/foundation-models`:
//!   `{"modelSummaries":[{"modelId","modelName","providerName","inputModalities",
//!   "outputModalities","responseStreamingSupported","inferenceTypesSupported",
//!   "modelLifecycle":{"status"}}]}`, one page; then `ListInferenceProfiles`,
//!   `GET /inference-profiles?maxResults=&nextToken=`: `{"inferenceProfileSummaries":[{
//!   "inferenceProfileId","inferenceProfileName","status","models":[{"modelArn"}]}],
//!   "nextToken"}` (newer models are invoked on demand through a profile id only).
//!
//! Capabilities come from the provider's metadata where it has any (Gemini's generation
//! methods and thinking flag, Bedrock's modalities), else from the model's name; an admin
//! overrides them per model.

use serde::{Deserialize, Serialize};

use crate::domain::{self, ProviderKind};
use crate::store::ProviderRow;

pub use switchyard_filter::config::Tag;

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

/// Most pages read from one provider (a provider that pages for ever stops here).
pub const MAX_PAGES: usize = 50;
/// Page size asked of providers that page.
pub const PAGE_SIZE: u32 = 100;

/// The path and query of the page after `cursor` (`None`: the first), relative to the
/// provider's base URL as the gateway uses it; `None` for kinds listed elsewhere (Bedrock's
/// list lives on the control-plane host, Vertex has no per-project list of publisher models).
pub fn page_path(
    kind: ProviderKind,
    azure_deployments: bool,
    cursor: Option<&str>,
) -> Option<String> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    Some(match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => "/models".into(),
        ProviderKind::AzureOpenai if azure_deployments => {
            "/openai/deployments?api-version=2022-12-01".into()
        }
        ProviderKind::AzureOpenai => "/models".into(),
        ProviderKind::Anthropic => match cursor {
            Some(c) => format!("/v1/models?limit={PAGE_SIZE}&after_id={}", enc(c)),
            None => format!("/v1/models?limit={PAGE_SIZE}"),
        },
        ProviderKind::Gemini => match cursor {
            Some(c) => format!("/v1beta/models?pageSize={PAGE_SIZE}&pageToken={}", enc(c)),
            None => format!("/v1beta/models?pageSize={PAGE_SIZE}"),
        },
        ProviderKind::Bedrock | ProviderKind::Vertex => return None,
    })
}

#[derive(Deserialize)]
struct OpenAiList {
    data: Vec<OpenAiModel>,
}

#[derive(Deserialize)]
struct OpenAiModel {
    id: String,
    #[serde(default)]
    created: Option<i64>,
}

#[derive(Deserialize)]
struct AnthropicList {
    data: Vec<AnthropicModel>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicModel {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiList {
    #[serde(default)]
    models: Vec<GeminiModel>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiModel {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    input_token_limit: Option<u64>,
    #[serde(default)]
    supported_generation_methods: Vec<String>,
    #[serde(default)]
    thinking: bool,
}

#[derive(Deserialize)]
struct AzureDeployments {
    data: Vec<AzureDeployment>,
}

#[derive(Deserialize)]
struct AzureDeployment {
    id: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    created_at: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BedrockList {
    #[serde(default)]
    model_summaries: Vec<BedrockModel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BedrockModel {
    model_id: String,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    input_modalities: Vec<String>,
    #[serde(default)]
    output_modalities: Vec<String>,
    #[serde(default)]
    inference_types_supported: Vec<String>,
    #[serde(default)]
    model_lifecycle: Option<BedrockLifecycle>,
}

#[derive(Deserialize)]
struct BedrockLifecycle {
    status: String,
}

fn bad(kind: &str, e: serde_json::Error) -> String {
    format!("not a {kind} model list: {e}")
}

/// Parses one page of `kind`'s model list.
pub fn parse_page(
    kind: ProviderKind,
    azure_deployments: bool,
    body: &[u8],
) -> Result<Page, String> {
    match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => openai(body),
        ProviderKind::AzureOpenai if azure_deployments => azure(body),
        ProviderKind::AzureOpenai => openai(body),
        ProviderKind::Anthropic => anthropic(body),
        ProviderKind::Gemini => gemini(body),
        ProviderKind::Bedrock => bedrock(body),
        ProviderKind::Vertex => Err("Vertex models are not listed per project".into()),
    }
}

fn openai(body: &[u8]) -> Result<Page, String> {
    let list: OpenAiList = serde_json::from_slice(body).map_err(|e| bad("OpenAI", e))?;
    Ok(Page {
        models: list
            .data
            .into_iter()
            .map(|m| Discovered {
                tags: tags_from_name(&m.id),
                id: m.id,
                display_name: None,
                context_window: None,
                base_model: None,
                tags_from_metadata: false,
                created: m.created.filter(|c| *c > 0),
            })
            .collect(),
        next: None,
    })
}

fn anthropic(body: &[u8]) -> Result<Page, String> {
    let list: AnthropicList = serde_json::from_slice(body).map_err(|e| bad("Anthropic", e))?;
    let next = if list.has_more {
        list.last_id
            .or_else(|| list.data.last().map(|m| m.id.clone()))
    } else {
        None
    };
    Ok(Page {
        models: list
            .data
            .into_iter()
            .map(|m| {
                // Every Claude model listed chats with tools and images.
                let mut tags = vec![Tag::Chat, Tag::FunctionCalling, Tag::Vision];
                if reasoning_name(&m.id) {
                    tags.push(Tag::Reasoning);
                }
                tags.sort();
                Discovered {
                    created: m.created_at.as_deref().and_then(unix_from_rfc3339),
                    id: m.id,
                    display_name: m.display_name,
                    tags,
                    context_window: None,
                    base_model: None,
                    tags_from_metadata: true,
                }
            })
            .collect(),
        next,
    })
}

fn gemini(body: &[u8]) -> Result<Page, String> {
    let list: GeminiList = serde_json::from_slice(body).map_err(|e| bad("Gemini", e))?;
    Ok(Page {
        models: list
            .models
            .into_iter()
            .map(|m| {
                let methods = &m.supported_generation_methods;
                let has = |name: &str| methods.iter().any(|x| x == name);
                let id = m.name.strip_prefix("models/").unwrap_or(&m.name).to_owned();
                let mut tags = Vec::new();
                if has("generateContent") {
                    tags.extend([Tag::Chat, Tag::FunctionCalling, Tag::Vision]);
                }
                if has("embedContent") || has("batchEmbedContents") {
                    tags.push(Tag::Embeddings);
                }
                if has("predict") || id.contains("image") {
                    tags.push(Tag::ImageGeneration);
                }
                if m.thinking {
                    tags.push(Tag::Reasoning);
                }
                tags.sort();
                tags.dedup();
                Discovered {
                    id,
                    display_name: m.display_name,
                    tags,
                    context_window: m.input_token_limit,
                    base_model: None,
                    tags_from_metadata: true,
                    created: None,
                }
            })
            .collect(),
        next: list.next_page_token.filter(|t| !t.is_empty()),
    })
}

fn azure(body: &[u8]) -> Result<Page, String> {
    let list: AzureDeployments =
        serde_json::from_slice(body).map_err(|e| bad("Azure deployment", e))?;
    Ok(Page {
        models: list
            .data
            .into_iter()
            // A deployment still being created (or failed) serves nothing yet.
            .filter(|d| d.status.as_deref().is_none_or(|s| s == "succeeded"))
            .map(|d| Discovered {
                tags: tags_from_name(d.model.as_deref().unwrap_or(&d.id)),
                id: d.id,
                display_name: None,
                context_window: None,
                base_model: d.model,
                tags_from_metadata: false,
                created: d.created_at.filter(|c| *c > 0),
            })
            .collect(),
        next: None,
    })
}

fn bedrock(body: &[u8]) -> Result<Page, String> {
    bedrock_catalog(body).map(|(models, _)| Page { models, next: None })
}

/// Tags by model id.
pub type TagsById = std::collections::HashMap<String, Vec<Tag>>;

/// Bedrock's foundation models: those invoked by their own id (active, on demand), and the
/// tags of every active one by id (models served only through inference profiles included).
pub fn bedrock_catalog(body: &[u8]) -> Result<(Vec<Discovered>, TagsById), String> {
    let list: BedrockList = serde_json::from_slice(body).map_err(|e| bad("Bedrock", e))?;
    let mut on_demand = Vec::new();
    let mut tags_by_id = TagsById::new();
    // Legacy models refuse new requests.
    for m in list.model_summaries.into_iter().filter(|m| {
        m.model_lifecycle
            .as_ref()
            .is_none_or(|l| l.status == "ACTIVE")
    }) {
        let input = |x: &str| m.input_modalities.iter().any(|v| v == x);
        let output = |x: &str| m.output_modalities.iter().any(|v| v == x);
        let mut tags = Vec::new();
        if output("TEXT") {
            tags.extend([Tag::Chat, Tag::FunctionCalling]);
        }
        if input("IMAGE") && output("TEXT") {
            tags.push(Tag::Vision);
        }
        if output("EMBEDDING") {
            tags.push(Tag::Embeddings);
        }
        if output("IMAGE") {
            tags.push(Tag::ImageGeneration);
        }
        if reasoning_name(&m.model_id) {
            tags.push(Tag::Reasoning);
        }
        tags.sort();
        tags.dedup();
        tags_by_id.insert(m.model_id.clone(), tags.clone());
        // Provisioned-only models need a throughput ARN, profile-only ones a profile id.
        let direct = m.inference_types_supported.is_empty()
            || m.inference_types_supported.iter().any(|t| t == "ON_DEMAND");
        if direct {
            on_demand.push(Discovered {
                id: m.model_id,
                display_name: m.model_name,
                tags,
                context_window: None,
                base_model: None,
                tags_from_metadata: true,
                created: None,
            });
        }
    }
    Ok((on_demand, tags_by_id))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BedrockProfiles {
    #[serde(default)]
    inference_profile_summaries: Vec<BedrockProfile>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BedrockProfile {
    inference_profile_id: String,
    #[serde(default)]
    inference_profile_name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    models: Vec<BedrockProfileModel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BedrockProfileModel {
    model_arn: String,
}

/// One page of Bedrock's `ListInferenceProfiles`: each active profile is a model id requests
/// may use (`us.anthropic.claude-...`), able to do what the model behind it can.
pub fn parse_profiles(body: &[u8], tags_by_id: &TagsById) -> Result<Page, String> {
    let list: BedrockProfiles =
        serde_json::from_slice(body).map_err(|e| bad("Bedrock inference profile", e))?;
    Ok(Page {
        models: list
            .inference_profile_summaries
            .into_iter()
            .filter(|p| p.status.as_deref().is_none_or(|s| s == "ACTIVE"))
            .map(|p| {
                let model = p
                    .models
                    .first()
                    .and_then(|m| m.model_arn.rsplit_once("foundation-model/"))
                    .map(|(_, id)| id.to_owned());
                let known = model.as_ref().and_then(|m| tags_by_id.get(m));
                Discovered {
                    tags: known
                        .cloned()
                        .unwrap_or_else(|| tags_from_name(&p.inference_profile_id)),
                    tags_from_metadata: known.is_some(),
                    id: p.inference_profile_id,
                    display_name: p.inference_profile_name,
                    context_window: None,
                    base_model: model,
                    created: None,
                }
            })
            .collect(),
        next: list.next_token.filter(|t| !t.is_empty()),
    })
}

// ---- fetching ------------------------------------------------------------------------------

/// Largest model list page read (a provider answering more is refused, not read on).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// The request for one page: `cursor` from the previous page (`None`: the first).
fn page_request(
    http: &reqwest::Client,
    provider: &ProviderRow,
    secret: &str,
    cursor: Option<&str>,
) -> Result<reqwest::RequestBuilder, String> {
    let base = provider.base_url.trim_end_matches('/');
    let path = page_path(provider.kind, azure_deployments(provider), cursor)
        .ok_or("this kind of provider has no model list")?;
    Ok(domain::authorize(
        http.get(format!("{base}{path}")),
        provider.kind,
        secret,
    ))
}

/// Azure with deployment URLs lists deployments (what requests name); its v1 API, models.
fn azure_deployments(provider: &ProviderRow) -> bool {
    provider.kind == ProviderKind::AzureOpenai && provider.settings.api_version.is_some()
}

/// `ListFoundationModels` on Bedrock's control host (`bedrock.{region}.amazonaws.com` beside
/// `bedrock-runtime.{region}...`; another base URL, such as a gateway's, is asked itself),
/// signed with SigV4 for service `bedrock`, or with a Bedrock API key as a bearer token.
fn bedrock_request(
    http: &reqwest::Client,
    provider: &ProviderRow,
    secret: &str,
    operation: &str,
    query: &str,
) -> Result<reqwest::RequestBuilder, String> {
    let mut upstream = domain::Upstream::parse(&provider.base_url)?;
    if let Some(rest) = upstream.host.strip_prefix("bedrock-runtime.") {
        upstream.host = format!("bedrock.{rest}");
    }
    let scheme = if upstream.tls { "https" } else { "http" };
    let authority = upstream.authority();
    let path = format!("{}{operation}", upstream.path_prefix);
    let url = if query.is_empty() {
        format!("{scheme}://{authority}{path}")
    } else {
        format!("{scheme}://{authority}{path}?{query}")
    };
    let req = http.get(url);
    let Some(creds) = switchyard_filter::sigv4::Credentials::parse(secret) else {
        return Ok(req.header("authorization", format!("Bearer {secret}")));
    };
    let region = provider.settings.region.as_deref().unwrap_or("us-east-1");
    let signed = switchyard_filter::sigv4::sign(
        &switchyard_filter::sigv4::Request {
            method: "GET",
            host: &authority,
            path: &path,
            query,
            content_type: "",
            body: b"",
        },
        &creds,
        region,
        "bedrock",
        &switchyard_filter::sigv4::amz_date(crate::store::now().max(0) as u64),
    );
    let mut req = req
        .header("authorization", signed.authorization)
        .header("x-amz-date", signed.amz_date);
    if let Some(token) = signed.security_token {
        req = req.header("x-amz-security-token", token);
    }
    Ok(req)
}

/// Reads an answer's body, refusing one over `limit` bytes.
async fn body_within(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the model list is over {} MiB", limit >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What went wrong on the way, without the URL (it may carry a pagination token).
fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the provider did not answer in time".into()
    } else if e.is_connect() {
        "could not connect to the provider".into()
    } else if e.is_redirect() {
        "the provider redirected (not followed)".into()
    } else {
        "the provider's answer could not be read".into()
    }
}

/// The start of an error body, as one printable line: provider error messages help, but some
/// providers echo the key they were given, so the key (and each part of an AWS key pair) is
/// taken out first.
fn excerpt(body: &[u8], secret: &str) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    let parts = std::iter::once(secret).chain(secret.split(':'));
    for part in parts.filter(|p| p.len() >= 8) {
        text = text.replace(part, "[redacted]");
    }
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line.trim().to_owned()
}

/// Most models one provider may list: a provider listing more (a user's, say) would swell
/// every Envoy's configuration.
pub const MAX_MODELS: usize = 2000;

/// Every model the provider lists, all pages; an error when any page fails (then nothing is
/// recorded: a partial list would mark models vanished that are not).
pub async fn list(
    http: &reqwest::Client,
    provider: &ProviderRow,
    secret: &str,
) -> Result<Vec<Discovered>, String> {
    if provider.kind == ProviderKind::Bedrock {
        return bedrock_list(http, provider, secret).await;
    }
    let deployments = azure_deployments(provider);
    follow(Vec::new(), |cursor| async move {
        let req = page_request(http, provider, secret, cursor.as_deref())?;
        let body = fetch(req, secret, &[]).await?.unwrap_or_default();
        parse_page(provider.kind, deployments, &body).map(Some)
    })
    .await
}

/// Reads a list page by page, from the first (cursor `None`) to one that names no new cursor
/// or to `page` answering `None` (no more to read), adding each page's models to `models`;
/// names clients could not send (empty, too long, control characters, spaces) are left out.
/// At most [`MAX_PAGES`] pages and [`MAX_MODELS`] models.
async fn follow<F, Fut>(mut models: Vec<Discovered>, mut page: F) -> Result<Vec<Discovered>, String>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Page>, String>>,
{
    let sendable = |m: &Discovered| domain::check_model_name(&m.id).is_ok();
    models.retain(sendable);
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let Some(p) = page(cursor.clone()).await? else {
            return Ok(models);
        };
        models.extend(p.models.into_iter().filter(sendable));
        if models.len() > MAX_MODELS {
            return Err(format!(
                "the provider lists over {MAX_MODELS} models; give it a static list instead"
            ));
        }
        match p.next {
            Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
            _ => return Ok(models),
        }
    }
    Err(format!("the provider's list runs over {MAX_PAGES} pages"))
}

/// Sends a request and reads its answer: the body of a 2xx, else an error naming the status
/// (`Ok(None)` for a status in `absent`: the list is not there).
async fn fetch(
    req: reqwest::RequestBuilder,
    secret: &str,
    absent: &[u16],
) -> Result<Option<Vec<u8>>, String> {
    let resp = req.send().await.map_err(|e| transport(&e))?;
    let status = resp.status();
    let body = body_within(resp, MAX_PAGE_BYTES).await?;
    if absent.contains(&status.as_u16()) {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!(
            "the provider answered {}: {}",
            status.as_u16(),
            excerpt(&body, secret)
        ));
    }
    Ok(Some(body))
}

/// AWS's query encoding (SigV4's canonical form): unreserved characters kept, the rest `%XX`.
fn aws_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Bedrock: the foundation models invoked by their own id, then every inference profile
/// (`ListInferenceProfiles`, paged by `nextToken`), which is how newer models are invoked on
/// demand. A key without permission to list profiles (403) lists the foundation models only.
async fn bedrock_list(
    http: &reqwest::Client,
    provider: &ProviderRow,
    secret: &str,
) -> Result<Vec<Discovered>, String> {
    let req = bedrock_request(http, provider, secret, "/foundation-models", "")?;
    let body = fetch(req, secret, &[]).await?.unwrap_or_default();
    let (models, tags_by_id) = bedrock_catalog(&body)?;
    let tags_by_id = &tags_by_id;
    follow(models, |token| async move {
        let query = match &token {
            None => "maxResults=1000".to_owned(),
            Some(t) => format!("maxResults=1000&nextToken={}", aws_encode(t)),
        };
        let req = bedrock_request(http, provider, secret, "/inference-profiles", &query)?;
        match fetch(req, secret, &[403, 404]).await? {
            Some(body) => parse_profiles(&body, tags_by_id).map(Some),
            None => Ok(None),
        }
    })
    .await
}

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

/// Discovery for the running control plane: its schedule and each provider's latest outcome.
#[derive(Default)]
pub struct Runner {
    pub spec: crate::config::DiscoverySpec,
    statuses: std::sync::Mutex<std::collections::BTreeMap<String, Status>>,
}

impl Runner {
    pub fn new(spec: crate::config::DiscoverySpec) -> Runner {
        Runner {
            spec,
            statuses: Default::default(),
        }
    }

    pub fn status(&self, provider: &str) -> Option<Status> {
        self.statuses.lock().ok()?.get(provider).cloned()
    }

    fn set_status(&self, provider: &str, status: Status) {
        if let Ok(mut s) = self.statuses.lock() {
            s.insert(provider.to_owned(), status);
        }
    }
}

/// What a discovery uses: the store, the master key (to open a provider key), the SSRF guard
/// (users' providers), the runner (status, timeout) and the publisher (what it changed).
#[derive(Clone)]
pub struct Discoverer {
    pub store: crate::store::Store,
    pub secrets: std::sync::Arc<crate::secrets::Secrets>,
    pub guard: crate::ssrf::Guard,
    pub runner: std::sync::Arc<Runner>,
    pub publisher: crate::reconcile::Publisher,
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

/// Lists the provider's models with one of its keys and records what changed; publishes when
/// clients may see a difference.
pub async fn discover(
    app: &Discoverer,
    provider: &ProviderRow,
) -> Result<crate::store::DiscoveryChange, Failure> {
    let outcome = discover_inner(app, provider).await;
    app.runner.set_status(
        &provider.name,
        Status {
            at: crate::store::now(),
            ok: outcome.is_ok(),
            error: outcome.as_ref().err().map(|f| f.message().to_owned()),
            listed: outcome.as_ref().map_or(0, |c| c.listed),
        },
    );
    match &outcome {
        Ok(change) if change.changed() => {
            tracing::info!(provider = %provider.name, added = change.added.len(), returned = change.returned.len(), vanished = change.vanished.len(), updated = change.updated.len(), "models discovered");
            crate::metrics::add(&crate::metrics::METRICS.discoveries_changed, 1);
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(provider = %provider.name, "model discovery failed: {}", e.message());
            crate::metrics::add(&crate::metrics::METRICS.discoveries_failed, 1);
        }
    }
    outcome
}

async fn discover_inner(
    app: &Discoverer,
    provider: &ProviderRow,
) -> Result<crate::store::DiscoveryChange, Failure> {
    let not_possible = |m: &str| Failure::NotPossible(m.to_owned());
    let internal = |e: &dyn std::fmt::Display| Failure::Internal(e.to_string());
    if !provider.settings.discovers(provider.kind) {
        return Err(not_possible(
            "discovery is off for this provider (or its kind has no model list)",
        ));
    }
    let keys = app
        .store
        .list_provider_keys()
        .await
        .map_err(|e| internal(&e))?;
    let refused = app.publisher.figures().probes.refused_keys;
    let mut candidates: Vec<_> = keys
        .iter()
        .filter(|k| k.provider_id == provider.id)
        .collect();
    // A key the provider refused at its latest probe is tried last.
    candidates.sort_by_key(|k| refused.contains(&k.id));
    let key = candidates
        .first()
        .ok_or_else(|| not_possible("the provider has no key to list its models with"))?;
    let secret = app
        .secrets
        .master
        .open(&key.secret_sealed)
        .map_err(|_| not_possible("the provider key could not be opened"))?;
    // Redirects are not followed (one to an address literal would pass by the resolver);
    // users' providers are reached through the SSRF guard's resolver only.
    let timeout = std::time::Duration::from_secs(app.runner.spec.timeout_secs.max(1));
    let client = if provider.access.untrusted() {
        app.guard
            .vet_url(&provider.base_url)
            .await
            .map_err(|e| Failure::NotPossible(format!("base_url refused: {e}")))?;
        app.guard.client_builder()
    } else {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
    };
    let client = client.timeout(timeout).build().map_err(|e| internal(&e))?;
    let found = list(&client, provider, &secret)
        .await
        .map_err(Failure::Provider)?;
    let enable = provider.settings.new_models.unwrap_or_default() == domain::NewModels::Enabled;
    let change = app
        .store
        .apply_discovery(&provider.id, &found, enable)
        .await
        .map_err(|e| internal(&e))?;
    if change.changed() {
        app.publisher.publish().await.map_err(|e| internal(&e))?;
    }
    Ok(change)
}

/// Unix seconds of an RFC 3339 time such as `2025-09-29T00:00:00Z` (fractions and offsets
/// taken into account); `None` when it is not one.
pub fn unix_from_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let v = h * 3600 + m * 60;
            if rest.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Reasoning families by name (where the list says nothing about it).
fn reasoning_name(id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    let bare = id.rsplit('/').next().unwrap_or(&id);
    ["o1", "o3", "o4"].iter().any(|p| bare.starts_with(p))
        || bare.starts_with("gpt-5")
        || bare.contains("reasoner")
        || bare.contains("thinking")
        || bare.contains("deepseek-r1")
        || bare.contains("qwq")
        || bare.contains("claude-sonnet-4")
        || bare.contains("claude-opus-4")
        || bare.contains("claude-3-7")
        || bare.contains("claude-haiku-4")
}

/// Capabilities from a model's name, for lists without metadata (OpenAI-style).
pub fn tags_from_name(id: &str) -> Vec<Tag> {
    let lower = id.to_ascii_lowercase();
    let mut tags = Vec::new();
    if lower.contains("embed") {
        tags.push(Tag::Embeddings);
    } else if lower.contains("dall-e") || lower.contains("gpt-image") || lower.contains("imagen") {
        tags.push(Tag::ImageGeneration);
    } else if lower.contains("whisper")
        || lower.contains("tts")
        || lower.contains("moderation")
        || lower.contains("transcribe")
    {
        // Audio and moderation models: none of the tags apply.
    } else {
        tags.extend([Tag::Chat, Tag::FunctionCalling]);
        let vision = [
            "gpt-4o",
            "gpt-4.1",
            "gpt-4-turbo",
            "gpt-5",
            "o1",
            "o3",
            "o4",
            "vision",
            "-vl",
            "pixtral",
            "llava",
        ];
        if vision.iter().any(|v| lower.contains(v)) {
            tags.push(Tag::Vision);
        }
        if reasoning_name(&lower) {
            tags.push(Tag::Reasoning);
        }
    }
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.models.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn openai_lists_are_one_page_and_tagged_by_name() {
        let page = parse_page(ProviderKind::Openai, false, &fixture("openai.json")).unwrap();
        assert_eq!(page.next, None);
        assert_eq!(
            ids(&page),
            [
                "gpt-4o-mini",
                "o3-mini",
                "text-embedding-3-small",
                "dall-e-3",
                "whisper-1"
            ]
        );
        let tags: Vec<&[Tag]> = page.models.iter().map(|m| m.tags.as_slice()).collect();
        assert_eq!(tags[0], [Tag::Chat, Tag::Vision, Tag::FunctionCalling]);
        assert!(tags[1].contains(&Tag::Reasoning));
        assert_eq!(tags[2], [Tag::Embeddings]);
        assert_eq!(tags[3], [Tag::ImageGeneration]);
        assert!(tags[4].is_empty());
    }

    #[test]
    fn anthropic_pages_follow_last_id() {
        let first = parse_page(
            ProviderKind::Anthropic,
            false,
            &fixture("anthropic_page1.json"),
        )
        .unwrap();
        assert_eq!(
            ids(&first),
            ["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"]
        );
        assert_eq!(first.next.as_deref(), Some("claude-opus-4-1-20250805"));
        assert_eq!(
            first.models[0].display_name.as_deref(),
            Some("Claude Sonnet 4.5")
        );
        let last = parse_page(
            ProviderKind::Anthropic,
            false,
            &fixture("anthropic_page2.json"),
        )
        .unwrap();
        assert_eq!(ids(&last), ["claude-3-5-haiku-20241022"]);
        assert_eq!(last.next, None);
        assert!(!last.models[0].tags.contains(&Tag::Reasoning));
        assert_eq!(
            page_path(ProviderKind::Anthropic, false, first.next.as_deref()).unwrap(),
            "/v1/models?limit=100&after_id=claude-opus-4-1-20250805"
        );
    }

    #[test]
    fn gemini_pages_follow_the_token_and_methods_give_tags() {
        let first = parse_page(ProviderKind::Gemini, false, &fixture("gemini_page1.json")).unwrap();
        assert_eq!(ids(&first), ["gemini-2.5-flash", "gemini-embedding-001"]);
        assert_eq!(first.models[0].context_window, Some(1_048_576));
        assert!(first.models[0].tags.contains(&Tag::Reasoning));
        assert_eq!(first.models[1].tags, [Tag::Embeddings]);
        assert_eq!(first.next.as_deref(), Some("Chlnb29nbGUvZ2VtaW5p+/="));
        assert_eq!(
            page_path(ProviderKind::Gemini, false, first.next.as_deref()).unwrap(),
            "/v1beta/models?pageSize=100&pageToken=Chlnb29nbGUvZ2VtaW5p%2B%2F%3D"
        );
        let last = parse_page(ProviderKind::Gemini, false, &fixture("gemini_page2.json")).unwrap();
        assert_eq!(ids(&last), ["imagen-4.0-generate-001"]);
        assert_eq!(last.models[0].tags, [Tag::ImageGeneration]);
        assert_eq!(last.next, None);
    }

    #[test]
    fn azure_deployments_name_their_model_and_only_ready_ones_count() {
        let page = parse_page(
            ProviderKind::AzureOpenai,
            true,
            &fixture("azure_deployments.json"),
        )
        .unwrap();
        assert_eq!(ids(&page), ["chat-prod", "embed"]);
        assert_eq!(page.models[0].base_model.as_deref(), Some("gpt-4o"));
        assert!(page.models[0].tags.contains(&Tag::Vision));
        assert_eq!(page.models[1].tags, [Tag::Embeddings]);
    }

    #[test]
    fn bedrock_modalities_give_tags_and_legacy_or_provisioned_models_are_left_out() {
        let page = parse_page(ProviderKind::Bedrock, false, &fixture("bedrock.json")).unwrap();
        assert_eq!(
            ids(&page),
            [
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                "amazon.titan-embed-text-v2:0",
                "amazon.nova-canvas-v1:0"
            ]
        );
        assert!(page.models[0].tags.contains(&Tag::Vision));
        assert!(page.models[0].tags.contains(&Tag::Reasoning));
        assert_eq!(page.models[1].tags, [Tag::Embeddings]);
        assert_eq!(page.models[2].tags, [Tag::ImageGeneration]);
    }

    #[test]
    fn bedrock_profiles_take_the_tags_of_their_model() {
        let (on_demand, tags) = bedrock_catalog(&fixture("bedrock.json")).unwrap();
        assert_eq!(on_demand.len(), 3);
        let page = parse_profiles(&fixture("bedrock_profiles.json"), &tags).unwrap();
        assert_eq!(
            ids(&page),
            [
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "us.meta.llama4-maverick-17b-instruct-v1:0"
            ]
        );
        let sonnet = &page.models[0];
        assert_eq!(sonnet.display_name.as_deref(), Some("US Claude Sonnet 4.5"));
        assert!(sonnet.tags_from_metadata && sonnet.tags.contains(&Tag::Vision));
        assert_eq!(
            sonnet.base_model.as_deref(),
            Some("anthropic.claude-sonnet-4-5-20250929-v1:0")
        );
        assert!(
            !page.models[1].tags_from_metadata,
            "its model is not in the list"
        );
        assert_eq!(page.next.as_deref(), Some("eyJ0b2tlbiI6IDJ9+/="));
        assert_eq!(
            aws_encode("eyJ0b2tlbiI6IDJ9+/="),
            "eyJ0b2tlbiI6IDJ9%2B%2F%3D"
        );
    }

    #[test]
    fn error_excerpts_are_one_short_line_without_the_key() {
        let body = b"{\"error\": \"Incorrect API key provided: sk-secret-123456\nbye\"}";
        let e = excerpt(body, "sk-secret-123456");
        assert_eq!(
            e,
            "{\"error\": \"Incorrect API key provided: [redacted] bye\"}"
        );
        let aws = excerpt(
            b"key AKIAEXAMPLE1 and wJalrXUtnFEMI/K7MDENG",
            "AKIAEXAMPLE1:wJalrXUtnFEMI/K7MDENG",
        );
        assert!(!aws.contains("AKIA") && !aws.contains("wJalr"), "{aws}");
        assert_eq!(excerpt(&[b'x'; 1000], "k").len(), 200);
    }

    #[test]
    fn rfc3339_times_become_unix_seconds() {
        assert_eq!(unix_from_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_from_rfc3339("2025-09-29T00:00:00Z"),
            Some(1_759_104_000)
        );
        assert_eq!(
            unix_from_rfc3339("2025-09-29T02:00:00.123+02:00"),
            Some(1_759_104_000)
        );
        assert_eq!(
            unix_from_rfc3339("2024-02-29T12:30:15Z"),
            Some(1_709_209_815)
        );
        assert_eq!(unix_from_rfc3339("2025-13-01T00:00:00Z"), None);
        assert_eq!(unix_from_rfc3339("yesterday"), None);
        assert_eq!(unix_from_rfc3339("2025-09-29T00:00:00"), None);
    }

    #[test]
    fn bad_lists_are_errors_that_name_the_format() {
        for (kind, name) in [
            (ProviderKind::Openai, "OpenAI"),
            (ProviderKind::Anthropic, "Anthropic"),
            (ProviderKind::Gemini, "Gemini"),
            (ProviderKind::Bedrock, "Bedrock"),
        ] {
            let err = parse_page(kind, false, b"<html>").unwrap_err();
            assert!(err.contains(name), "{err}");
        }
        assert!(page_path(ProviderKind::Vertex, false, None).is_none());
    }
}
