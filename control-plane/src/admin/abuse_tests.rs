//! The admin API under a hostile caller: sign-in floods (one name, many names), password hash
//! floods, admin token guessing, anonymous writes to the audit log, oversized and endless
//! requests, and a session store that is down. Through the router with `oneshot`, each request
//! from a chosen client address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::auth::sessions::Sessions;
use crate::crypto;
use crate::identity::Identity;
use crate::state::AppState;
use crate::store::Store;
use crate::test_support::OwnRedis;

const TOKEN: &str = "admin-test-token";

/// The app and its router, built once (building it per request would cost more than the
/// requests themselves, and starve the runtime in a hashing flood).
struct Api {
    app: AppState,
    router: axum::Router,
}

impl std::ops::Deref for Api {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}

async fn app_with(sessions: Sessions) -> Api {
    app_hashing(sessions, Identity::default().hashing).await
}

async fn app_hashing(sessions: Sessions, hashing: crate::auth::Hashing) -> Api {
    let store = Store::connect(&crate::test_support::sqlite_url())
        .await
        .unwrap();
    let identity = Identity {
        sessions,
        hashing,
        ..Identity::default()
    };
    let app = crate::test_support::app_state(store, identity, TOKEN);
    Api {
        router: super::router(app.clone()),
        app,
    }
}

/// Two hashing slots (as on a small machine) and patience: what is measured is the throttle
/// alone, never a refusal for want of a slot.
fn patient() -> crate::auth::Hashing {
    crate::auth::Hashing::new(2, Duration::from_secs(60))
}

