//! Read-your-writes through the router: a write waits for the connected nodes' ACK, answers
//! 202 with its usual body when they do not ACK in time, and `/config/status` says when they
//! have; the status route needs a token and bounds its input.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::identity::Identity;
use crate::state::AppState;
use crate::store::Store;
use crate::xds::build;

const TOKEN: &str = "admin-test-token";
const ACK_TIMEOUT_MS: u64 = 300;

async fn app() -> AppState {
    let store = Store::connect(&crate::test_support::sqlite_url())
        .await
        .unwrap();
    let gateway = crate::config::Gateway {
        ack_timeout_ms: ACK_TIMEOUT_MS,
        ..Default::default()
    };
    crate::test_support::app_state_with(store, Identity::default(), TOKEN, gateway)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn call(
    app: &AppState,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = super::router(app.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn serial(a: &Answer) -> u64 {
    a.headers[super::config_status::SERIAL_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `node` runs `serial` of every type.
fn ack(app: &AppState, node: &str, serial: u64) {
    app.reconciler.cache().update_node(node, |n| {
        for t in [
            build::LISTENER_TYPE,
            build::ROUTE_TYPE,
            build::CLUSTER_TYPE,
            build::ECDS_TYPE,
        ] {
            n.acked_serials.insert(t.to_owned(), serial);
        }
    });
}

async fn create_key(app: &AppState, name: &str) -> Answer {
    call(
        app,
        "POST",
        "/admin/v1/keys",
        Some(json!({"name": name})),
        Some(TOKEN),
    )
    .await
}

#[tokio::test]
async fn with_no_envoy_a_write_answers_at_once_and_names_its_serial() {
    let app = app().await;
    let a = create_key(&app, "first").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(serial(&a), app.reconciler.cache().current().serial);
    assert_eq!(
        a.headers[super::config_status::STATUS_HEADER],
        "acknowledged"
    );
    // A read publishes nothing and names no serial.
    let a = call(&app, "GET", "/admin/v1/keys", None, Some(TOKEN)).await;
    assert!(a.headers.get(super::config_status::SERIAL_HEADER).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_the_ack_of_every_connected_envoy() {
    let app = app().await;
    let cache = app.reconciler.cache().clone();
    cache.node_connected("envoy-1");
    // The node ACKs whatever is published, a little later.
    let acker = tokio::spawn({
        let app = app.clone();
        async move {
            let mut updates = app.reconciler.cache().subscribe();
            while updates.changed().await.is_ok() {
                let serial = updates.borrow_and_update().serial;
                tokio::time::sleep(Duration::from_millis(30)).await;
                ack(&app, "envoy-1", serial);
            }
        }
    });
    let start = Instant::now();
    let a = create_key(&app, "waited").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(
        start.elapsed() >= Duration::from_millis(30),
        "answered before the ACK"
    );
    let s = serial(&a);
    assert!(cache.ack_state(s).acknowledged);
    acker.abort();
}

#[tokio::test]
async fn without_an_ack_in_time_a_write_answers_202_with_its_body_and_can_be_polled() {
    let app = app().await;
    app.reconciler.cache().node_connected("silent");
    let start = Instant::now();
    let a = create_key(&app, "late").await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(ACK_TIMEOUT_MS), "{took:?}");
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    // The secret is shown this once, even so.
    assert!(
        a.body["key"].as_str().unwrap().starts_with("sk-sy-"),
        "{}",
        a.body
    );
    assert_eq!(a.headers[super::config_status::STATUS_HEADER], "pending");
    let s = serial(&a);
    let location = a.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/admin/v1/config/status?serial={s}"));

    let polled = call(&app, "GET", &location, None, Some(TOKEN)).await;
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.body);
    assert_eq!(polled.body["acknowledged"], false);
    assert_eq!(polled.body["nodes"]["silent"]["state"], "pending");
    assert!(!polled.body["nodes"]["silent"]["lagging"]
        .as_array()
        .unwrap()
        .is_empty());

    ack(&app, "silent", s);
    let polled = call(&app, "GET", &location, None, Some(TOKEN)).await;
    assert_eq!(polled.body["acknowledged"], true, "{}", polled.body);
    assert_eq!(polled.body["nodes"]["silent"]["state"], "acked");

    // A deletion that times out answers 202 as well (its 204 had no body).
    let id = a.body["id"].as_str().unwrap();
    let gone = call(
        &app,
        "DELETE",
        &format!("/admin/v1/keys/{id}"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(gone.status, StatusCode::ACCEPTED);
    assert!(serial(&gone) > s);
}

#[tokio::test]
async fn the_status_route_needs_a_token_and_bounds_its_input() {
    let app = app().await;
    create_key(&app, "one").await;
    let current = app.reconciler.cache().current().serial;
    let path = format!("/admin/v1/config/status?serial={current}");
    let a = call(&app, "GET", &path, None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body["error"]["code"], "invalid_token");
    let a = call(&app, "GET", &path, None, Some("wrong-token")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.get("acknowledged").is_none());

    for (query, status) in [
        ("", StatusCode::BAD_REQUEST),
        ("?serial=", StatusCode::BAD_REQUEST),
        ("?serial=abc", StatusCode::BAD_REQUEST),
        ("?serial=-1", StatusCode::BAD_REQUEST),
        ("?serial=1.5", StatusCode::BAD_REQUEST),
        ("?serial=0", StatusCode::BAD_REQUEST),
        ("?serial=184467440737095516160000", StatusCode::BAD_REQUEST),
        ("?serial=18446744073709551615", StatusCode::NOT_FOUND),
        (&format!("?serial={}", current + 1), StatusCode::NOT_FOUND),
        (
            &format!("?serial={current}&serial=1"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let a = call(
            &app,
            "GET",
            &format!("/admin/v1/config/status{query}"),
            None,
            Some(TOKEN),
        )
        .await;
        assert_eq!(a.status, status, "{query}: {}", a.body);
        assert!(
            a.body["error"]["message"].is_string(),
            "{query}: a JSON error"
        );
    }
    let long = format!("/admin/v1/config/status?serial={}", "9".repeat(10_000));
    let a = call(&app, "GET", &long, None, Some(TOKEN)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let ok = call(&app, "GET", &path, None, Some(TOKEN)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["acknowledged"], true, "no Envoy connected");
}
