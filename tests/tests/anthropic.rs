//! OpenAI clients reaching an Anthropic provider through the real Envoy: the request arrives as
//! a Messages request the strict mock accepts, the answer comes back in OpenAI's format.

use serde_json::{json, Value};
use switchyard_tests::{sse_events as events, without_created, Stack, GATEWAY_KEY, PROVIDER_KEY};

fn fixture(path: &str) -> String {
    switchyard_tests::fixture(&format!("openai_anthropic/{path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_to_anthropic_is_translated_both_ways() {
    let stack = Stack::start().await;
    let resp = stack
        .post("/v1/chat/completions", &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hello, Claude"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    let expected: Value = serde_json::from_str(&fixture("simple/client_response.json")).unwrap();
    assert_eq!(without_created(body), without_created(expected));

    let r = &stack.mock.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(PROVIDER_KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        r.header("authorization"),
        None,
        "no bearer credential reaches Anthropic"
    );
    assert_eq!(r.header("host"), Some(stack.mock.addr.to_string().as_str()));
    for (name, value) in &r.headers {
        assert!(
            !value.contains(GATEWAY_KEY),
            "gateway key leaked upstream in {name}"
        );
    }
    let upstream: Value = serde_json::from_str(&fixture("simple/upstream_request.json")).unwrap();
    assert_eq!(r.json(), upstream);

    let record = stack.usage_record("claude-sonnet-4-5").await;
    assert_eq!(record["provider"], "claude");
    assert_eq!(record["prompt_tokens"], 3195);
    assert_eq!(record["cached_tokens"], 1000);
    assert_eq!(record["completion_tokens"], 503);
    assert_eq!(record["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_arrives_as_openai_chunks() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "claude-sonnet-4-5", "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    assert_eq!(
        events(&body),
        events(&fixture("stream/client_response.sse"))
    );
    assert_eq!(stack.mock.requests()[0].json()["stream"], true);
    let record = stack.usage_record("claude-sonnet-4-5").await;
    assert_eq!(record["prompt_tokens"], 25);
    assert_eq!(record["completion_tokens"], 15);
    assert_eq!(record["stream"], true);
    assert_eq!(record["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_stream_is_not_buffered() {
    use futures::StreamExt as _;
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "claude-gated", "stream": true,
                    "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    // The mock holds everything after message_start and the first block until the gate opens:
    // a gateway that buffered the translation would never deliver this first chunk.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
        .await
        .expect("the first translated chunk arrives while the provider is still streaming")
        .expect("a chunk")
        .expect("no error");
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    stack.mock.open_gate();
    let mut rest = first.to_vec();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_errors_become_openai_errors() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "claude-overloaded", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(
        resp.status(),
        503,
        "Anthropic's 529 becomes a status OpenAI clients retry"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(body["error"]["message"], "Overloaded");

    // A rate limit keeps the provider's retry-after.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "claude-rate-limited", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "17");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    // Anthropic has no embeddings: refused before anything is sent.
    let resp = stack
        .post(
            "/v1/embeddings",
            &json!({"model": "claude-sonnet-4-5", "input": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_not_supported");
    assert_eq!(stack.mock.requests().len(), 2);
}
