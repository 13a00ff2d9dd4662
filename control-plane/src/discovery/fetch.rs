//! Fetching a provider's model list: the requests its kind's listing makes, sent and answered
//! within bounds ([`MAX_PAGES`] pages, [`MAX_PAGE_BYTES`] a page, [`MAX_MODELS`] models), with
//! errors that never carry the key or a URL.

use crate::domain;
use crate::providers::{self, Discovered};
use crate::store::ProviderRow;

/// Most pages read from one provider (a provider that pages for ever stops here).
pub const MAX_PAGES: usize = 50;

/// Largest model list page read (a provider answering more is refused, not read on).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// Most models one provider may list: a provider listing more (a user's, say) would swell
/// every Envoy's configuration.
pub const MAX_MODELS: usize = 2000;

/// Every model the provider lists, all pages; an error when any page fails (then nothing is
/// recorded: a partial list would mark models vanished that are not).
///
/// The listing's lead list comes first; then its pages, from the first (cursor `None`) to one
/// that names no new cursor or one that is absent. Names clients could not send (empty, too
/// long, control characters, spaces) are left out.
pub async fn list(
    http: &reqwest::Client,
    provider: &ProviderRow,
    secret: &str,
) -> Result<Vec<Discovered>, String> {
    let mut listing = providers::spec(provider.kind)
        .listing(&provider.base_url, &provider.settings, secret)
        .ok_or("this kind of provider has no model list")?;
    let sendable = |m: &Discovered| domain::check_model_name(&m.id).is_ok();
    let mut models = match listing.lead(http)? {
        Some(req) => {
            let body = fetch(req, secret, &[]).await?.unwrap_or_default();
            listing.read_lead(&body)?
        }
        None => Vec::new(),
    };
    models.retain(sendable);
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let req = listing.page(http, cursor.as_deref())?;
        let Some(body) = fetch(req, secret, listing.absent()).await? else {
            return Ok(models);
        };
        let p = listing.read_page(&body)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
