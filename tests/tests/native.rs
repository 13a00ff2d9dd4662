//! The native filter (an Envoy dynamic module, `libswitchyard_native.so`) through the real
//! Envoy: the same engine as the wasm filter without V8 in between. The whole suite runs on it
//! with `SWITCHYARD_TEST_FILTER=native`; these run on it always: pass-through and streamed chat,
//! a local reply, failover between providers (the upstream role), request records reaching the
//! control plane from Envoy's main thread, and the metrics under their usual names.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_tests::mock::faulty::Fault;
use switchyard_tests::{data_events, native_path, read_all, usage_records, wait_until, Stack};

async fn native_stack(workers: u32) -> Stack {
    let stack = Stack::start_edited(workers, |_| {}, |c| c.gateway.wasm = native_path()).await;
    assert!(
        stack
            .envoy
            .proc
            .log_text()
            .contains("Dynamic module ABI version"),
        "Envoy did not load the native filter"
    );
    stack
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_filter_serves_chat_streams_and_local_replies() {
    let stack = native_stack(1).await;

    let resp = stack
        .post("/v1/chat/completions", &chat("smart", false))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let resp = stack
        .post("/v1/chat/completions", &chat("smart", true))
        .await;
    assert_eq!(resp.status(), 200);
    let events = data_events(&read_all(resp).await.expect("a whole stream"));
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );

    // No key: the gateway's own answer, JSON in OpenAI's shape.
    let resp = stack
        .client()
        .post(stack.envoy.url("/v1/chat/completions"))
        .json(&chat("smart", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_api_key", "{body}");

    // An unknown model: refused before any provider is asked.
    let resp = stack
        .post("/v1/chat/completions", &chat("no-such-model", false))
        .await;
    assert_eq!(resp.status(), 404);

    // Counters under their usual Prometheus names.
    assert!(
        stack
            .envoy
            .wait_counter("switchyard_requests_total", 4)
            .await
            >= 4
    );
    assert!(
        stack
            .envoy
            .wait_counter("switchyard_prompt_tokens_total", 1)
            .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_filter_fails_over_to_the_next_provider_within_the_request() {
    let stack = native_stack(1).await;
    stack.flaky.set(Fault::Status(500, None));
    let resp = stack
        .post("/v1/chat/completions", &chat("fickle", false))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(stack.flaky.requests(), 1);
    wait_until("the access-log record", Duration::from_secs(10), || async {
        usage_records(&stack.envoy.proc.log_text())
            .iter()
            .any(|r| r["model"] == "fickle" && r["provider"] == "mock" && r["attempts"] == 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_native_filter_sends_every_record_to_the_control_plane_once() {
    let stack = native_stack(2).await;
    let mut ids = HashSet::new();
    let body = chat("gpt-4o-mini", false);
    for _ in 0..4 {
        let answers =
            futures::future::join_all((0..8).map(|_| stack.post("/v1/chat/completions", &body)))
                .await;
        for r in answers {
            assert_eq!(r.status(), 200);
            ids.insert(r.headers()["x-request-id"].to_str().unwrap().to_owned());
        }
    }
    stack.wait_logged_once(&ids).await;
}
