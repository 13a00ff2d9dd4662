//! One attempt's request written out: [`Attempt::prepare`] for the chosen target, then the body
//! (when it changes) and the headers, through the one header-apply function. Both filter roles
//! send their requests this way.

use crate::attempt::{Ask, Attempt};
use crate::config::CLIENT_API_HEADER;
use crate::error::FilterError;
use crate::headers::{self, HeaderBlock};
use crate::request::TopLevel;
use crate::route::Index;
use crate::translate::Translator;

use super::target::Choice;
use super::Outgoing;

/// The request as it goes upstream, besides what the attempt itself sets.
pub(super) struct Extra<'a> {
    /// Headers of the gateway's own (routing, limits) or of the role (authority).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Headers an earlier attempt may have set that this one must not carry.
    pub stale: &'a [String],
}

/// Prepares the request for `choice` from the client's `body` (parsed as `top`) and writes it
/// to `out`; returns the translator for the answer.
#[allow(clippy::too_many_arguments)]
pub(super) fn send(
    index: &Index,
    ask: &Ask,
    body: &[u8],
    top: &TopLevel,
    choice: &Choice,
    now: u64,
    current: &HeaderBlock,
    extra: Extra,
    out: &mut impl Outgoing,
) -> Result<Option<Box<dyn Translator>>, FilterError> {
    let attempt = Attempt::prepare(index, ask, body, top, choice.target, choice.key, now)?;
    if let Some(new_body) = &attempt.body {
        out.set_body(new_body);
    }
    // content-length always matches the body sent (Envoy does not fix it, and a chunked request
    // arrives without one); the gateway key never reaches the provider; only what differs from
    // the headers the request carries is written (each host call costs).
    let mut wanted = attempt.headers(choice.provider);
    wanted.extend_from_slice(extra.headers);
    // An OpenAI client's request now carrying `anthropic-version` is marked, so that Envoy's own
    // error replies keep the client's shape.
    if !ask.endpoint.anthropic() && wanted.iter().any(|(n, _)| *n == "anthropic-version") {
        wanted.push((CLIENT_API_HEADER, b"openai"));
    }
    headers::apply(current, &wanted, extra.stale, |name, value| {
        out.set_header(name, value);
    });
    Ok(attempt.translator)
}
