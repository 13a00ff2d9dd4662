//! Golden fixtures (`tests/fixtures/openai_anthropic/<case>/`), one table-driven test over the
//! folders; every stream is also fed split at every byte boundary.

use std::path::{Path, PathBuf};

use super::*;

const CREATED: u64 = 1_700_000_000;
const MODEL: &str = "claude-sonnet-4-5";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/openai_anthropic")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The `data` of each event, parsed (`[DONE]` kept as a string).
fn events(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_owned))
        .map(|d| {
            if d == "[DONE]" {
                Value::String(d)
            } else {
                json(d.as_bytes())
            }
        })
        .collect()
}

fn translator(case: &Path) -> OpenAiToAnthropic {
    let mut t = OpenAiToAnthropic::new(CREATED);
    t.request_body(&read(&case.join("client_request.json")), MODEL)
        .expect("request translates");
    t
}

/// Feeds `body` cut at `cuts`, returning what the client receives.
fn feed(t: &mut OpenAiToAnthropic, body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bounds = cuts.to_vec();
    bounds.push(body.len());
    let mut prev = 0;
    for (i, &b) in bounds.iter().enumerate() {
        let chunk = &body[prev..b];
        match t.response_body(chunk, i == bounds.len() - 1) {
            ChunkOutcome::Unchanged => out.extend_from_slice(chunk),
            ChunkOutcome::Replace(bytes) => out.extend_from_slice(&bytes),
        }
        prev = b;
    }
    out
}

#[test]
fn golden_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 9, "fixture folders missing");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let mut t = OpenAiToAnthropic::new(CREATED);
        let upstream = t
            .request_body(&read(&case.join("client_request.json")), MODEL)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            json(&upstream),
            json(&read(&case.join("upstream_request.json"))),
            "{name}: upstream request"
        );
        let status: u32 = std::fs::read_to_string(case.join("status"))
            .map(|s| s.trim().parse().expect("status"))
            .unwrap_or(200);
        let json_response = case.join("upstream_response.json");
        if json_response.exists() {
            let client_status = t.response_headers(status, false);
            assert_eq!(
                client_status,
                (status == 529).then_some(503),
                "{name}: status"
            );
            let body = read(&json_response);
            let out = feed(&mut t, &body, &[body.len() / 2]);
            assert_eq!(
                json(&out),
                json(&read(&case.join("client_response.json"))),
                "{name}: client response"
            );
        } else {
            let body = read(&case.join("upstream_response.sse"));
            let expected = events(&read(&case.join("client_response.sse")));
            for cut in 0..=body.len() {
                let mut t = translator(&case);
                t.response_headers(status, true);
                let out = feed(&mut t, &body, &[cut]);
                assert_eq!(events(&out), expected, "{name}: stream split at {cut}");
            }
        }
    }
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
