//! Golden fixtures (`tests/fixtures/anthropic_openai/<case>/`) and the rules they do not show.

use super::*;
use crate::translate::golden::{self, events, feed, read};
use crate::translate::Translator;

const MODEL: &str = "gpt-4o";

#[test]
fn golden_cases() {
    let n = golden::run("anthropic_openai", MODEL, || AnthropicToOpenAi::new(true));
    assert!(n >= 8, "fixture folders missing");
}

#[test]
fn usage_keeps_openai_semantics_inside_and_anthropic_outside() {
    let dir = golden::fixtures("anthropic_openai").join("stream");
    let mut t = golden::prepared(&dir, &|| AnthropicToOpenAi::new(true), MODEL);
    t.response_headers(200, true);
    let out = feed(&mut t, &read(&dir.join("upstream_response.sse")), &[]);
    // The record: prompt 19 including 8 cached. The client: input 11, cache read 8.
    assert_eq!(
        t.usage().map(|u| (u.prompt, u.cached, u.completion)),
        Some((19, 8, 2))
    );
    let delta = events(&out)
        .into_iter()
        .find(|e| e["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(delta["usage"]["input_tokens"], 11);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 8);
    assert!(t.completed());
}

#[test]
fn a_stream_cut_short_ends_with_an_error_event() {
    let dir = golden::fixtures("anthropic_openai").join("stream");
    let body = read(&dir.join("upstream_response.sse"));
    let cut = body.windows(6).position(|w| w == b"[DONE]").expect("done");
    let mut t = golden::prepared(&dir, &|| AnthropicToOpenAi::new(true), MODEL);
    t.response_headers(200, true);
    let out = feed(&mut t, &body[..cut], &[]);
    let last = events(&out).pop().expect("events");
    assert_eq!(last["type"], "error");
    assert!(!t.completed());
}

#[test]
fn compatible_providers_get_max_tokens() {
    let mut t = AnthropicToOpenAi::new(false);
    let body = t
        .request_body(
            br#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"x"}]}"#,
            "u",
        )
        .expect("translates");
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["max_tokens"], 9);
    assert!(v.get("max_completion_tokens").is_none());
}

#[test]
fn bad_requests_are_refused() {
    let refuse = |body: &str| {
        AnthropicToOpenAi::new(true)
            .request_body(body.as_bytes(), MODEL)
            .expect_err("refused")
    };
    assert_eq!(refuse("{").status, 400);
    // max_tokens is required by the Messages API.
    assert_eq!(
        refuse(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).status,
        400
    );
    let server_tool = r#"{"model":"m","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"x"}]}"#;
    assert!(refuse(server_tool).message.contains("web_search_20250305"));
    let document = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"x"}}]}]}"#;
    assert_eq!(refuse(document).status, 400);
}

#[test]
fn stop_reasons_map() {
    assert_eq!(stop_reason(Some("stop")), "end_turn");
    assert_eq!(stop_reason(Some("length")), "max_tokens");
    assert_eq!(stop_reason(Some("tool_calls")), "tool_use");
    assert_eq!(stop_reason(Some("content_filter")), "refusal");
    assert_eq!(error_type(529), "overloaded_error");
    assert_eq!(error_type(401), "authentication_error");
}

#[test]
fn several_user_text_blocks_keep_their_boundaries() {
    let body = AnthropicToOpenAi::new(true)
        .request_body(
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"first."},{"type":"text","text":"second."}]}]}"#,
            MODEL,
        )
        .expect("translates");
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        v["messages"][0]["content"],
        json!([{"type": "text", "text": "first."}, {"type": "text", "text": "second."}])
    );
}
