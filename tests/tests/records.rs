//! The wasm build's request records leave Envoy through the records service, the filter's
//! singleton on Envoy's main thread, which the workers hand their records to (so that signing and sending a batch
//! never holds up a worker's requests); with a bootstrap from before the service, each worker
//! sends its own. Either way every request's record reaches the control plane once.

use std::collections::HashSet;

use serde_json::json;
use switchyard_tests::{wasm_build_path, Envoy, Stack};

/// Sends `n` requests, eight at a time (spread over the workers), returning their ids.
async fn send(stack: &Stack, n: usize) -> HashSet<String> {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]});
    let mut ids = HashSet::new();
    for _ in 0..n / 8 {
        let answers =
            futures::future::join_all((0..8).map(|_| stack.post("/v1/chat/completions", &body)))
                .await;
        for r in answers {
            assert_eq!(r.status(), 200);
            let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            ids.insert(id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_workers_records_reach_the_control_plane_through_the_records_service() {
    let stack = Stack::start_edited(2, |_| {}, |c| c.gateway.wasm = wasm_build_path()).await;
    let ids = send(&stack, 48).await;
    stack.wait_logged_once(&ids).await;
    assert!(
        stack
            .envoy
            .proc
            .log_text()
            .contains("records service started"),
        "the records service ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_records_service_each_worker_sends_its_own_records() {
    let mut stack = Stack::start_edited(1, |_| {}, |c| c.gateway.wasm = wasm_build_path()).await;
    stack.envoy.proc.stop();
    stack.envoy = Envoy::start_without_records_service(&stack.dir.0, &stack.cp).await;
    let ids = send(&stack, 48).await;
    stack.wait_logged_once(&ids).await;
    assert!(!stack
        .envoy
        .proc
        .log_text()
        .contains("records service started"));
}
