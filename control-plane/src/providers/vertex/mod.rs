//! Vertex AI: a Google Cloud project's models at `{location}-aiplatform.googleapis.com` (or
//! `aiplatform.googleapis.com` for `global`), below `/v1/projects/{project}/locations/{location}`.
//! Its keys are service account key files, which the control plane trades for access tokens
//! ([`token`]); the data plane sends those as bearer tokens. There is no per-project list of
//! publisher models, so Vertex is neither listed nor probed.

pub mod token;

use super::{Page, ProviderSpec};
use crate::domain::{ProviderSettings, Upstream};

pub struct Vertex;

impl ProviderSpec for Vertex {
    fn name(&self) -> &'static str {
        "vertex"
    }

    fn check_settings(&self, settings: &mut ProviderSettings) -> Result<(), String> {
        let project = settings
            .project
            .as_deref()
            .ok_or("project is required for kind vertex")?;
        check_gcp_name("project", project)?;
        let location = settings.location.get_or_insert_with(|| "global".into());
        check_gcp_name("location", location)
    }

    fn default_base_url(&self, settings: &ProviderSettings) -> Option<String> {
        Some(match settings.location.as_deref()? {
            "global" => "https://aiplatform.googleapis.com".to_owned(),
            l => format!("https://{l}-aiplatform.googleapis.com"),
        })
    }

    fn check_secret(&self, secret: &str) -> Result<(), String> {
        token::ServiceAccount::parse(secret).map(drop)
    }

    /// A service account key names the URL the control plane asks for tokens: in a user's key
    /// it must be Google's.
    fn check_untrusted_secret(&self, secret: &str) -> Result<(), String> {
        let sa = token::ServiceAccount::parse(secret)?;
        if sa.token_uri != token::GOOGLE_TOKEN_URI {
            return Err(format!(
                "a service account key's token_uri must be {}",
                token::GOOGLE_TOKEN_URI
            ));
        }
        Ok(())
    }

    fn mints_access_tokens(&self) -> bool {
        true
    }

    // Vertex paths name the project and location; models sit below.
    fn path_prefix(&self, upstream: &Upstream, settings: &ProviderSettings) -> String {
        match (&settings.project, &settings.location) {
            (Some(project), Some(location)) => format!(
                "{}/v1/projects/{project}/locations/{location}",
                upstream.path_prefix
            ),
            _ => upstream.path_prefix.clone(),
        }
    }

    fn parse_models(&self, _settings: &ProviderSettings, _body: &[u8]) -> Result<Page, String> {
        Err("Vertex models are not listed per project".into())
    }
}

fn check_gcp_name(what: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {v:?} must be lower-case letters, digits and '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_project_and_location() {
        let upstream = Upstream::parse("https://us-east5-aiplatform.googleapis.com").unwrap();
        let mut settings = ProviderSettings {
            project: Some("my-proj".into()),
            location: Some("us-east5".into()),
            ..Default::default()
        };
        Vertex.check_settings(&mut settings).unwrap();
        assert_eq!(
            Vertex.path_prefix(&upstream, &settings),
            "/v1/projects/my-proj/locations/us-east5"
        );
        assert!(Vertex.mints_access_tokens());
    }

    #[test]
    fn user_keys_must_ask_google_for_tokens() {
        let own = crate::test_support::service_account_json("http://127.0.0.1:1/token");
        assert!(Vertex.check_secret(&own).is_ok());
        let err = Vertex.check_untrusted_secret(&own).unwrap_err();
        assert!(err.contains(token::GOOGLE_TOKEN_URI), "{err}");
        assert!(Vertex.check_secret("sk-not-a-key-file").is_err());
    }
}