/// Sessions on the shared Redis under a prefix of their own.
async fn redis_sessions() -> Sessions {
    Sessions::connect(
        Some("redis://127.0.0.1:6379"),
        &crypto::new_id("sy-test-"),
        3600,
    )
    .await
    .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// One request from `ip`, with `token` as the bearer token if any.
async fn send(
    app: &Api,
    ip: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Body>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = match body {
        Some(b) => req.header("content-type", "application/json").body(b),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let peer: SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn get(app: &Api, ip: &str, path: &str, token: Option<&str>) -> Answer {
    send(app, ip, "GET", path, token, None).await
}

async fn json_call(
    app: &Api,
    ip: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Answer {
    send(
        app,
        ip,
        method,
        path,
        token,
        Some(Body::from(body.to_string())),
    )
    .await
}

async fn login(app: &Api, ip: &str, name: &str, password: &str) -> Answer {
    json_call(
        app,
        ip,
        "POST",
        "/admin/v1/auth/login",
        None,
        json!({"login": name, "password": password}),
    )
    .await
}

async fn audit_rows(app: &Api, action: &str) -> Vec<Value> {
    let a = send(
        app,
        "127.0.0.1",
        "GET",
        &format!("/admin/v1/audit?limit=1000&action={action}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["data"].as_array().cloned().unwrap_or_default()
}

async fn make_user(app: &Api, name: &str) {
    let a = json_call(
        app,
        "127.0.0.1",
        "POST",
        "/admin/v1/users",
        Some(TOKEN),
        json!({"name": name, "password": format!("{name} password!")}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

/// 50 wrong sign-ins at once for one name from one address: at most the allowance reach
/// password verification, the rest are refused (429) without hashing anything.
async fn concurrent_wrong_sign_ins_cost_at_most_the_allowance(app: Api) {
    make_user(&app, "ada").await;
    let allowance = app.identity.spec.max_failed_sign_ins as usize;
    let (hashed_before, _) = app.identity.hashing.counts();
    let attempts = (0..50).map(|_| login(&app, "192.0.2.7", "ada", "wrong password!"));
    let answers = futures::future::join_all(attempts).await;
    let (hashed, _) = app.identity.hashing.counts();
    assert_eq!(
        hashed - hashed_before,
        allowance as u64,
        "password verifications"
    );
    let refused = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let failed = audit_rows(&app, "auth.login_failed").await.len();
    assert!(
        failed <= allowance,
        "{failed} attempts reached verification"
    );
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(refused + failed, 50, "the others wait: {statuses:?}");
    for a in answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
    {
        assert!(a.headers.contains_key("retry-after"), "{:?}", a.headers);
        assert_eq!(a.body["error"]["code"], "too_many_attempts");
    }
    // Throttled attempts write one audit row per window, not one each.
    assert_eq!(audit_rows(&app, "auth.login_throttled").await.len(), 1);
    // The right password from the same place waits too; from elsewhere it works.
    let a = login(&app, "192.0.2.7", "ada", "ada password!").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let a = login(&app, "192.0.2.8", "ada", "ada password!").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn concurrent_wrong_sign_ins_in_memory() {
    let app = app_hashing(Sessions::memory(3600), patient()).await;
    concurrent_wrong_sign_ins_cost_at_most_the_allowance(app).await;
}

#[tokio::test]
async fn concurrent_wrong_sign_ins_on_redis() {
    let app = app_hashing(redis_sessions().await, patient()).await;
    concurrent_wrong_sign_ins_cost_at_most_the_allowance(app).await;
}

/// More sign-ins at once than there are hashing slots: the excess is refused quickly (429,
/// `retry-after: 1`), and the control plane keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_flood_is_refused_quickly_and_health_stays_prompt() {
    let app = Arc::new(app_with(Sessions::memory(3600)).await);
    let flood: Vec<_> = (0..24)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let a = login(&app, "198.51.100.1", &format!("nobody{i}"), "a password!!").await;
                (a, started.elapsed())
            })
        })
        .collect();
    // While the flood runs, health answers at once.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let a = get(&app, "127.0.0.1", "/healthz", None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut busy = 0;
    for task in flood {
        let (a, took) = task.await.unwrap();
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            busy += 1;
            assert_eq!(a.body["error"]["code"], "too_many_requests", "{}", a.body);
            assert_eq!(a.headers["retry-after"], "1");
            assert!(took < Duration::from_secs(2), "refused after {took:?}");
        } else {
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        }
    }
    assert!(
        busy > 0,
        "no sign-in was refused for want of a hashing slot"
    );
}

/// Requests that fail authentication write no audit rows (a flood would fill the database);
/// they are counted in `/metrics`. Authenticated changes are still written.
#[tokio::test]
async fn anonymous_changes_write_no_audit_rows() {
    let app = app_with(Sessions::memory(3600)).await;
    let before = audit_rows(&app, "").await.len();
    let provider = json!({"name": "p", "kind": "openai", "keys": [{"secret": "sk-x"}]});
    for token in [None, Some("wrong-token"), Some("a.b.c")] {
        for _ in 0..3 {
            let a = json_call(
                &app,
                "203.0.113.9",
                "POST",
                "/admin/v1/providers",
                token,
                provider.clone(),
            )
            .await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        }
    }
    assert_eq!(audit_rows(&app, "").await.len(), before, "no rows");
    let metrics = get(&app, "127.0.0.1", "/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let a = json_call(
        &app,
        "127.0.0.1",
        "POST",
        "/admin/v1/users",
        Some(TOKEN),
        json!({"name": "bob", "password": "bob password!"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let rows = audit_rows(&app, "POST").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["actor"], "admin-token");
}

/// Guessing the admin token from one address ends in 429 after the allowance; the right token
/// from that address waits as well until the window ends (else the throttle would tell a
/// guesser which guess was right); other addresses are not affected.
#[tokio::test]
async fn admin_token_guesses_are_throttled_per_address() {
    let app = app_with(Sessions::memory(3600)).await;
    let allowance = app.identity.spec.max_bad_credentials_per_minute;
    for i in 0..allowance {
        let a = send(
            &app,
            "203.0.113.5",
            "GET",
            "/admin/v1/users",
            Some(&format!("guess-{i}")),
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let a = get(&app, "203.0.113.5", "/admin/v1/users", Some("guess-x")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "too_many_attempts");
    let retry: i64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let a = get(&app, "203.0.113.5", "/admin/v1/users", Some(TOKEN)).await;
    assert_eq!(
        a.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right token waits too"
    );
    // Expired or forged access tokens count the same way.
    let a = get(&app, "203.0.113.5", "/admin/v1/me", Some("x.y.z")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    // Another address: unaffected.
    let a = get(&app, "203.0.113.6", "/admin/v1/users", Some(TOKEN)).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = get(&app, "203.0.113.6", "/admin/v1/users", Some("guess")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let text = send_text(&app, "/metrics").await;
    let throttled: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_cp_admin_refused_total{reason=\"throttled\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(throttled >= 3, "{text}");
}

async fn send_text(app: &Api, path: &str) -> String {
    let req = Request::builder().uri(path).body(Body::empty()).unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A body above the admin API's limit is refused with a JSON 413.
#[tokio::test]
async fn oversized_bodies_get_a_json_413() {
    let app = app_with(Sessions::memory(3600)).await;
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(3 << 20));
    let a = send(
        &app,
        "127.0.0.1",
        "POST",
        "/admin/v1/users",
        Some(TOKEN),
        Some(Body::from(big)),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "payload_too_large");
}

/// A request that does not end in time (here: a body that never comes) gets a JSON 503.
#[tokio::test]
async fn endless_requests_end_with_a_json_error() {
    let app = app_with(Sessions::memory(3600)).await;
    let never = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let req = Request::builder()
        .method("POST")
        .uri("/admin/v1/users")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(never))
        .unwrap();
    let started = Instant::now();
    let resp = super::bounded_router(app.app.clone(), Duration::from_millis(200))
        .oneshot(req)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "request_timeout");
}

/// Redis down: sessions answer 503 `session_store_unavailable` with `retry-after` (never
/// 500), the admin token keeps working; Redis back: sessions work again; Redis lost while
/// running: 503 again for access tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_sessions_answer_503_and_the_admin_token_works() {
    let port = OwnRedis::free_port();
    let sessions = Sessions::connect(Some(&OwnRedis::url(port)), "sy-outage", 3600)
        .await
        .expect("no Redis is no reason to stop");
    let app = app_with(sessions).await;
    make_user(&app, "ada").await;
    let unavailable = |a: &Answer| {
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "session_store_unavailable");
        assert!(a.headers.contains_key("retry-after"));
    };
    unavailable(&login(&app, "192.0.2.1", "ada", "ada password!").await);
    let a = get(&app, "127.0.0.1", "/admin/v1/users", Some(TOKEN)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    let mut redis = OwnRedis::start(port);
    let token = until_ok(&app, "ada").await;
    let me = get(&app, "192.0.2.1", "/admin/v1/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);

    redis.kill();
    unavailable(&get(&app, "192.0.2.1", "/admin/v1/me", Some(&token)).await);
    let a = get(&app, "127.0.0.1", "/admin/v1/users", Some(TOKEN)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    let _redis = OwnRedis::start(port);
    let token = until_ok(&app, "ada").await;
    let me = get(&app, "192.0.2.1", "/admin/v1/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
}

/// Signs `name` in, retrying while Redis comes back (503 meanwhile, nothing else).
async fn until_ok(app: &Api, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = login(app, "192.0.2.1", name, &format!("{name} password!")).await;
        if a.status == StatusCode::OK {
            return a.body["access_token"].as_str().unwrap().to_owned();
        }
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert!(Instant::now() < deadline, "sessions did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn throttles_count_ipv6_clients_by_their_64() {
    let net = |ip: &str| {
        super::ClientInfo {
            ip: ip.into(),
            user_agent: String::new(),
        }
        .network()
    };
    assert_eq!(net("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    assert_eq!(net("2001:db8:1:2:bbbb::9"), net("2001:db8:1:2::1"));
    assert_ne!(net("2001:db8:1:3::1"), net("2001:db8:1:2::1"));
    assert_eq!(net("192.0.2.7"), "192.0.2.7");
    assert_eq!(
        net("::ffff:192.0.2.7"),
        "192.0.2.7",
        "v4-mapped is the v4 address"
    );
    assert_eq!(net(""), "");
}

/// A stolen access token is no way to guess the password: wrong current passwords at
/// `PUT /me/password` are counted per user, like failed sign-ins.
#[tokio::test]
async fn wrong_current_passwords_are_throttled_per_user() {
    let app = app_hashing(Sessions::memory(3600), patient()).await;
    make_user(&app, "ada").await;
    let a = login(&app, "192.0.2.1", "ada", "ada password!").await;
    let token = a.body["access_token"].as_str().unwrap().to_owned();
    let change = |current: &'static str| {
        json_call(
            &app,
            "192.0.2.1",
            "PUT",
            "/admin/v1/me/password",
            Some(&token),
            json!({"current_password": current, "new_password": "a new long password"}),
        )
    };
    for _ in 0..app.identity.spec.max_failed_sign_ins {
        assert_eq!(
            change("not the password").await.status,
            StatusCode::FORBIDDEN
        );
    }
    let a = change("ada password!").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.headers.contains_key("retry-after"));
}
