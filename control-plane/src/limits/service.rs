//! The gRPC rate limit service (`envoy.service.ratelimit.v3`) over [`Limits`]: descriptors read
//! and bounded, answers in the client API's shape.

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use switchyard_contract::ids;
use switchyard_contract::limits::{
    Admit, Charge, RefusalCode, ADMIT_DESCRIPTOR, CHARGE_DESCRIPTOR, RATE_LIMIT_HEADERS,
    REFUSAL_HEADER,
};
use tonic::{Request, Response, Status};

use super::{Admission, Limits, Refusal};

/// Descriptors one call may carry (Envoy sends one): more is not Envoy's doing.
const MAX_DESCRIPTORS: usize = 4;

/// The descriptors' entries as (key, value) pairs.
fn entries(d: &RateLimitDescriptor) -> impl Iterator<Item = (&str, &str)> {
    d.entries.iter().map(|e| (e.key.as_str(), e.value.as_str()))
}

/// Whether `id` may be a key or request id: it becomes part of counter names.
fn plain_id(id: &str) -> bool {
    ids::is_plain(id)
}

fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// The error body of a refusal in the client API's shape.
fn error_body(refusal: &Refusal, anthropic: bool) -> Vec<u8> {
    let kind = if refusal.code == RefusalCode::InsufficientCredits {
        "insufficient_quota"
    } else {
        "rate_limit_error"
    };
    let body = if anthropic {
        serde_json::json!({"type": "error", "error": {"type": "rate_limit_error", "message": refusal.message}})
    } else {
        serde_json::json!({"error": {"message": refusal.message, "type": kind, "param": null, "code": refusal.code.as_str()}})
    };
    body.to_string().into_bytes()
}

/// `x-ratelimit-*` headers in OpenAI's names: limit, remaining and reset of the request
/// window, then of the token window ([`RATE_LIMIT_HEADERS`]' order).
fn window_headers(admission: &Admission, out: &mut Vec<HeaderValue>) {
    for (names, window) in RATE_LIMIT_HEADERS
        .chunks(3)
        .zip([admission.requests, admission.tokens])
    {
        if let (Some((limit, state)), [limit_name, remaining_name, reset_name]) = (window, names) {
            out.push(header(limit_name, limit.to_string()));
            out.push(header(
                remaining_name,
                limit.saturating_sub(state.used).max(0).to_string(),
            ));
            out.push(header(reset_name, format!("{}s", state.reset_secs.max(0))));
        }
    }
}

/// A request's end as Envoy reports it (a [`Charge`]; the cost comes as hits), its ids plain.
fn charge(value: &str) -> Option<Charge<'_>> {
    Charge::parse(value).filter(|c| plain_id(c.key) && plain_id(c.request))
}

/// The gRPC rate limit service over [`Limits`].
pub struct Service(pub std::sync::Arc<Limits>);

impl Service {
    async fn admit(
        &self,
        value: &str,
        now: i64,
        response: &mut RateLimitResponse,
    ) -> Result<(), Status> {
        let admit = Admit::parse(value)
            .filter(|a| plain_id(a.key) && plain_id(a.request))
            .ok_or_else(|| Status::invalid_argument("malformed admission descriptor"))?;
        let admission = self.0.admit(&admit, now).await.map_err(|e| {
            crate::metrics::add(&crate::metrics::METRICS.limits_errors, 1);
            tracing::error!("limits not checked: {e}");
            Status::unavailable("limits unavailable")
        })?;
        let mut headers = Vec::new();
        window_headers(&admission, &mut headers);
        match &admission.refusal {
            Some(r) => crate::metrics::refused(r.code),
            None => crate::metrics::add(&crate::metrics::METRICS.limits_admitted, 1),
        }
        if let Some(refusal) = &admission.refusal {
            response.overall_code = Code::OverLimit as i32;
            response.raw_body = error_body(refusal, admit.anthropic);
            headers.push(header("content-type", "application/json".into()));
            headers.push(header(REFUSAL_HEADER, refusal.code.as_str().into()));
            if let Some(secs) = refusal.retry_after {
                headers.push(header("retry-after", secs.max(1).to_string()));
            }
        }
        response.response_headers_to_add = headers;
        Ok(())
    }

    async fn charge(&self, value: &str, hits: u64, now: i64) {
        let Some(Charge {
            key,
            request,
            tokens,
        }) = charge(value)
        else {
            tracing::warn!("request end not counted: malformed charge descriptor");
            return;
        };
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        let cost = i64::try_from(hits).unwrap_or(i64::MAX);
        let charged = self.0.ended(key, request, tokens, cost, now).await;
        crate::metrics::add(&crate::metrics::METRICS.limits_charges, 1);
        if let Err(e) = charged {
            tracing::warn!(key, request, "request end not counted: {e}");
        }
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let req = request.into_inner();
        if req.descriptors.len() > MAX_DESCRIPTORS {
            return Err(Status::invalid_argument("too many descriptors"));
        }
        let now = crate::store::now();
        let mut response = RateLimitResponse {
            overall_code: Code::Ok as i32,
            ..Default::default()
        };
        for d in &req.descriptors {
            tracing::debug!(descriptor = ?d, "rate limit descriptor");
            let hits = d
                .hits_addend
                .as_ref()
                .map_or(u64::from(req.hits_addend), |h| h.value);
            for (name, value) in entries(d) {
                match name {
                    ADMIT_DESCRIPTOR => self.admit(value, now, &mut response).await?,
                    CHARGE_DESCRIPTOR => self.charge(value, hits, now).await,
                    _ => {}
                }
            }
        }
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_read_strictly() {
        fn read(v: &str) -> Option<(&str, &str, u64)> {
            charge(v).map(|c| (c.key, c.request, c.tokens))
        }
        assert_eq!(read("key_1 0123abcd 42"), Some(("key_1", "0123abcd", 42)));
        for odd in [
            "",
            "key_1 r1 -5",
            "key_1 r1 5 6",
            "key:1 r1 5",
            "key_1 r*1 5",
        ] {
            assert_eq!(read(odd), None, "{odd:?}");
        }
        assert!(plain_id(""), "the two-field admission has no request id");
    }
}
