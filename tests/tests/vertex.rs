//! Vertex AI's access tokens through the real Envoy: the control plane mints them from a service
//! account key (the mock token endpoint checks the signed JWT), renews them before they expire,
//! and pushes only the tokens to Envoy. (What Gemini and Claude on Vertex receive is in the
//! provider matrix, `providers.rs`.)

use std::time::Duration;

use serde_json::json;
use switchyard_tests::{wait_until, Stack};

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
