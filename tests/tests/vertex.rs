//! Vertex AI through the real Envoy: the control plane mints access tokens from a service
//! account key (the mock token endpoint checks the signed JWT), renews them, and pushes only the
//! tokens to Envoy; Gemini and Claude models are reached under Vertex's paths.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_tests::{wait_until, Stack, GATEWAY_KEY};

const PREFIX: &str = "/v1/projects/switchyard-test/locations/us-east5/publishers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_and_claude_on_vertex_with_minted_tokens() {
    let stack = Stack::start().await;
    stack.wait_ready("gemini-2.5-pro").await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "In the heart of a bustling city, lived a girl named Lily."
    );
    let r = stack
        .mock
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with(PREFIX))
        .unwrap();
    assert_eq!(
        r.path,
        format!("{PREFIX}/google/models/gemini-2.5-pro:generateContent")
    );
    let auth = r.header("authorization").unwrap();
    assert!(auth.starts_with("Bearer ya29.mock-access-token-"), "{auth}");
    assert!(r.header("x-goog-api-key").is_none());
    for (name, value) in &r.headers {
        assert!(
            !value.contains("PRIVATE KEY"),
            "the key reached the data plane in {name}"
        );
        assert!(!value.contains(GATEWAY_KEY), "gateway key leaked in {name}");
    }

    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "claude-opus-4-1@20250805", "stream": true,
                    "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let r = stack.mock.requests().pop().unwrap();
    assert_eq!(
        r.path,
        format!("{PREFIX}/anthropic/models/claude-opus-4-1%4020250805:streamRawPredict")
    );
    assert_eq!(r.json()["anthropic_version"], "vertex-2023-10-16");
    assert!(r.json().get("model").is_none());

    // Anthropic clients reach Claude on Vertex with the body passed through.
    let resp = stack
        .client()
        .post(stack.envoy.url("/v1/messages"))
        .header("x-api-key", GATEWAY_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "claude-opus-4-1@20250805", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_they_expire() {
    // Tokens that live 4 s are renewed at half their life.
    let stack = Stack::start_with(|mock| mock.set_token_lifetime(4)).await;
    stack.wait_ready("gemini-2.5-pro").await;
    let first = stack.mock.tokens_issued();
    wait_until("a renewed token", Duration::from_secs(20), || async {
        stack.mock.tokens_issued() >= first + 2
    })
    .await;
    // Envoy moves on to the renewed tokens, and requests keep succeeding.
    let renewed = first + 1;
    let number = |auth: &str| {
        auth.rsplit('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_until(
        "the newest token in use",
        Duration::from_secs(10),
        || async {
            let resp = stack
            .post(
                "/v1/chat/completions",
                &json!({"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
            resp.status() == 200
                && stack
                    .mock
                    .requests()
                    .last()
                    .and_then(|r| r.header("authorization").map(number))
                    .is_some_and(|n| n >= renewed)
        },
    )
    .await;
}
