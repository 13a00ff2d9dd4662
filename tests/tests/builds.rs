//! Both builds of the filter through the real Envoy: the native one (an Envoy dynamic module,
//! `libswitchyard_native.so`, which the rest of the suite runs on) and the proxy-wasm one
//! (which the whole suite runs on with `SWITCHYARD_TEST_FILTER=wasm`): pass-through and
//! streamed chat, local replies, failover between providers (the upstream role), request
//! records reaching the control plane once each, and the metrics under their usual names.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_tests::mock::faulty::Fault;
use switchyard_tests::{
    data_events, native_path, read_all, usage_records, wait_until, wasm_build_path, Stack,
};

#[derive(Clone, Copy, PartialEq)]
enum Build {
    Native,
    Wasm,
}

async fn stack_of(build: Build, workers: u32) -> Stack {
    let path = match build {
        Build::Native => native_path(),
        Build::Wasm => wasm_build_path(),
    };
    let stack = Stack::start_edited(workers, |_| {}, |c| c.gateway.wasm = path).await;
    assert_eq!(
        stack
            .envoy
            .proc
            .log_text()
            .contains("Dynamic module ABI version"),
        build == Build::Native,
        "Envoy loaded the other build of the filter"
    );
    stack
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]})
}

async fn serves_chat_streams_and_local_replies(build: Build) {
    let stack = stack_of(build, 1).await;

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

async fn fails_over_to_the_next_provider_within_the_request(build: Build) {
    let stack = stack_of(build, 1).await;
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

async fn sends_every_record_to_the_control_plane_once(build: Build) {
    let stack = stack_of(build, 2).await;
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

/// Records reach the control plane within seconds while the configuration changes under
/// traffic (each admin write is a new configuration in Envoy, and the native build sends its
/// batches through a configuration's callouts: a batch on its way when that configuration
/// went was dropped by Envoy unanswered and waited 20 s to be sent again).
async fn records_arrive_while_the_configuration_changes(build: Build) {
    let stack = stack_of(build, 2).await;
    let body = chat("gpt-4o-mini", false);
    let traffic = async {
        let mut ids = HashSet::new();
        let started = std::time::Instant::now();
        // Four requests every 25 ms: at most 640, all on the request log's first page.
        while started.elapsed() < Duration::from_secs(4) {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let answers = futures::future::join_all(
                (0..4).map(|_| stack.post("/v1/chat/completions", &body)),
            )
            .await;
            for r in answers {
                assert_eq!(r.status(), 200);
                ids.insert(r.headers()["x-request-id"].to_str().unwrap().to_owned());
            }
        }
        ids
    };
    let changes = async {
        for n in 0..40 {
            let (status, created) = stack
                .admin(
                    reqwest::Method::POST,
                    "/keys",
                    Some(json!({"name": format!("churn-{n}"), "models": ["smart"]})),
                )
                .await;
            assert_eq!(status, 201, "{created}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (ids, ()) = tokio::join!(traffic, changes);
    stack
        .wait_logged_once_within(&ids, Duration::from_secs(6))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_native_build_sends_records_while_the_configuration_changes() {
    records_arrive_while_the_configuration_changes(Build::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wasm_build_sends_records_while_the_configuration_changes() {
    records_arrive_while_the_configuration_changes(Build::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_build_serves_chat_streams_and_local_replies() {
    serves_chat_streams_and_local_replies(Build::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_build_serves_chat_streams_and_local_replies() {
    serves_chat_streams_and_local_replies(Build::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_build_fails_over_to_the_next_provider_within_the_request() {
    fails_over_to_the_next_provider_within_the_request(Build::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_build_fails_over_to_the_next_provider_within_the_request() {
    fails_over_to_the_next_provider_within_the_request(Build::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_native_build_sends_every_record_to_the_control_plane_once() {
    sends_every_record_to_the_control_plane_once(Build::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wasm_build_sends_every_record_to_the_control_plane_once() {
    sends_every_record_to_the_control_plane_once(Build::Wasm).await;
}
