//! The control plane driving a live Envoy: admin changes reach it within a second, and Envoy keeps
//! serving its last configuration while the control plane is down.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use switchyard_tests::{wait_until, ControlPlane, Stack, GATEWAY_KEY};

async fn models_status(stack: &Stack, key: &str) -> u16 {
    stack
        .client()
        .get(stack.envoy.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_deleted_through_the_admin_api_take_effect_within_a_second() {
    let stack = Stack::start().await;
    let (status, created) = stack
        .admin(
            Method::POST,
            "/keys",
            Some(json!({"name": "fresh", "models": ["smart"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let took = wait_until("new key accepted", Duration::from_secs(1), || async {
        models_status(&stack, &key).await == 200
    })
    .await;
    eprintln!("new key accepted after {took:?}");
    let resp = stack
        .client()
        .post(stack.envoy.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let (status, _) = stack
        .admin(Method::DELETE, &format!("/keys/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let took = wait_until("deleted key refused", Duration::from_secs(1), || async {
        models_status(&stack, &key).await == 401
    })
    .await;
    eprintln!("deleted key refused after {took:?}");

    // No restart happened: the same Envoy process served all of it, and it ACKs the updates
    // (health figures may publish another version meanwhile: wait for its ACK too).
    let ecds = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
    wait_until(
        "Envoy to ACK the latest filter config",
        Duration::from_secs(3),
        || async {
            let (_, nodes) = stack.admin(Method::GET, "/xds/nodes", None).await;
            nodes["nodes"]["test-gateway"]["acked"][ecds] == nodes["versions"][ecds]
        },
    )
    .await;
    let (_, nodes) = stack.admin(Method::GET, "/xds/nodes", None).await;
    let node = &nodes["nodes"]["test-gateway"];
    assert_eq!(node["connected"], true, "{nodes}");
    assert!(node["nacked"].as_object().unwrap().is_empty(), "{nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_and_model_added_at_runtime_are_routable() {
    let stack = Stack::start().await;
    // A second mock, reachable only through a provider created now (new cluster over CDS).
    let other =
        switchyard_tests::MockOpenAi::start("sk-other-provider", &["other-model"], &[]).await;
    let (status, body) = stack
        .admin(
            Method::POST,
            "/providers",
            Some(json!({"name": "other", "kind": "openai_compatible", "base_url": other.base_url(), "keys": [{"secret": "sk-other-provider"}]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack
        .admin(Method::POST, "/models", Some(json!({"name": "fresh-model", "targets": [{"provider": "other", "model": "other-model"}]})))
        .await;
    assert_eq!(status, 201, "{body}");
    let chat = || async {
        stack
            .post(
                "/v1/chat/completions",
                &json!({"model": "fresh-model", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await
            .status()
            .as_u16()
    };
    wait_until("new model routable", Duration::from_secs(1), || async {
        chat().await == 200
    })
    .await;
    assert_eq!(
        other.requests().last().unwrap().json()["model"],
        "other-model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_serves_while_the_control_plane_is_down_and_resyncs_after_it_returns() {
    let mut stack = Stack::start().await;
    stack.cp.stop();
    // Still serving, with the last configuration.
    for _ in 0..3 {
        let resp = stack
            .post(
                "/v1/chat/completions",
                &json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(models_status(&stack, GATEWAY_KEY).await, 200);

    // Back again, on the same store; a change made now reaches the Envoy that kept running.
    let ports = stack.cp.ports;
    let config = stack.cp.config.clone();
    stack.cp = ControlPlane::start_with(config, &stack.dir.0, ports).await;
    let (status, created) = stack
        .admin(
            Method::POST,
            "/keys",
            Some(json!({"name": "after-restart"})),
        )
        .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().unwrap().to_owned();
    // Envoy retries ADS with backoff after losing the stream, so allow it to reconnect first.
    wait_until(
        "key created after restart accepted",
        Duration::from_secs(15),
        || async { models_status(&stack, &key).await == 200 },
    )
    .await;
    assert_eq!(
        models_status(&stack, GATEWAY_KEY).await,
        200,
        "old keys survive the restart"
    );
}
