//! Provider keys: per-key requests-per-second limits hold across Envoy's workers (shared data,
//! compare-and-swap), and a key the provider refuses is left out, the request retried on another.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use switchyard_tests::{Stack, GATEWAY_KEY, METERED_QPS, PROVIDER_KEY, REVOKED_KEY};

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_qps_limit_holds_across_both_envoy_workers() {
    let stack = Stack::start_workers(2, |_| {}).await;
    let url = stack.envoy.url("/v1/chat/completions");
    let body =
        json!({"model": "metered/mock-metered", "messages": [{"role": "user", "content": "Hi"}]});
    // Start just after a second begins, so that the burst most likely fits in one.
    let into_second = unix_now().subsec_millis();
    if into_second > 50 {
        tokio::time::sleep(Duration::from_millis(u64::from(1000 - into_second) + 5)).await;
    }
    let first_second = unix_now().as_secs();
    const BURST: usize = 40;
    let mut calls = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        // One connection each, so that both workers take a share.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let (url, body) = (url.clone(), body.clone());
        calls.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(GATEWAY_KEY)
                .json(&body)
                .send()
                .await
                .expect("request")
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for call in calls {
        let resp = call.await.unwrap();
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(resp.headers()["retry-after"], "1");
                let error: Value = resp.json().await.unwrap();
                assert_eq!(error["error"]["code"], "rate_limit_exceeded");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let seconds = unix_now().as_secs() - first_second + 1;
    let allowed = u64::from(METERED_QPS) * seconds;
    assert!(
        ok as u64 <= allowed,
        "{ok} requests passed a {METERED_QPS}/s key in {seconds} s"
    );
    assert!(ok >= METERED_QPS as usize, "only {ok} passed");
    assert_eq!(ok + limited, BURST);
    let upstream = stack
        .mock
        .requests()
        .iter()
        .filter(|r| r.json()["model"] == "mock-metered")
        .count();
    assert_eq!(
        upstream, ok,
        "the provider saw exactly the admitted requests"
    );
    // Both workers took connections (else this would not test sharing between them).
    let stats = stack.envoy.stats().await;
    let listener = format!("127.0.0.1_{}", stack.envoy.ports.gateway);
    for worker in ["0", "1"] {
        let accepted: u64 = stats
            .lines()
            .filter(|l| l.starts_with("envoy_listener_worker_downstream_cx_total{"))
            .filter(|l| l.contains(&format!("envoy_worker_id=\"{worker}\"")))
            .filter(|l| l.contains(&listener))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(accepted > 0, "worker {worker} took no connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_provider_key_is_left_out_and_the_request_retried_on_another() {
    let stack = Stack::start().await;
    // `twokeys` has a key the provider refuses (401) before a good one.
    let body =
        json!({"model": "twokeys/mock-keys", "messages": [{"role": "user", "content": "Hi"}]});
    for _ in 0..4 {
        let resp = stack.post("/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
    }
    let sent: Vec<String> = stack
        .mock
        .requests()
        .iter()
        .filter(|r| r.json()["model"] == "mock-keys")
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    let revoked = format!("Bearer {REVOKED_KEY}");
    assert_eq!(
        sent.iter().filter(|k| **k == revoked).count(),
        1,
        "the refused key was used again: {sent:?}"
    );
    assert_eq!(
        sent.iter()
            .filter(|k| **k == format!("Bearer {PROVIDER_KEY}"))
            .count(),
        4
    );
    switchyard_tests::wait_until(
        "the refusal in Envoy's log",
        Duration::from_secs(5),
        || async {
            stack
                .envoy
                .proc
                .log_text()
                .contains("refused (401): left out for 3600 s")
        },
    )
    .await;
    assert!(
        !stack.envoy.proc.log_text().contains(REVOKED_KEY),
        "a provider secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_provider_through_the_egress_proxies_that_work() {
    // `proxied` has two proxies: one nothing listens on, then a working CONNECT proxy.
    let stack = Stack::start().await;
    let body =
        json!({"model": "proxied/mock-proxied", "messages": [{"role": "user", "content": "Hi"}]});
    // The health checks take the dead proxy out of the pool within seconds; until then a
    // request through it fails over to the other (one failed connection).
    let mut served = 0;
    for _ in 0..10 {
        let resp = stack.post("/v1/chat/completions", &body).await;
        if resp.status() == 200 {
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served >= 9, "only {served} of 10 through the proxy pool");
    assert!(stack.proxy.tunnels() >= 1, "nothing went through the proxy");
    let reached = stack
        .mock
        .requests()
        .iter()
        .filter(|r| r.json()["model"] == "mock-proxied")
        .count();
    assert_eq!(reached, served);
}
