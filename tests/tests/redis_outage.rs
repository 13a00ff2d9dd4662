//! The control plane without its Redis: it starts with Redis down, the admin token works,
//! sign-ins and access tokens get 503 `session_store_unavailable` (never 500), gateway
//! requests through Envoy keep succeeding (a limited key included: its lease ask
//! fails open), and sessions work again once Redis is back, at start and after a loss while
//! running, without a restart. Redis is a `redis-server` of the test's own on a free port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use switchyard_tests::{free_port, Stack, GATEWAY_KEY};

/// A `redis-server` without persistence on `port`, killed on drop.
struct OwnRedis(Option<Child>);

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis(Some(child))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn sign_in(stack: &Stack) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = stack
        .client()
        .post(stack.cp.admin_url("/auth/login"))
        .json(&json!({"login": "ada", "password": "ada's long password"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

async fn me(stack: &Stack, token: &str) -> (u16, Value) {
    let resp = stack
        .client()
        .get(stack.cp.admin_url("/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_unavailable(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "session_store_unavailable", "{body}");
    assert!(headers.contains_key("retry-after"));
}

/// Signs in until it works; only 503 is acceptable meanwhile. Returns the access token.
async fn signed_in(stack: &Stack) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, headers, body) = sign_in(stack).await;
        if status == 200 {
            return body["access_token"].as_str().unwrap().to_owned();
        }
        assert_unavailable(status, &headers, &body);
        assert!(Instant::now() < deadline, "sessions did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Gateway requests with the unlimited and the limited key succeed.
async fn gateway_serves(stack: &Stack, limited: &str) {
    for key in [GATEWAY_KEY, limited] {
        let resp = stack
            .client()
            .post(stack.envoy.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_degrade_to_503_without_redis_and_the_gateway_keeps_serving() {
    let port = free_port();
    let stack = Stack::start_edited(
        1,
        |_| {},
        |config| {
            config.redis = Some(format!("redis://127.0.0.1:{port}"));
            config.redis_prefix = Some(format!("outage-{}", std::process::id()));
        },
    )
    .await;
    stack.wait_ready("smart").await;

    // Redis down from the start: the admin token works, sessions answer 503.
    let (status, body) = stack
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "ada", "password": "ada's long password"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, key) = stack
        .admin(
            Method::POST,
            "/keys",
            Some(json!({"name": "ada-limited", "user": "ada", "rpm": 600})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let limited = key["key"].as_str().unwrap().to_owned();
    let (status, headers, body) = sign_in(&stack).await;
    assert_unavailable(status, &headers, &body);
    // The new key reaches Envoy, and requests flow without Redis.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = stack
            .client()
            .post(stack.envoy.url("/v1/chat/completions"))
            .bearer_auth(&limited)
            .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the new key was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway_serves(&stack, &limited).await;

    // Redis comes up: sessions work, without a restart.
    let mut redis = OwnRedis::start(port);
    let token = signed_in(&stack).await;
    assert_eq!(me(&stack, &token).await.0, 200);

    // Redis is lost while running: 503 (never 500) for access tokens; the admin token and the
    // gateway carry on.
    redis.kill();
    let (status, body) = me(&stack, &token).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "session_store_unavailable");
    let (status, _) = stack.admin(Method::GET, "/users", None).await;
    assert_eq!(status, 200);
    let started = Instant::now();
    gateway_serves(&stack, &limited).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gateway requests slowed down: {:?}",
        started.elapsed()
    );

    // Redis is back (empty: the old session went with it): signing in works again.
    let _redis = OwnRedis::start(port);
    let token = signed_in(&stack).await;
    assert_eq!(me(&stack, &token).await.0, 200);
    assert!(
        !stack
            .cp
            .proc
            .log_text()
            .contains("admin API internal error"),
        "an outage must never be a 500"
    );
}
