//! Read-your-writes: an admin write answers only once every connected Envoy runs a
//! configuration that holds it. A key works through Envoy as soon as its creation returns, and
//! is refused as soon as its deletion returns, on every Envoy of the gateway.

use reqwest::Method;
use serde_json::{json, Value};
use switchyard_tests::{Envoy, Stack};

/// Keys created back to back in each test.
const KEYS: usize = 25;

/// `GET /v1/models` through `url`'s Envoy with `key`, on a fresh connection each time (with two
/// Envoys sharing the listener, the kernel picks either).
async fn models_status(url: &str, key: &str) -> u16 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    client
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Creates [`KEYS`] keys back to back and uses each at once (`tries` requests), then deletes
/// each and checks it is refused at once. Returns the config serials the answers named.
async fn create_use_delete(stack: &Stack, tag: &str, tries: usize) -> Vec<u64> {
    let url = stack.envoy.url("/v1/models");
    let mut serials = Vec::new();
    let mut created = Vec::new();
    for i in 0..KEYS {
        let resp = reqwest::Client::new()
            .post(stack.cp.admin_url("/keys"))
            .bearer_auth(switchyard_tests::ADMIN_TOKEN)
            .json(&json!({"name": format!("{tag}-{i}"), "models": ["*"]}))
            .send()
            .await
            .expect("admin call");
        let status = resp.status().as_u16();
        if let Some(serial) = resp
            .headers()
            .get("x-switchyard-config-serial")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            serials.push(serial);
        }
        let body: Value = resp.json().await.expect("json answer");
        assert_eq!(status, 201, "key {i} not acknowledged in time: {body}");
        let key = body["key"].as_str().expect("the secret, once").to_owned();
        for attempt in 0..tries {
            let got = models_status(&url, &key).await;
            assert_eq!(
                got, 200,
                "key {i} refused ({got}) on request {attempt} right after its creation returned"
            );
        }
        created.push((body["id"].as_str().expect("id").to_owned(), key));
    }
    for (i, (id, key)) in created.iter().enumerate() {
        let (status, body) = stack
            .admin(Method::DELETE, &format!("/keys/{id}"), None)
            .await;
        assert_eq!(status, 204, "deletion {i} not acknowledged in time: {body}");
        for attempt in 0..tries {
            let got = models_status(&url, key).await;
            assert_eq!(
                got, 401,
                "key {i} still served ({got}) on request {attempt} after its deletion returned"
            );
        }
    }
    serials
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_works_through_envoy_as_soon_as_its_creation_returns() {
    let stack = Stack::start_workers(2, |_| {}).await;
    let serials = create_use_delete(&stack, "ryw", 2).await;
    assert_eq!(serials.len(), KEYS, "every write names its config serial");
    assert!(serials.windows(2).all(|w| w[0] < w[1]), "{serials:?}");
    // What the header names can be polled: acknowledged by the one node.
    let last = serials[KEYS - 1];
    let (status, body) = stack
        .admin(Method::GET, &format!("/config/status?serial={last}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acknowledged"], true, "{body}");
    assert_eq!(body["nodes"]["test-gateway"]["state"], "acked", "{body}");

    // Hostile: the status route needs the token and bounds its input, answering JSON.
    let url = stack.cp.admin_url(&format!("/config/status?serial={last}"));
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("acknowledged").is_none() && body["error"].is_object());
    for query in [
        "abc",
        "0",
        "-1",
        "99999999999999999999999",
        &"9".repeat(4000),
    ] {
        let (status, body) = stack
            .admin(Method::GET, &format!("/config/status?serial={query}"), None)
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["message"].is_string());
    }
    let (status, _) = stack
        .admin(
            Method::GET,
            &format!("/config/status?serial={}", last + 1_000_000),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_envoys_a_write_returns_once_both_hold_it() {
    let stack = Stack::start().await;
    let _second = Envoy::start_another(&stack.dir.0, &stack.cp, "second-gateway").await;
    // Fresh connections spread over both Envoys: 4 tries make a miss of either unlikely.
    create_use_delete(&stack, "both", 4).await;
    let (_, nodes) = stack.admin(Method::GET, "/xds/nodes", None).await;
    assert_eq!(nodes["nodes"]["second-gateway"]["connected"], true);
}
