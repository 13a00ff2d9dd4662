//! Global limits through the real Envoy, its filter's leases and the control plane (counters in
//! Redis or in memory): a requests-per-minute limit shared by two Envoys, a tokens-per-minute
//! limit charged when responses end, credits that 32 concurrent clients overshoot by at most one
//! request (each admission holds a reservation) and that an expired lease leaves spendable at
//! once, gateway traffic that goes on while Redis is away and limits that come back with it,
//! and what an admin allows a user (models, a spend cap over all of its keys) holding for the
//! keys the user makes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use switchyard_tests::{free_port, wait_until, Envoy, Stack};

/// A stack whose control plane keeps its counters in Redis at `url`, under a prefix of its own.
async fn stack_with_redis_at(url: &str) -> Stack {
    let prefix = format!("switchyard-test-{}", std::process::id());
    Stack::start_edited(
        1,
        |_| {},
        |config| {
            config.redis = Some(url.to_owned());
            config.redis_prefix = Some(format!(
                "{prefix}-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
        },
    )
    .await
}

/// A stack whose control plane keeps its counters in the local Redis.
async fn stack_with_redis() -> Stack {
    stack_with_redis_at("redis://127.0.0.1:6379").await
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
    // Each Envoy counts down from what the window had used when its lease was granted: the
    // last answer may come from the Envoy whose lease was granted first, but the lease that
    // filled the window ends at 0.
    assert_eq!(remaining_seen.iter().min(), Some(&0));
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
    // Refusals are answered by each Envoy from its lease for a moment (250 ms) before it asks
    // again: the control plane sees some of them, not each.
    let refused = stack
        .cp
        .metric(&format!(
            "{decisions}{{decision=\"refused\",code=\"rate_limit_exceeded\"}}"
        ))
        .await
        .unwrap_or(0);
    assert!((1..=40).contains(&refused), "refusals seen: {refused}");
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
    // Tokens are counted in the Envoy's lease when the response ends, and reported with its
    // next ask: let the first end be logged before the next request.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = send(&url, &secret, &chat()).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["x-ratelimit-remaining-tokens"], "21");
    tokio::time::sleep(Duration::from_millis(200)).await;
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

/// 29 tokens at USD 100 per Mtok: what the mock's answer costs, in micro-USD.
const COST: i64 = 2_900;

/// Prices the mock's models at USD 100 per Mtok, so that each answer costs [`COST`].
async fn price_the_mock(stack: &Stack) {
    for model in ["gpt-4o-mini", "mock-slow"] {
        let (status, body) = stack
            .admin(
                Method::PUT,
                &format!("/prices/mock/{model}"),
                Some(json!({"input": 100.0, "output": 100.0})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// A chat request that asks for at most 20 tokens: its reservation is about 45 tokens' worth,
/// 4,500 micro-USD (the body's ~75 bytes as 25 prompt tokens, and 20 output tokens).
fn capped_chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]})
}

/// The most [`capped_chat`] can reserve.
const RESERVE: i64 = 5_000;

/// A [`capped_chat`] request for `model` with `client` (its connections kept).
async fn send_capped(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    model: &str,
) -> reqwest::Response {
    client
        .post(url)
        .bearer_auth(secret)
        .json(&capped_chat(model))
        .send()
        .await
        .unwrap()
}

/// Requests of [`capped_chat`] that [`BALANCE`] covers.
const COVERED: i64 = 10;
/// A balance for 10 requests and a half.
const BALANCE: i64 = COVERED * COST + COST / 2;

/// `served` requests of `user`, whose balance was [`BALANCE`]: at most one more than it covers,
/// and the ledger took each one once (the balance ends at exactly `BALANCE - served x COST`,
/// above minus one reservation).
async fn the_balance_was_overshot_by_at_most_one_request(stack: &Stack, user: &str, served: i64) {
    assert!(
        (COVERED..=COVERED + 1).contains(&served),
        "served {served}: the balance covers {COVERED}, and one more may start while it is positive"
    );
    wait_until(
        "every debit in the ledger",
        Duration::from_secs(10),
        || async {
            let path = format!("/credits/{user}");
            let (_, account) = stack.admin(Method::GET, &path, None).await;
            account["balance_micros"] == BALANCE - served * COST
        },
    )
    .await;
    assert!(BALANCE - served * COST >= -RESERVE);
}

/// 32 clients send requests for `model` as fast as they are answered, against a balance that
/// covers 10 requests and a half: each admission holds the request's reservation until its end
/// is charged, so at most one request more than the balance covers is served (however many
/// clients there are), and the ledger ends above minus one request's reservation.
async fn thirty_two_clients_overshoot_a_balance_by_at_most_one_request(stack: Stack, model: &str) {
    price_the_mock(&stack).await;
    let secret = key(&stack, json!({"name": "prepaid", "user": "prepaid"})).await;
    stack.top_up("prepaid", BALANCE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    const CLIENTS: usize = 32;
    let url = stack.envoy.url("/v1/chat/completions");
    let ids = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (url, secret, ids) = (url.clone(), secret.clone(), ids.clone());
        let model = model.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            // A refusal may come while others hold reservations: a client stops once it has
            // been refused for a second without a break (a loaded machine may keep the first
            // requests in flight, holding their reservations, for some hundred ms).
            let mut refused_since: Option<Instant> = None;
            while refused_since.is_none_or(|t| t.elapsed() < Duration::from_secs(1)) {
                let resp = send_capped(&client, &url, &secret, &model).await;
                match resp.status().as_u16() {
                    200 => {
                        refused_since = None;
                        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
                        ids.lock().unwrap().push(id);
                        let _ = resp.bytes().await;
                    }
                    402 => {
                        refused_since.get_or_insert_with(Instant::now);
                        let refusal: Value = resp.json().await.unwrap();
                        assert_eq!(
                            refusal["error"]["code"], "insufficient_credits",
                            "{refusal}"
                        );
                        assert_eq!(refusal["error"]["type"], "insufficient_quota");
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    other => panic!("unexpected {other}: {}", resp.text().await.unwrap()),
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("clients finish")
            .unwrap();
    }
    let served: HashSet<String> = ids.lock().unwrap().iter().cloned().collect();
    let served = served.len() as i64;
    eprintln!(
        "credits: balance {BALANCE}, cost {COST}, {CLIENTS} clients: {served} served in {:?}",
        started.elapsed()
    );
    the_balance_was_overshot_by_at_most_one_request(&stack, "prepaid", served).await;

    // Refused at once; served again as soon as credits are added.
    let resp = send(&url, &secret, &chat()).await;
    assert_eq!(resp.status(), 402);
    stack.top_up("prepaid", 1_000_000).await;
    let waited = wait_until(
        "a top-up to take effect",
        Duration::from_secs(1),
        || async { send(&url, &secret, &capped_chat("smart")).await.status() == 200 },
    )
    .await;
    eprintln!("top-up took effect after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_overshoot_credits_by_at_most_one_request_on_redis() {
    thirty_two_clients_overshoot_a_balance_by_at_most_one_request(
        stack_with_redis().await,
        "smart",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_overshoot_credits_by_at_most_one_request_in_memory() {
    thirty_two_clients_overshoot_a_balance_by_at_most_one_request(Stack::start().await, "smart")
        .await;
}

/// The same with a provider that answers in 300 ms: the first requests are still in flight
/// when the others ask again (their lease below zero, its unused requests given back, refused);
/// their ends refund the lease above zero, and its next ask must get requests to spend that on.
/// A dozen or more clients then ask at once and each is granted requests: the lease keeps at
/// most what one ask may give back (it once kept them all, the next ask was out of bounds and
/// refused, and the requests in the moment until the next answer went through unchecked: 12
/// served).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_of_a_slow_provider_spend_the_whole_balance() {
    thirty_two_clients_overshoot_a_balance_by_at_most_one_request(
        Stack::start().await,
        "mock-slow",
    )
    .await;
}

/// A balance spent in two bursts with a pause longer than a lease between them: what the first
/// lease left is spendable as soon as the second burst asks (the Envoy gives it back on its
/// tick, or releases it with its next ask), not only once its hold at the control plane would
/// have expired; and the balance is overshot by at most one request all the same.
async fn what_an_expired_lease_left_is_spendable_at_once(stack: Stack) {
    price_the_mock(&stack).await;
    let secret = key(&stack, json!({"name": "paused", "user": "paused"})).await;
    stack.top_up("paused", BALANCE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = stack.envoy.url("/v1/chat/completions");
    let client = reqwest::Client::new();
    let mut served = 0;
    for burst in 0..2 {
        loop {
            let resp = send_capped(&client, &url, &secret, "smart").await;
            match resp.status().as_u16() {
                200 => served += 1,
                402 => break,
                other => panic!("unexpected {other}: {}", resp.text().await.unwrap()),
            }
            let _ = resp.bytes().await;
            if burst == 0 && served == 3 {
                break;
            }
        }
        if burst == 0 {
            // The lease lasts 2 s.
            tokio::time::sleep(Duration::from_millis(2_500)).await;
        }
    }
    the_balance_was_overshot_by_at_most_one_request(&stack, "paused", served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_an_expired_lease_left_is_spendable_at_once_on_redis() {
    what_an_expired_lease_left_is_spendable_at_once(stack_with_redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_an_expired_lease_left_is_spendable_at_once_in_memory() {
    what_an_expired_lease_left_is_spendable_at_once(Stack::start().await).await;
}

/// A `redis-server` of the test's own on `port` (the shared one on 6379 is never stopped),
/// stopped when dropped.
struct OwnRedis(std::process::Child);

impl OwnRedis {
    async fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        wait_until("redis-server to listen", Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        OwnRedis(child)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `n` requests of a limited key one after another; each must be served, and quickly.
async fn served_quickly(url: &str, secret: &str, n: usize) {
    for _ in 0..n {
        let started = Instant::now();
        let resp = send(url, secret, &chat()).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "a request waited {:?} for the limits",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_traffic_goes_on_while_redis_is_away_and_limits_return_with_it() {
    let port = free_port();
    let redis = OwnRedis::start(port).await;
    let stack = stack_with_redis_at(&format!("redis://127.0.0.1:{port}")).await;
    let secret = key(&stack, json!({"name": "counted", "rpm": 3})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = stack.envoy.url("/v1/chat/completions");
    served_quickly(&url, &secret, 3).await;
    assert_eq!(send(&url, &secret, &chat()).await.status(), 429);

    // Redis goes away: the limits cannot be checked, requests go through (fail open) without
    // waiting for them, once the refusal the Envoy remembers (250 ms) is over.
    drop(redis);
    tokio::time::sleep(Duration::from_millis(300)).await;
    served_quickly(&url, &secret, 10).await;

    // It comes back (empty): limits apply again, with no restart.
    let _redis = OwnRedis::start(port).await;
    until_limited(&url, &secret).await;
}

/// Waits until a key's requests are refused by their limit (Redis reached again).
async fn until_limited(url: &str, secret: &str) {
    wait_until(
        "the limit to apply once Redis is up",
        Duration::from_secs(10),
        || async { send(url, secret, &chat()).await.status() == 429 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_plane_whose_redis_is_down_starts_and_serves_limited_keys() {
    let port = free_port();
    let stack = stack_with_redis_at(&format!("redis://127.0.0.1:{port}")).await;
    let secret = key(&stack, json!({"name": "unchecked", "rpm": 1})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = stack.envoy.url("/v1/chat/completions");
    served_quickly(&url, &secret, 5).await;
    let _redis = OwnRedis::start(port).await;
    until_limited(&url, &secret).await;
}

/// A chat request with `key`: (status, body).
async fn chat_with(stack: &Stack, key: &str, model: &str) -> (u16, Value) {
    let resp = send(
        &stack.envoy.url("/v1/chat/completions"),
        key,
        &capped_chat(model),
    )
    .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Whether a request was refused for its model (403 `model_not_allowed` or, for a key that may
/// not learn which models exist, 404 `model_not_found`).
fn refused_for_its_model((status, body): &(u16, Value)) -> bool {
    matches!(status, 403 | 404)
        && ["model_not_allowed", "model_not_found"]
            .contains(&body["error"]["code"].as_str().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_an_admin_allows_a_user_bounds_the_keys_the_user_makes() {
    let stack = Stack::start().await;
    price_the_mock(&stack).await;
    let password = "scoped's long password";
    let (status, body) = stack
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "scoped", "password": password})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack
        .admin(
            Method::PUT,
            "/users/scoped/limits",
            Some(json!({"models": ["gpt-4o-mini"], "daily_budget_micros": 5_000})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let tokens: Value = stack
        .client()
        .post(stack.cp.admin_url("/auth/login"))
        .json(&json!({"login": "scoped", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let make_key = |body: Value| {
        let (stack, access) = (&stack, access.clone());
        async move {
            let resp = stack
                .client()
                .post(stack.cp.admin_url("/keys"))
                .bearer_auth(&access)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };

    // The user cannot give a key more than they are allowed, nor change what they are allowed.
    let (status, refusal) = make_key(json!({"name": "scoped-star", "models": ["*"]})).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(refusal["error"]["code"], "forbidden");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-4o-mini"),
        "{refusal}"
    );
    let resp = stack
        .client()
        .put(stack.cp.admin_url("/users/scoped/limits"))
        .bearer_auth(&access)
        .json(&json!({"models": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // A key made without models gets the user's scope.
    let (status, a) = make_key(json!({"name": "scoped-a"})).await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["models"], json!(["gpt-4o-mini"]));
    let a = a["key"].as_str().unwrap().to_owned();
    let (status, b) = make_key(json!({"name": "scoped-b", "models": ["gpt-4o-mini"]})).await;
    assert_eq!(status, 201, "{b}");
    let b = b["key"].as_str().unwrap().to_owned();
    // Known to Envoy (listing models costs nothing and asks no limits).
    for key in [&a, &b] {
        wait_until(
            "the user's keys to work",
            Duration::from_secs(2),
            || async {
                let resp = stack
                    .client()
                    .get(stack.envoy.url("/v1/models"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                resp.status() == 200
            },
        )
        .await;
    }
    assert_eq!(chat_with(&stack, &a, "gpt-4o-mini").await.0, 200);
    let other = chat_with(&stack, &a, "smart").await;
    assert!(refused_for_its_model(&other), "{other:?}");

    // The spend cap covers both keys: 2,900 + 2,900 reach 5,000. Each key's lease may pass
    // the cap by its last request (its end is reported with the key's next ask): at most one
    // more per key is served before the refusal.
    assert_eq!(chat_with(&stack, &b, "gpt-4o-mini").await.0, 200);
    for key in [&a, &b] {
        let mut answer = chat_with(&stack, key, "gpt-4o-mini").await;
        if answer.0 == 200 {
            answer = chat_with(&stack, key, "gpt-4o-mini").await;
        }
        let (status, body) = answer;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("owner"),
            "{body}"
        );
    }

    // An admin narrows the user to another model (and lifts the cap): within a second the
    // keys made earlier lose theirs (their own scope and the new one share nothing).
    let (status, body) = stack
        .admin(
            Method::PUT,
            "/users/scoped/limits",
            Some(json!({"models": ["mistral-small-latest"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let waited = wait_until(
        "the narrowed scope to reach the keys",
        Duration::from_secs(1),
        || async { refused_for_its_model(&chat_with(&stack, &a, "gpt-4o-mini").await) },
    )
    .await;
    eprintln!("narrowing took effect after {waited:?}");
    let still = chat_with(&stack, &b, "gpt-4o-mini").await;
    assert!(refused_for_its_model(&still), "{still:?}");
    let list: Value = stack
        .client()
        .get(stack.envoy.url("/v1/models"))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["data"],
        json!([]),
        "neither key's own scope meets the new one"
    );
}
