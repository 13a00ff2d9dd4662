//! Amazon Bedrock: the runtime host `bedrock-runtime.{region}.amazonaws.com`, requests signed
//! with SigV4 (by the data plane) or a Bedrock API key as a bearer token.
//!
//! Model lists live on the control host `bedrock.{region}.amazonaws.com`:
//! `ListFoundationModels`, `GET /foundation-models`: `{"modelSummaries":[{"modelId",
//! "modelName","providerName","inputModalities","outputModalities",
//! "responseStreamingSupported","inferenceTypesSupported","modelLifecycle":{"status"}}]}`, one
//! page; then `ListInferenceProfiles`, `GET /inference-profiles?maxResults=&nextToken=`:
//! `{"inferenceProfileSummaries":[{"inferenceProfileId","inferenceProfileName","status",
//! "models":[{"modelArn"}]}],"nextToken"}` (newer models are invoked on demand through a
//! profile id only). <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_ListFoundationModels.html>
//! Capabilities come from the modalities.

use serde::Deserialize;

use super::listing::not_a_list;
use super::tags::reasoning_name;
use super::{tags_from_name, Discovered, Listing, Page, ProviderSpec, Tag};
use crate::domain::{ProviderSettings, Upstream};

pub struct Bedrock;

impl ProviderSpec for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn check_settings(&self, settings: &mut ProviderSettings) -> Result<(), String> {
        settings.region.as_deref().map_or(Ok(()), check_region)
    }

    fn default_base_url(&self, settings: &ProviderSettings) -> Option<String> {
        let region = settings.region.as_deref()?;
        Some(format!("https://bedrock-runtime.{region}.amazonaws.com"))
    }

    fn complete_settings(
        &self,
        upstream: &Upstream,
        settings: &mut ProviderSettings,
    ) -> Result<(), String> {
        if settings.region.is_none() {
            // `https://bedrock-runtime.<region>.amazonaws.com` names its region.
            let region = upstream
                .host
                .strip_prefix("bedrock-runtime.")
                .and_then(|h| h.split('.').next())
                .filter(|r| !r.is_empty())
                .ok_or("region is required for kind bedrock when base_url does not name it")?;
            settings.region = Some(region.to_owned());
        }
        Ok(())
    }

    /// The foundation model list (its on-demand models; see [`Bedrock::listing`]).
    fn parse_models(&self, _settings: &ProviderSettings, body: &[u8]) -> Result<Page, String> {
        catalog(body).map(|(models, _)| Page { models, next: None })
    }

    fn lists_models(&self) -> bool {
        true
    }

    /// The foundation models invoked by their own id, then every inference profile (paged by
    /// `nextToken`), which is how newer models are invoked on demand. A key without permission
    /// to list profiles (403) lists the foundation models only.
    fn listing<'a>(
        &'a self,
        base_url: &'a str,
        settings: &'a ProviderSettings,
        secret: &'a str,
    ) -> Option<Box<dyn Listing + 'a>> {
        Some(Box::new(BedrockListing {
            base_url,
            settings,
            secret,
            tags_by_id: TagsById::new(),
        }))
    }
}

fn check_region(r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("region {r:?} must look like us-east-1"))
    }
}

struct BedrockListing<'a> {
    base_url: &'a str,
    settings: &'a ProviderSettings,
    secret: &'a str,
    /// The tags of every active foundation model, for the profiles that serve them.
    tags_by_id: TagsById,
}

impl Listing for BedrockListing<'_> {
    fn lead(&self, http: &reqwest::Client) -> Result<Option<reqwest::RequestBuilder>, String> {
        self.control_request(http, "/foundation-models", "")
            .map(Some)
    }

    fn read_lead(&mut self, body: &[u8]) -> Result<Vec<Discovered>, String> {
        let (models, tags_by_id) = catalog(body)?;
        self.tags_by_id = tags_by_id;
        Ok(models)
    }

    fn page(
        &self,
        http: &reqwest::Client,
        cursor: Option<&str>,
    ) -> Result<reqwest::RequestBuilder, String> {
        let query = match cursor {
            None => "maxResults=1000".to_owned(),
            Some(t) => format!("maxResults=1000&nextToken={}", aws_encode(t)),
        };
        self.control_request(http, "/inference-profiles", &query)
    }

    fn absent(&self) -> &'static [u16] {
        &[403, 404]
    }

    fn read_page(&mut self, body: &[u8]) -> Result<Page, String> {
        parse_profiles(body, &self.tags_by_id)
    }
}

