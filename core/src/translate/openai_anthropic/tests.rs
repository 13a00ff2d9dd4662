//! Golden fixtures (`tests/fixtures/openai_anthropic/<case>/`), one table-driven test over the
//! folders; every stream is also fed split at every byte boundary.

use std::path::Path;

use super::*;
use crate::translate::golden::{self, events, feed, read, CREATED};
use crate::translate::Translator;
use serde_json::Value;

const MODEL: &str = "claude-sonnet-4-5";

fn fixtures() -> std::path::PathBuf {
    golden::fixtures("openai_anthropic")
}

fn translator(case: &Path) -> OpenAiToAnthropic {
    golden::prepared(case, &|| OpenAiToAnthropic::new(CREATED), MODEL)
}

#[test]
fn golden_cases() {
    let n = golden::run("openai_anthropic", MODEL, || {
        OpenAiToAnthropic::new(CREATED)
    });
    assert!(n >= 9, "fixture folders missing");
}

#[test]
fn usage_follows_openai_semantics_and_message_delta_replaces() {
    let case = fixtures().join("stream");
    let mut t = translator(&case);
    t.response_headers(200, true);
    feed(&mut t, &read(&case.join("upstream_response.sse")), &[]);
    // message_start said output 1, message_delta 15: cumulative, so 15, not 16.
    assert_eq!(
        t.usage(),
        Some(Usage {
            prompt: 25,
            completion: 15,
            total: 40,
            cached: 0,
            cache_write: 0,
            reasoning: 0
        })
    );
    let case = fixtures().join("simple");
    let mut t = translator(&case);
    t.response_headers(200, false);
    feed(&mut t, &read(&case.join("upstream_response.json")), &[]);
    // input 2095 + cache read 1000 + cache write 100.
    assert_eq!(t.usage().map(|u| (u.prompt, u.cached)), Some((3195, 1000)));
}

#[test]
fn a_stream_cut_short_ends_with_an_error_event() {
    let case = fixtures().join("stream");
    let body = read(&case.join("upstream_response.sse"));
    let cut = body
        .windows(12)
        .position(|w| w == b"message_delta")
        .unwrap_or(body.len() / 2);
    let mut t = translator(&case);
    t.response_headers(200, true);
    let out = feed(&mut t, &body[..cut], &[]);
    let last = events(&out).pop().expect("events");
    assert_eq!(last["error"]["code"], "stream_incomplete");
}

#[test]
fn bad_requests_are_refused() {
    let refuse = |body: &str| {
        OpenAiToAnthropic::new(0)
            .request_body(body.as_bytes(), MODEL)
            .expect_err("refused")
    };
    assert_eq!(refuse("{").status, 400);
    assert_eq!(refuse(r#"{"model":"m","messages":[]}"#).status, 400);
    assert_eq!(
        refuse(r#"{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}"#).status,
        400
    );
    let bad_args = r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}"#;
    assert!(refuse(bad_args).message.contains("not valid JSON"));
    let bad_image = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,notbase64"}}]}]}"#;
    assert!(refuse(bad_image).message.contains("base64"));
    let image_in_system = r#"{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"x"}]}"#;
    assert_eq!(refuse(image_in_system).status, 400);
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    assert_eq!(finish_reason(Some("end_turn")), "stop");
    assert_eq!(finish_reason(Some("stop_sequence")), "stop");
    assert_eq!(finish_reason(Some("max_tokens")), "length");
    assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
    assert_eq!(finish_reason(Some("refusal")), "content_filter");
    assert_eq!(finish_reason(None), "stop");
}

#[test]
fn on_vertex_the_model_moves_to_the_path_and_the_version_to_the_body() {
    let mut t = OpenAiToAnthropic::vertex(CREATED);
    let body = t
        .request_body(
            br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
            "claude-sonnet-4-5@20250929",
        )
        .expect("translates");
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(v.get("model").is_none());
    assert_eq!(v["anthropic_version"], "vertex-2023-10-16");
    let mut path = String::new();
    t.upstream_path(&mut path);
    assert_eq!(
        path,
        "/publishers/anthropic/models/claude-sonnet-4-5%4020250929:streamRawPredict"
    );

    let mut p = crate::translate::anthropic_passthrough::AnthropicPassthrough::vertex();
    let body = p
        .request_body(
            br#"{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
            "claude-haiku-4-5",
        )
        .expect("passes");
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        v,
        json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
               "anthropic_version": "vertex-2023-10-16"})
    );
    let mut path = String::new();
    p.upstream_path(&mut path);
    assert_eq!(
        path,
        "/publishers/anthropic/models/claude-haiku-4-5:rawPredict"
    );
}
