//! Global limits through the real Envoy rate limit filter and the control plane as the rate
//! limit service (counters in Redis): a requests-per-minute limit shared by two Envoys, a
//! tokens-per-minute limit charged when responses end, and credits that run out with an
//! overshoot no larger than the requests in flight.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use switchyard_tests::{wait_until, Envoy, Stack};

/// A stack whose control plane keeps its counters in the local Redis, under a prefix of its own.
async fn stack_with_redis() -> Stack {
    let prefix = format!("switchyard-test-{}", std::process::id());
    Stack::start_edited(
        1,
        |_| {},
        |config| {
            config.push_str(&format!(
                "redis: \"redis://127.0.0.1:6379\"\nredis_prefix: \"{prefix}-{}\"\n",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
        },
    )
    .await
}

/// Creates a gateway key through the admin API; returns its secret.
async fn key(stack: &Stack, body: Value) -> String {
    let (status, created) = stack.admin(Method::POST, "/keys", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created["key"].as_str().unwrap().to_owned()
}

fn chat() -> Value {
    json!({"model": "smart", "messages": [{"role": "user", "content": "Hi"}]})
}

/// A request on a new connection (so that both Envoys, sharing the listener, get some).
async fn send(url: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request through Envoy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_envoys_share_one_key_limit_of_60_requests_per_minute() {
    let stack = stack_with_redis().await;
    let secret = key(&stack, json!({"name": "burst", "rpm": 60})).await;
    let second = Envoy::start_another(&stack.dir.0, &stack.cp, "second-gateway").await;
    let url = stack.envoy.url("/v1/chat/completions");
    // Both Envoys have the key's configuration (limited) before the run.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut ok = 0;
    let mut limited = 0;
    let mut remaining_seen = Vec::new();
    for _ in 0..100 {
        let resp = send(&url, &secret, &chat()).await;
        match resp.status().as_u16() {
            200 => {
                ok += 1;
                assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "60");
                remaining_seen.push(
                    resp.headers()["x-ratelimit-remaining-requests"]
                        .to_str()
                        .unwrap()
                        .parse::<u32>()
                        .unwrap(),
                );
            }
            429 => {
                limited += 1;
                let retry: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry), "retry-after {retry}");
                assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
                assert!(resp.headers().get("x-switchyard-refusal").is_none());
                let error: Value = resp.json().await.unwrap();
                assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
                assert_eq!(error["error"]["type"], "rate_limit_error");
            }
            other => panic!("unexpected {other}: {}", resp.text().await.unwrap()),
        }
    }
    assert_eq!((ok, limited), (60, 40), "60 successes, then 429s");
    let seen = stack.mock.requests();
    assert_eq!(seen.len(), 60, "refused requests never reach the provider");
    assert!(
        seen.iter()
            .all(|r| r.header("x-switchyard-limited").is_none()),
        "the limits marker stays in the gateway"
    );
    assert_eq!(remaining_seen.first(), Some(&59));
    assert_eq!(remaining_seen.last(), Some(&0));
    // Both Envoys served: the limit held across them.
    let first_served = stack
        .envoy
        .wait_counter("switchyard_requests_total", 1)
        .await;
    let second_served = second.wait_counter("switchyard_requests_total", 1).await;
    assert!(
        first_served > 0 && second_served > 0,
        "requests per Envoy: {first_served} and {second_served}"
    );
    // The control plane's own metrics count the decisions.
    let decisions = "switchyard_cp_rate_limit_decisions_total";
    assert_eq!(
        stack
            .cp
            .metric(&format!("{decisions}{{decision=\"admitted\"}}"))
            .await,
        Some(60)
    );
    assert_eq!(
        stack
            .cp
            .metric(&format!(
                "{decisions}{{decision=\"refused\",code=\"rate_limit_exceeded\"}}"
            ))
            .await,
        Some(40)
    );
    // Other keys are not limited by it.
    let free = send(&url, switchyard_tests::GATEWAY_KEY, &chat()).await;
    assert_eq!(free.status(), 200);
    assert!(free.headers().get("x-ratelimit-limit-requests").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tokens_per_minute_limit_stops_a_key_once_its_tokens_are_spent() {
    let stack = stack_with_redis().await;
    // The mock's answer uses 29 tokens: two requests spend 58 of 50.
    let secret = key(&stack, json!({"name": "thrifty", "tpm": 50})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = stack.envoy.url("/v1/chat/completions");
    let first = send(&url, &secret, &chat()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "50");
    assert_eq!(first.headers()["x-ratelimit-remaining-tokens"], "50");
    // Tokens are charged when the response ends (Envoy reports them after the stream): wait
    // for each charge before the next request.
    wait_for_charges(&stack, 1).await;
    let second = send(&url, &secret, &chat()).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["x-ratelimit-remaining-tokens"], "21");
    wait_for_charges(&stack, 2).await;
    let refused = send(&url, &secret, &chat()).await;
    assert_eq!(refused.status(), 429);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(
        refused["error"]["code"], "tokens_per_minute_exceeded",
        "{refused}"
    );
    // An Anthropic client hears it in Anthropic's shape.
    let messages = json!({"model": "smart", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]});
    let resp = send(&stack.envoy.url("/v1/messages"), &secret, &messages).await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

/// Waits until the control plane has charged the ends of `n` requests.
async fn wait_for_charges(stack: &Stack, n: u64) {
    wait_until("request ends charged", Duration::from_secs(5), || async {
        stack
            .cp
            .metric("switchyard_cp_rate_limit_charges_total")
            .await
            .is_some_and(|c| c >= n)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_run_out_with_an_overshoot_bounded_by_the_requests_in_flight() {
    let stack = stack_with_redis().await;
    // 29 tokens at USD 100 per Mtok: 2,900 micro-USD a request.
    let (status, body) = stack
        .admin(
            Method::PUT,
            "/prices/mock/gpt-4o-mini",
            Some(json!({"input": 100.0, "output": 100.0})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    const COST: i64 = 2_900;
    const BALANCE: i64 = 10 * COST + COST / 2;
    let secret = key(&stack, json!({"name": "prepaid", "user": "prepaid"})).await;
    stack.top_up("prepaid", BALANCE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 8 clients, each sending one request after another until it is refused.
    const CLIENTS: usize = 8;
    let url = stack.envoy.url("/v1/chat/completions");
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (url, secret, ids) = (url.clone(), secret.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let resp = client
                    .post(&url)
                    .bearer_auth(&secret)
                    .json(&chat())
                    .send()
                    .await
                    .unwrap();
                match resp.status().as_u16() {
                    200 => {
                        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
                        ids.lock().unwrap().push(id);
                        let _ = resp.bytes().await;
                    }
                    402 => return resp.json::<Value>().await.unwrap(),
                    other => panic!("unexpected {other}"),
                }
            }
        }));
    }
    for t in tasks {
        let refusal = t.await.unwrap();
        assert_eq!(
            refusal["error"]["code"], "insufficient_credits",
            "{refusal}"
        );
        assert_eq!(refusal["error"]["type"], "insufficient_quota");
    }
    let served: HashSet<String> = ids.lock().unwrap().iter().cloned().collect();
    let served = served.len() as i64;
    // Admitted while the spendable balance (ledger less costs reported but not yet in it) was
    // above zero: at least the 11 the balance covers; at most those plus the requests whose
    // cost had not been reported when it ran out (each client: the one it was waiting for, and
    // the one before, whose report may still be on its way).
    let covered = BALANCE.div_euclid(COST) + 1;
    assert!(
        served >= covered,
        "served {served}, balance covers {covered}"
    );
    let bound = covered + 2 * CLIENTS as i64;
    assert!(
        served <= bound,
        "served {served}: overshoot beyond the bound {bound}"
    );

    // The ledger took each one once: the balance ends at exactly BALANCE - served x COST.
    wait_until(
        "every debit in the ledger",
        Duration::from_secs(10),
        || async {
            let (_, account) = stack.admin(Method::GET, "/credits/prepaid", None).await;
            account["balance_micros"] == BALANCE - served * COST
        },
    )
    .await;
    eprintln!(
        "credits: balance {BALANCE}, cost {COST}, {CLIENTS} clients: {served} served \
         (covered {covered}, bound {bound}), overshoot {} micro-USD",
        served * COST - BALANCE
    );

    // Refused at once; served again as soon as credits are added.
    let resp = send(&url, &secret, &chat()).await;
    assert_eq!(resp.status(), 402);
    stack.top_up("prepaid", 1_000_000).await;
    let waited = wait_until(
        "a top-up to take effect",
        Duration::from_secs(1),
        || async { send(&url, &secret, &chat()).await.status() == 200 },
    )
    .await;
    eprintln!("top-up took effect after {waited:?}");
}
