//! Gateway-made errors: one type, its HTTP status and its OpenAI-style JSON body.

use std::fmt::Write as _;

/// Who caused an error. A provider's fault (an answer the gateway cannot pass on: compressed,
/// too large) counts against its target's health like a failed answer, whatever status the
/// provider gave; a client's or the gateway's own (`Internal`) does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Provider,
    Internal,
}

/// An error the gateway answers itself, as a local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub status: u32,
    /// OpenAI's `error.type`.
    pub kind: &'static str,
    /// OpenAI's `error.code`: stable and machine-readable.
    pub code: &'static str,
    pub message: String,
    pub source: ErrorSource,
    /// Seconds the client should wait before trying again (`retry-after`), when known.
    pub retry_after: Option<u64>,
}

impl FilterError {
    fn new(status: u32, kind: &'static str, code: &'static str, message: String) -> Self {
        let source = if status >= 500 {
            ErrorSource::Provider
        } else {
            ErrorSource::Client
        };
        FilterError {
            status,
            kind,
            code,
            message,
            source,
            retry_after: None,
        }
    }

    pub fn invalid_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message.into())
    }

    pub fn missing_key() -> Self {
        Self::new(
            401,
            "authentication_error",
            "missing_api_key",
            "No API key provided: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`."
                .into(),
        )
    }

    pub fn invalid_key() -> Self {
        Self::new(
            401,
            "authentication_error",
            "invalid_api_key",
            "Incorrect API key provided.".into(),
        )
    }

    pub fn expired_key() -> Self {
        Self::new(
            401,
            "authentication_error",
            "expired_api_key",
            "This API key has expired.".into(),
        )
    }

    /// A model that does not exist, or that the key may not use: the same answer for both
    /// (OpenAI's words), so that a scoped key cannot enumerate the gateway's models.
    pub fn unknown_model(model: &str) -> Self {
        Self::new(
            404,
            "not_found_error",
            "model_not_found",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
    }

    pub fn unknown_path() -> Self {
        Self::new(
            404,
            "not_found_error",
            "unknown_path",
            "Unknown API path.".into(),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            "Method not allowed on this path.".into(),
        )
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("Request body exceeds the limit of {limit} bytes."),
        )
    }

    pub fn no_provider_key(provider: &str) -> Self {
        let mut e = Self::new(
            503,
            "api_error",
            "provider_unavailable",
            format!("Provider `{provider}` has no usable key."),
        );
        e.source = ErrorSource::Internal;
        e
    }

    /// The provider answered compressed although the gateway asked for no encoding: its usage
    /// cannot be read (the request would go unmetered) nor its answer translated.
    pub fn provider_encoding() -> Self {
        Self::new(
            502,
            "api_error",
            "provider_encoding",
            "The provider answered in an encoding the gateway does not accept.".into(),
        )
    }

    /// The provider's answer is larger than the gateway holds to translate it.
    pub fn provider_too_large(limit: usize) -> Self {
        Self::new(
            502,
            "api_error",
            "provider_response_too_large",
            format!("The provider's answer exceeds the gateway's limit of {limit} bytes."),
        )
    }

    /// No target of the model has what the request needs (`Capability` bits).
    pub fn not_capable(model: &str, needs: u8) -> Self {
        use crate::config::Capability;
        let what = match (
            needs & Capability::FunctionCalling.bit() != 0,
            needs & Capability::Vision.bit() != 0,
        ) {
            (true, true) => "tools and images",
            (true, false) => "tools",
            _ => "images",
        };
        Self::new(
            400,
            "invalid_request_error",
            "model_not_capable",
            format!("No provider of `{model}` accepts {what}."),
        )
    }

    /// Every key of every provider able to serve the model is at its requests-per-second limit.
    pub fn keys_saturated(model: &str) -> Self {
        let mut e = Self::new(
            429,
            "requests",
            "rate_limit_exceeded",
            format!("The providers of `{model}` are at their request rate limit; try again in a second."),
        );
        e.source = ErrorSource::Internal;
        e.retry_after = Some(1);
        e
    }

    /// The OpenAI-style body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Vec<u8> {
        let mut out = String::with_capacity(96 + self.message.len());
        out.push_str("{\"error\":{\"message\":");
        push_json_string(&mut out, &self.message);
        let _ = write!(
            out,
            ",\"type\":\"{}\",\"param\":null,\"code\":\"{}\"}}}}",
            self.kind, self.code
        );
        out.into_bytes()
    }
}

impl FilterError {
    /// The Anthropic-style body for the Messages API:
    /// `{"type":"error","error":{"type","message"}}`.
    /// <https://docs.anthropic.com/en/api/errors>
    pub fn anthropic_body(&self) -> Vec<u8> {
        let kind = match self.status {
            400 | 405 => "invalid_request_error",
            401 => "authentication_error",
            402 | 403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        let mut out = String::with_capacity(64 + self.message.len());
        let _ = write!(
            out,
            "{{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":"
        );
        push_json_string(&mut out, &self.message);
        out.push_str("}}");
        out.into_bytes()
    }
}

/// Appends `s` as a JSON string literal (quotes included).
pub use switchyard_contract::json::push_string as push_json_string;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped_json() {
        let e = FilterError::unknown_model("gpt-\"9\"\n");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("valid json");
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(
            v["error"]["message"],
            "The model `gpt-\"9\"\n` does not exist or you do not have access to it."
        );
        assert!(v["error"]["param"].is_null());
        assert_eq!(e.status, 404);
    }

    #[test]
    fn anthropic_body_is_anthropic_shaped_json() {
        let v: serde_json::Value =
            serde_json::from_slice(&FilterError::invalid_key().anthropic_body()).expect("json");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["message"], "Incorrect API key provided.");
        let v: serde_json::Value =
            serde_json::from_slice(&FilterError::body_too_large(5).anthropic_body()).expect("json");
        assert_eq!(v["error"]["type"], "request_too_large");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut s = String::new();
        push_json_string(&mut s, "a\u{1}b\u{7f}");
        assert_eq!(s, "\"a\\u0001b\\u007f\"");
    }
}
