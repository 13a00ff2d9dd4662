//! Admin API through the router with `oneshot`: auth, CRUD, validation, secrets never returned,
//! and every change published as a new snapshot.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::crypto;
use crate::identity::Identity;
use crate::state::AppState;
use crate::store::Store;

const TOKEN: &str = "admin-test-token";

async fn app() -> AppState {
    let store = Store::connect(&crate::test_support::sqlite_url())
        .await
        .unwrap();
    crate::test_support::app_state(store, Identity::default(), TOKEN)
}

async fn call(
    app: &AppState,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
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
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    (status, value)
}

async fn admin(
    app: &AppState,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(app, method, path, body, Some(TOKEN)).await
}

#[tokio::test]
async fn health_is_open_and_the_rest_needs_the_token() {
    let app = app().await;
    assert_eq!(
        call(&app, "GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
    let (status, body) = call(&app, "GET", "/admin/v1/providers", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(
        call(&app, "GET", "/admin/v1/providers", None, Some("wrong"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin(&app, "GET", "/admin/v1/providers", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn provider_crud_never_returns_secrets_and_publishes() {
    let app = app().await;
    let secret = "sk-upstream-very-secret";
    let (status, body) = admin(
        &app,
        "POST",
        "/admin/v1/providers",
        Some(json!({
            "name": "local", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1",
            "keys": [{"secret": secret, "weight": 2}], "models": ["m1"]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["keys"][0]["weight"], 2);
    assert!(!body.to_string().contains(secret));
    let serial = app.reconciler.cache().current().serial;
    assert!(serial >= 1);

    let (_, list) = admin(&app, "GET", "/admin/v1/providers", None).await;
    assert!(!list.to_string().contains(secret));
    assert_eq!(list.as_array().unwrap().len(), 1);

    let (status, _) = admin(
        &app,
        "POST",
        "/admin/v1/providers",
        Some(json!({"name": "local", "kind": "openai", "base_url": "https://x/v1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, body) = admin(
        &app,
        "PUT",
        "/admin/v1/providers/local",
        Some(json!({"models": ["m1", "m2"], "enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["models"], json!(["m1", "m2"]));
    assert_eq!(
        body["keys"].as_array().unwrap().len(),
        1,
        "keys kept when not given"
    );
    assert!(app.reconciler.cache().current().serial > serial);

    assert_eq!(
        admin(&app, "DELETE", "/admin/v1/providers/local", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        admin(&app, "GET", "/admin/v1/providers/local", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin(&app, "DELETE", "/admin/v1/providers/local", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_admin_input_is_a_json_400() {
    let app = app().await;
    for body in [
        json!({"name": "a/b", "kind": "openai"}),
        json!({"name": "ok", "kind": "martian"}),
        json!({"name": "ok", "kind": "openai_compatible"}),
        json!({"name": "ok", "kind": "openai", "base_url": "ftp://x"}),
        json!({"name": "ok", "kind": "openai", "surprise": 1}),
        json!({"name": "ok", "kind": "openai", "keys": [{"secret": ""}]}),
    ] {
        let (status, resp) = admin(&app, "POST", "/admin/v1/providers", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {resp}");
        assert_eq!(resp["error"]["type"], "invalid_request_error");
    }
    let (status, resp) = call(&app, "POST", "/admin/v1/models", None, Some(TOKEN)).await;
    assert!(status.is_client_error(), "{status}");
    let _ = resp;
    let (status, resp) = admin(
        &app,
        "POST",
        "/admin/v1/models",
        Some(json!({"name": "smart", "targets": [{"provider": "ghost", "model": "x"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(resp["error"]["message"].as_str().unwrap().contains("ghost"));
}

#[tokio::test]
async fn models_and_keys_lifecycle() {
    let app = app().await;
    admin(
        &app,
        "POST",
        "/admin/v1/providers",
        Some(
            json!({"name": "p", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}),
        ),
    )
    .await;
    let (status, body) = admin(&app, "POST", "/admin/v1/models", Some(json!({"name": "smart", "strategy": "cost", "targets": [{"provider": "p", "model": "m"}]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["targets"][0]["weight"], 1);
    assert_eq!(
        admin(
            &app,
            "POST",
            "/admin/v1/models",
            Some(json!({"name": "smart", "targets": [{"provider": "p", "model": "m"}]}))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    let (status, body) = admin(
        &app,
        "PUT",
        "/admin/v1/models/smart",
        Some(json!({"strategy": "latency"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["strategy"], "latency");

    let (status, created) = admin(
        &app,
        "POST",
        "/admin/v1/keys",
        Some(json!({"name": "ci", "models": ["smart"], "credits": 5.0})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-sy-"));
    assert_eq!(created["user"], "ci");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, listed) = admin(&app, "GET", "/admin/v1/keys", None).await;
    assert!(
        !listed.to_string().contains(&secret),
        "secret shown only once"
    );
    let (_, one) = admin(&app, "GET", &format!("/admin/v1/keys/{id}"), None).await;
    assert_eq!(one["prefix"], &secret[..8]);
    assert!(one.get("key").is_none());

    // The pushed filter config knows the key by its keyed digest only: not the secret, not a
    // plain SHA-256 anyone could test guesses against.
    let snapshot = app.reconciler.cache().current();
    let ecds = &snapshot.types[crate::xds::build::ECDS_TYPE].resources[0].1;
    let text = String::from_utf8_lossy(&ecds.value);
    let keyed = app.secrets.digest_key.digest(&secret);
    assert!(text.contains(crypto::filter_digest(&keyed)));
    assert!(!text.contains(&crypto::digest(&secret)));
    assert!(!text.contains(&secret));

    assert_eq!(
        admin(&app, "DELETE", &format!("/admin/v1/keys/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        admin(&app, "GET", &format!("/admin/v1/keys/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, nodes) = admin(&app, "GET", "/admin/v1/xds/nodes", None).await;
    assert!(nodes["serial"].as_u64().unwrap() >= 4);
}

/// Found by the schema-driven fuzz run: extreme times overflowed the range arithmetic (a panic
/// that dropped the connection).
#[tokio::test]
async fn extreme_report_ranges_are_a_400_not_a_dropped_connection() {
    let app = app().await;
    for query in [
        "/admin/v1/reports/usage?to=-9223372036854775808",
        "/admin/v1/reports/usage?from=-9223372036854775808&to=9223372036854775807",
        "/admin/v1/reports/providers?to=-9223372036854775808",
        "/admin/v1/reports/providers?to=9223372036854775807",
    ] {
        let (status, body) = admin(&app, "GET", query, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = app().await;
    let (status, body) = admin(&app, "PATCH", "/admin/v1/keys", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let (status, body) = admin(&app, "GET", "/admin/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = admin(&app, "GET", "/admin/v1/users/a%2Fb/sessions/%zz", None).await;
    assert!(status.is_client_error(), "{status}");
    assert!(body["error"]["message"].is_string(), "{body}");
}
