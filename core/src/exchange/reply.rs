//! Every reply the gateway makes itself (errors, the model list), in the client's API shape:
//! the one function both filter roles answer with.

use crate::error::FilterError;

/// A local reply: status, body and the headers that go with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    /// JSON.
    pub body: Vec<u8>,
    /// `retry-after` in seconds.
    retry_after: Option<String>,
    /// The error's code for the request's record (empty: not an error).
    pub code: &'static str,
    /// More headers (a limits refusal's `x-ratelimit-*`).
    pub extra: Vec<(&'static str, String)>,
}

impl Reply {
    /// `error` in the shape of the client's API: Anthropic's when `anthropic`, else OpenAI's.
    pub fn error(error: &FilterError, anthropic: bool) -> Reply {
        Reply {
            status: error.status,
            body: if anthropic {
                error.anthropic_body()
            } else {
                error.body()
            },
            retry_after: error.retry_after.map(|s| s.to_string()),
            code: error.code,
            extra: Vec::new(),
        }
    }

    /// A successful answer with this JSON body.
    pub fn ok(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            body,
            retry_after: None,
            code: "",
            extra: Vec::new(),
        }
    }

    /// The reply's headers, with the request's id when the client is to get it.
    pub fn headers<'a>(&'a self, request_id: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
        let mut headers = Vec::with_capacity(3);
        headers.push(("content-type", "application/json"));
        if let Some(id) = request_id {
            headers.push(("x-request-id", id));
        }
        if let Some(secs) = &self.retry_after {
            headers.push(("retry-after", secs.as_str()));
        }
        headers.extend(self.extra.iter().map(|(n, v)| (*n, v.as_str())));
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(r: &Reply) -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("json")
    }

    #[test]
    fn an_error_takes_the_clients_shape() {
        let e = FilterError::keys_saturated("m");
        let openai = Reply::error(&e, false);
        assert_eq!(openai.status, 429);
        assert_eq!(openai.code, "rate_limit_exceeded");
        let v = json(&openai);
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["type"], "requests");
        assert!(v.get("type").is_none());

        let anthropic = Reply::error(&e, true);
        assert_eq!(anthropic.status, 429);
        let v = json(&anthropic);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], e.message);

        for r in [&openai, &anthropic] {
            assert_eq!(
                r.headers(Some("id-1")),
                [
                    ("content-type", "application/json"),
                    ("x-request-id", "id-1"),
                    ("retry-after", "1")
                ]
            );
        }
    }

    #[test]
    fn a_reply_without_an_id_or_a_delay_has_only_its_type() {
        let r = Reply::error(&FilterError::unknown_model("m"), true);
        assert_eq!(r.headers(None), [("content-type", "application/json")]);
        assert_eq!(json(&r)["error"]["type"], "not_found_error");
        let ok = Reply::ok(b"{}".to_vec());
        assert_eq!((ok.status, ok.code), (200, ""));
    }
}
