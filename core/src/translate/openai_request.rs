//! What every translator from an OpenAI client reads of its request: text where only text may
//! be, tool call arguments, images, reasoning effort as a thinking budget; and the request
//! errors every translator answers with (the body unreadable, a value refused).

use serde_json::{json, Value};

use super::schema::openai::{OpenAiContent, OpenAiContentPart, OpenAiToolCall};
use crate::error::FilterError;

/// A 400 `invalid_request` saying what is wrong.
pub fn invalid(message: impl Into<String>) -> FilterError {
    FilterError::invalid_request("invalid_request", message)
}

/// The client's body as `T`, or a 400 naming what is wrong.
pub fn parse_request<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, FilterError> {
    serde_json::from_slice(body)
        .map_err(|e| FilterError::invalid_request("invalid_json", format!("Invalid request: {e}.")))
}

/// Text of a content value; image parts are refused where only text is allowed.
pub fn text_of(content: OpenAiContent, role: &str) -> Result<String, FilterError> {
    match content {
        OpenAiContent::Text(t) => Ok(t.into_text()),
        OpenAiContent::Parts(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    OpenAiContentPart::Text { text } => {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(&text);
                    }
                    _ => return Err(invalid(format!("{role} messages may only contain text"))),
                }
            }
            Ok(out)
        }
    }
}

/// A tool call's arguments as JSON (OpenAI sends them as JSON text; empty means none).
pub fn tool_arguments(call: &OpenAiToolCall) -> Result<Value, FilterError> {
    if call.function.arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(&call.function.arguments).map_err(|_| {
        invalid(format!(
            "arguments of tool call {} are not valid JSON",
            call.id
        ))
    })
}

/// An image as the client gave it.
#[derive(Debug, PartialEq)]
pub enum Image {
    Base64 { media_type: String, data: String },
    Url(String),
}

/// `data:<media type>;base64,<data>` or an http(s) URL.
pub fn image(url: String) -> Result<Image, FilterError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("image data URL has no data"))?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or_else(|| invalid("image data URLs must be base64"))?;
        return Ok(Image::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Image::Url(url));
    }
    Err(invalid("image_url must be a data URL or an http(s) URL"))
}

/// Thinking budgets for OpenAI's `reasoning_effort`, for providers that take a token budget.
pub fn thinking_budget(effort: &str) -> Result<Option<u64>, FilterError> {
    match effort {
        "none" => Ok(None),
        "minimal" | "low" => Ok(Some(1024)),
        "medium" => Ok(Some(8192)),
        "high" => Ok(Some(24576)),
        other => Err(invalid(format!("unknown reasoning_effort {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_data_urls_or_web_urls() {
        assert_eq!(
            image("data:image/png;base64,AAAA".into()),
            Ok(Image::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            })
        );
        assert_eq!(
            image("https://x/y.png".into()),
            Ok(Image::Url("https://x/y.png".into()))
        );
        assert!(image("data:image/png,raw".into()).is_err());
        assert!(image("file:///etc/passwd".into()).is_err());
    }
}
