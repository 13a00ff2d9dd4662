//! Golden fixtures (`tests/fixtures/openai_gemini/<case>/`) and the rules they do not show.

use super::*;
use crate::translate::golden::{self, events, feed, read, CREATED};
use crate::translate::Translator;

const MODEL: &str = "gemini-2.5-flash";

fn translator(case: &str) -> OpenAiToGemini {
    let dir = golden::fixtures("openai_gemini").join(case);
    golden::prepared(&dir, &|| OpenAiToGemini::new(CREATED), MODEL)
}

#[test]
fn golden_cases() {
    let n = golden::run("openai_gemini", MODEL, || OpenAiToGemini::new(CREATED));
    assert!(n >= 13, "fixture folders missing");
}

#[test]
fn stream_usage_is_the_last_report_not_a_sum() {
    let mut t = translator("stream");
    t.response_headers(200, true);
    let dir = golden::fixtures("openai_gemini").join("stream");
    feed(&mut t, &read(&dir.join("upstream_response.sse")), &[]);
    assert_eq!(
        t.usage(),
        Some(Usage {
            prompt: 9,
            completion: 7,
            total: 16,
            cached: 0,
            cache_write: 0,
            reasoning: 0
        })
    );
    assert!(t.completed());
}

#[test]
fn a_stream_without_finish_reason_ends_with_an_error_event() {
    let dir = golden::fixtures("openai_gemini").join("stream");
    let body = read(&dir.join("upstream_response.sse"));
    let cut = body
        .windows(12)
        .position(|w| w == b"finishReason")
        .expect("finish reason");
    let mut t = translator("stream");
    t.response_headers(200, true);
    let out = feed(&mut t, &body[..cut], &[]);
    let last = events(&out).pop().expect("events");
    assert_eq!(last["error"]["code"], "stream_incomplete");
    assert!(!t.completed());
}

#[test]
fn bad_requests_are_refused() {
    let refuse = |body: &str| {
        OpenAiToGemini::new(0)
            .request_body(body.as_bytes(), MODEL)
            .expect_err("refused")
    };
    assert_eq!(refuse("{").status, 400);
    assert_eq!(refuse(r#"{"model":"m","messages":[]}"#).status, 400);
    let orphan = r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"nope","content":"1"}]}"#;
    assert!(refuse(orphan)
        .message
        .contains("no assistant message called"));
    let odd_image = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y"}}]}]}"#;
    assert!(refuse(odd_image).message.contains("data URLs"));
    let effort =
        r#"{"model":"m","reasoning_effort":"extreme","messages":[{"role":"user","content":"x"}]}"#;
    assert!(refuse(effort).message.contains("reasoning_effort"));
}

#[test]
fn model_names_are_escaped_in_the_path() {
    let mut t = OpenAiToGemini::new(0);
    t.request_body(
        br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        "tuned/my model",
    )
    .expect("translates");
    let mut path = String::new();
    t.upstream_path(&mut path);
    assert_eq!(path, "/v1beta/models/tuned%2Fmy%20model:generateContent");
}

#[test]
fn a_rate_limit_says_when_to_retry() {
    let mut t = translator("error_rate_limit");
    t.response_headers(429, false);
    let dir = golden::fixtures("openai_gemini").join("error_rate_limit");
    feed(&mut t, &read(&dir.join("upstream_response.json")), &[]);
    assert_eq!(t.retry_after(), Some(37));
    assert_eq!(
        retry_delay(br#"{"error":{"details":[{"retryDelay":"1.5s"}]}}"#),
        Some(2)
    );
    assert_eq!(retry_delay(br#"{"error":{"details":[]}}"#), None);
    assert_eq!(t.error_status(), None);

    let mut t = translator("error_invalid_key");
    t.response_headers(400, false);
    let dir = golden::fixtures("openai_gemini").join("error_invalid_key");
    feed(&mut t, &read(&dir.join("upstream_response.json")), &[]);
    assert_eq!(
        t.error_status(),
        Some(401),
        "a bad key is a 401 for OpenAI clients"
    );
}

#[test]
fn finish_reasons_map() {
    assert_eq!(finish_reason("STOP", false), "stop");
    assert_eq!(finish_reason("STOP", true), "tool_calls");
    assert_eq!(finish_reason("MAX_TOKENS", true), "length");
    assert_eq!(finish_reason("SAFETY", false), "content_filter");
    assert_eq!(finish_reason("RECITATION", false), "content_filter");
    assert_eq!(finish_reason("FINISH_REASON_UNSPECIFIED", false), "stop");
}

#[test]
fn on_vertex_the_paths_are_vertex_paths() {
    let mut t = OpenAiToGemini::vertex(0);
    t.request_body(
        br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
        MODEL,
    )
    .expect("translates");
    let mut path = String::new();
    t.upstream_path(&mut path);
    assert_eq!(
        path,
        "/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
}

#[test]
fn a_clients_text_goes_to_gemini_as_written() {
    let req: OpenAiChatRequest = parse_request(
        br#"{"model": "m", "messages": [{"role": "user", "content": "line\none \"q\" \u00e9"}]}"#,
    )
    .unwrap();
    let body = serde_json::to_string(&request(req).unwrap()).unwrap();
    assert!(
        body.contains(r#"{"text":"line\none \"q\" \u00e9"}"#),
        "{body}"
    );
}
