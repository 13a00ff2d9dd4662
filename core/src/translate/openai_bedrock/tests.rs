//! Golden fixtures (`tests/fixtures/openai_bedrock/<case>/`) and the rules they do not show.

use super::*;
use crate::translate::golden::{self, events, feed, stream_body, CREATED};
use crate::translate::Translator;

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn make() -> OpenAiToBedrock {
    OpenAiToBedrock::new(CREATED, "req-1")
}

#[test]
fn golden_cases() {
    let n = golden::run("openai_bedrock", MODEL, make);
    assert!(n >= 9, "fixture folders missing");
}

#[test]
fn stream_usage_and_completion() {
    let dir = golden::fixtures("openai_bedrock").join("stream");
    let body = stream_body(&dir);
    let mut t = golden::prepared(&dir, &make, MODEL);
    t.response_headers(200, true);
    feed(&mut t, &body, &[]);
    assert_eq!(t.usage().map(|u| (u.prompt, u.completion)), Some((12, 3)));
    assert!(t.completed());

    // Cut before messageStop: not complete, and the client is told.
    let mut t = golden::prepared(&dir, &make, MODEL);
    t.response_headers(200, true);
    let cut = body
        .windows(11)
        .position(|w| w == b"messageStop")
        .expect("stop");
    let out = feed(&mut t, &body[..cut - 20], &[]);
    assert_eq!(
        events(&out).pop().expect("events")["error"]["code"],
        "stream_incomplete"
    );
    assert!(!t.completed());
}

#[test]
fn a_damaged_stream_is_an_error_not_a_success() {
    let dir = golden::fixtures("openai_bedrock").join("stream");
    let mut body = stream_body(&dir);
    let at = body.len() / 2;
    body[at] ^= 0xff;
    let mut t = golden::prepared(&dir, &make, MODEL);
    t.response_headers(200, true);
    let out = feed(&mut t, &body, &[]);
    let last = events(&out).pop().expect("events");
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!t.completed());
}

#[test]
fn image_urls_are_refused() {
    let e = make()
        .request_body(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
            MODEL,
        )
        .expect_err("refused");
    assert!(e.message.contains("data URLs"));
}