impl BedrockListing<'_> {
    /// A `GET` of `operation` on Bedrock's control host (`bedrock.{region}.amazonaws.com`
    /// beside `bedrock-runtime.{region}...`; another base URL, such as a gateway's, is asked
    /// itself), signed with SigV4 for service `bedrock`, or with a Bedrock API key as a bearer
    /// token.
    fn control_request(
        &self,
        http: &reqwest::Client,
        operation: &str,
        query: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let mut upstream = Upstream::parse(self.base_url)?;
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
        let Some(creds) = switchyard_aws::sigv4::Credentials::parse(self.secret) else {
            return Ok(req.header("authorization", format!("Bearer {}", self.secret)));
        };
        let region = self.settings.region.as_deref().unwrap_or("us-east-1");
        let signed = switchyard_aws::sigv4::sign(
            &switchyard_aws::sigv4::Request {
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
            &switchyard_aws::sigv4::amz_date(crate::store::now().max(0) as u64),
        );
        let mut req = req
            .header("authorization", signed.authorization)
            .header("x-amz-date", signed.amz_date);
        if let Some(token) = signed.security_token {
            req = req.header("x-amz-security-token", token);
        }
        Ok(req)
    }
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

/// Tags by model id.
type TagsById = std::collections::HashMap<String, Vec<Tag>>;

/// Bedrock's foundation models: those invoked by their own id (active, on demand), and the
/// tags of every active one by id (models served only through inference profiles included).
fn catalog(body: &[u8]) -> Result<(Vec<Discovered>, TagsById), String> {
    let list: BedrockList = serde_json::from_slice(body).map_err(|e| not_a_list("Bedrock", e))?;
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
fn parse_profiles(body: &[u8], tags_by_id: &TagsById) -> Result<Page, String> {
    let list: BedrockProfiles =
        serde_json::from_slice(body).map_err(|e| not_a_list("Bedrock inference profile", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::listing::{fixture, ids};

    #[test]
    fn bedrock_modalities_give_tags_and_legacy_or_provisioned_models_are_left_out() {
        let page = Bedrock
            .parse_models(&ProviderSettings::default(), &fixture("bedrock.json"))
            .unwrap();
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
        let err = Bedrock
            .parse_models(&ProviderSettings::default(), b"<html>")
            .unwrap_err();
        assert!(err.contains("Bedrock"), "{err}");
    }

    #[test]
    fn bedrock_profiles_take_the_tags_of_their_model() {
        let (on_demand, tags) = catalog(&fixture("bedrock.json")).unwrap();
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
    fn lists_are_asked_of_the_control_host() {
        let http = reqwest::Client::new();
        let settings = ProviderSettings {
            region: Some("us-west-2".into()),
            ..Default::default()
        };
        let listing = Bedrock
            .listing(
                "https://bedrock-runtime.us-west-2.amazonaws.com",
                &settings,
                "bedrock-api-key",
            )
            .expect("bedrock lists its models");
        let lead = listing
            .lead(&http)
            .unwrap()
            .expect("a lead list")
            .build()
            .unwrap();
        assert_eq!(
            lead.url().as_str(),
            "https://bedrock.us-west-2.amazonaws.com/foundation-models"
        );
        assert_eq!(lead.headers()["authorization"], "Bearer bedrock-api-key");
        let page = listing.page(&http, Some("t+/")).unwrap().build().unwrap();
        assert_eq!(
            page.url().as_str(),
            "https://bedrock.us-west-2.amazonaws.com/inference-profiles?maxResults=1000&nextToken=t%2B%2F"
        );
        assert_eq!(listing.absent(), [403, 404]);
    }
}
