//! Who may call what, over the whole route list of the OpenAPI document: a table gives every
//! route's access, and the test fails when a route is missing from it (a new route must be
//! classified). A user is refused every admin route and every route on another user's
//! resources, and nothing of the other user's changes; without a token, only the sign-in routes
//! answer. Sessions: sign-in, rotation, replay revoking the family, remote logout taking effect
//! on the next request. On SQLite with sessions in memory, and on PostgreSQL with sessions in
//! Redis.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::auth::sessions::Sessions;
use crate::crypto;
use crate::identity::Identity;
use crate::state::AppState;
use crate::store::Store;

const TOKEN: &str = "admin-test-token";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    /// No token needed.
    Open,
    /// Any signed-in caller, on what is theirs.
    Signed,
    /// Admins only: a user gets 403.
    Admin,
    /// A user may call it on their own resources only: on another's, 403 or 404.
    Owner,
}

/// Every route: method, path as in the document, access, the path a user probes it with
/// (another user's resources), and a valid body.
fn table(
    bob_key: &str,
    bob_session: &str,
) -> Vec<(&'static str, &'static str, Access, String, Value)> {
    use Access::*;
    let p = |s: &str| format!("/admin/v1{s}");
    vec![
        (
            "POST",
            "/auth/login",
            Open,
            p("/auth/login"),
            json!({"login": "x", "password": "y"}),
        ),
        (
            "POST",
            "/auth/refresh",
            Open,
            p("/auth/refresh"),
            json!({"refresh_token": "syr_x"}),
        ),
        (
            "POST",
            "/auth/register",
            Open,
            p("/auth/register"),
            json!({"name": "z", "password": "long enough pw"}),
        ),
        (
            "POST",
            "/auth/logout",
            Signed,
            p("/auth/logout"),
            Value::Null,
        ),
        ("GET", "/me", Signed, p("/me"), Value::Null),
        (
            "PUT",
            "/me/password",
            Signed,
            p("/me/password"),
            json!({"current_password": "x", "new_password": "y"}),
        ),
        (
            "GET",
            "/me/sessions",
            Signed,
            p("/me/sessions"),
            Value::Null,
        ),
        (
            "DELETE",
            "/me/sessions",
            Signed,
            p("/me/sessions"),
            Value::Null,
        ),
        (
            "DELETE",
            "/me/sessions/{id}",
            Owner,
            p(&format!("/me/sessions/{bob_session}")),
            Value::Null,
        ),
        ("GET", "/users", Admin, p("/users"), Value::Null),
        (
            "POST",
            "/users",
            Admin,
            p("/users"),
            json!({"name": "mallory", "password": "long enough pw", "role": "admin"}),
        ),
        ("GET", "/users/{name}", Owner, p("/users/bob"), Value::Null),
        (
            "PATCH",
            "/users/{name}",
            Admin,
            p("/users/alice"),
            json!({"role": "admin"}),
        ),
        (
            "GET",
            "/users/{name}/sessions",
            Owner,
            p("/users/bob/sessions"),
            Value::Null,
        ),
        (
            "DELETE",
            "/users/{name}/sessions",
            Owner,
            p("/users/bob/sessions"),
            Value::Null,
        ),
        (
            "DELETE",
            "/users/{name}/sessions/{id}",
            Owner,
            p(&format!("/users/bob/sessions/{bob_session}")),
            Value::Null,
        ),
        (
            "GET",
            "/users/{user}/limits",
            Owner,
            p("/users/bob/limits"),
            Value::Null,
        ),
        (
            "PUT",
            "/users/{user}/limits",
            Admin,
            p("/users/alice/limits"),
            json!({"rpm": 1000000, "models": ["*"]}),
        ),
        ("GET", "/audit", Admin, p("/audit"), Value::Null),
        ("GET", "/keys", Signed, p("/keys"), Value::Null),
        (
            "POST",
            "/keys",
            Owner,
            p("/keys"),
            json!({"name": "stolen", "user": "bob"}),
        ),
        (
            "GET",
            "/keys/{id}",
            Owner,
            p(&format!("/keys/{bob_key}")),
            Value::Null,
        ),
        (
            "DELETE",
            "/keys/{id}",
            Owner,
            p(&format!("/keys/{bob_key}")),
            Value::Null,
        ),
        ("GET", "/providers", Signed, p("/providers"), Value::Null),
        ("POST", "/providers", Signed, p("/providers"), Value::Null),
        (
            "GET",
            "/providers/{name}",
            Owner,
            p("/providers/bobs"),
            Value::Null,
        ),
        (
            "PUT",
            "/providers/{name}",
            Owner,
            p("/providers/public"),
            json!({"enabled": false}),
        ),
        (
            "DELETE",
            "/providers/{name}",
            Owner,
            p("/providers/public"),
            Value::Null,
        ),
        (
            "PUT",
            "/providers/{name}/shares/{user}",
            Owner,
            p("/providers/bobs/shares/alice"),
            Value::Null,
        ),
        (
            "DELETE",
            "/providers/{name}/shares/{user}",
            Owner,
            p("/providers/bobs/shares/carol"),
            Value::Null,
        ),
        (
            "POST",
            "/providers/{name}/submit",
            Owner,
            p("/providers/bobs/submit"),
            Value::Null,
        ),
        (
            "POST",
            "/providers/{name}/review",
            Admin,
            p("/providers/bobs/review"),
            json!({"decision": "approve"}),
        ),
        (
            "GET",
            "/providers/{name}/models",
            Owner,
            p("/providers/bobs/models"),
            Value::Null,
        ),
        (
            "PATCH",
            "/providers/{name}/models/{model}",
            Owner,
            p("/providers/public/models/m"),
            json!({"enabled": false, "tags": ["embeddings"]}),
        ),
        (
            "POST",
            "/providers/{name}/discover",
            Owner,
            p("/providers/public/discover"),
            Value::Null,
        ),
        ("GET", "/aliases", Signed, p("/aliases"), Value::Null),
        (
            "POST",
            "/aliases",
            Admin,
            p("/aliases"),
            json!({"name": "hijack", "target": "smart"}),
        ),
        (
            "GET",
            "/aliases/{name}",
            Signed,
            p("/aliases/fast"),
            Value::Null,
        ),
        (
            "PUT",
            "/aliases/{name}",
            Admin,
            p("/aliases/fast"),
            json!({"target": "public/m"}),
        ),
        (
            "DELETE",
            "/aliases/{name}",
            Admin,
            p("/aliases/fast"),
            Value::Null,
        ),
        ("GET", "/models", Signed, p("/models"), Value::Null),
        (
            "POST",
            "/models",
            Admin,
            p("/models"),
            json!({"name": "hijack", "targets": [{"provider": "public", "model": "m"}]}),
        ),
        (
            "GET",
            "/models/{name}",
            Signed,
            p("/models/smart"),
            Value::Null,
        ),
        (
            "PUT",
            "/models/{name}",
            Admin,
            p("/models/smart"),
            json!({"strategy": "cost"}),
        ),
        (
            "DELETE",
            "/models/{name}",
            Admin,
            p("/models/smart"),
            Value::Null,
        ),
        ("GET", "/prices", Signed, p("/prices"), Value::Null),
        (
            "PUT",
            "/prices/{provider}/{model}",
            Admin,
            p("/prices/public/m"),
            json!({"input": 0.0, "output": 0.0}),
        ),
        (
            "DELETE",
            "/prices/{provider}/{model}",
            Admin,
            p("/prices/public/m"),
            Value::Null,
        ),
        ("GET", "/credits", Admin, p("/credits"), Value::Null),
        (
            "GET",
            "/credits/{user}",
            Owner,
            p("/credits/bob"),
            Value::Null,
        ),
        (
            "GET",
            "/credits/{user}/ledger",
            Owner,
            p("/credits/bob/ledger"),
            Value::Null,
        ),
        (
            "POST",
            "/credits/{user}/entries",
            Admin,
            p("/credits/alice/entries"),
            json!({"amount_micros": 1000000000, "kind": "topup"}),
        ),
        (
            "PUT",
            "/credits/{user}/rules",
            Admin,
            p("/credits/alice/rules"),
            json!({"topup_below_micros": 1, "topup_amount_micros": 1000000000}),
        ),
        (
            "GET",
            "/requests",
            Owner,
            p("/requests?user=bob"),
            Value::Null,
        ),
        (
            "GET",
            "/reports/usage",
            Signed,
            p("/reports/usage"),
            Value::Null,
        ),
        (
            "GET",
            "/reports/providers",
            Admin,
            p("/reports/providers"),
            Value::Null,
        ),
        ("GET", "/health", Admin, p("/health"), Value::Null),
        ("GET", "/xds/nodes", Admin, p("/xds/nodes"), Value::Null),
        (
            "GET",
            "/config/status",
            Signed,
            p("/config/status?serial=1"),
            Value::Null,
        ),
        (
            "POST",
            "/security/master-key/rotate",
            Admin,
            p("/security/master-key/rotate"),
            json!({}),
        ),
    ]
}

async fn app_on(store: Store, sessions: Sessions) -> AppState {
    app_with(store, sessions, |_| {})
}

/// [`app_on`], with `adjust` applied to the identity settings first.
fn app_with(store: Store, sessions: Sessions, adjust: impl FnOnce(&mut Identity)) -> AppState {
    let mut identity = Identity {
        sessions,
        ..Identity::default()
    };
    // Forged tokens are sent to every route from one address here; the throttle on them has
    // tests of its own (`abuse_tests`).
    identity.spec.max_bad_credentials_per_minute = u32::MAX;
    adjust(&mut identity);
    crate::test_support::app_state(store, identity, TOKEN)
}

struct Client {
    app: AppState,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Value,
        token: Option<&str>,
        user_agent: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("user-agent", user_agent);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = if body.is_null() {
            req.body(Body::empty())
        } else {
            req.header("content-type", "application/json")
                .body(Body::from(body.to_string()))
        }
        .unwrap();
        let resp = super::router(self.app.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, v) = self
            .call(method, &format!("/admin/v1{path}"), body, Some(TOKEN), "t")
            .await;
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    async fn login(&self, name: &str, ua: &str) -> (String, String, String) {
        let (status, v) = self
            .call(
                "POST",
                "/admin/v1/auth/login",
                json!({"login": name, "password": format!("{name} password!"), "device": ua}),
                None,
                ua,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        (s("access_token"), s("refresh_token"), s("session_id"))
    }
}

/// Users alice and bob (role user), carol (admin); a public provider, bob's private provider,
/// bob's key, a logical model.
async fn world(app: AppState) -> (Client, String) {
    let c = Client { app };
    for (name, role) in [("alice", "user"), ("bob", "user"), ("carol", "admin")] {
        c.admin(
            "POST",
            "/users",
            json!({"name": name, "password": format!("{name} password!"), "role": role}),
        )
        .await;
    }
    c.admin("POST", "/providers", json!({"name": "public", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]})).await;
    c.admin(
        "POST",
        "/models",
        json!({"name": "smart", "targets": [{"provider": "public", "model": "m"}]}),
    )
    .await;
    c.admin(
        "POST",
        "/aliases",
        json!({"name": "fast", "target": "smart"}),
    )
    .await;
    let key = c
        .admin("POST", "/keys", json!({"name": "bobs-key", "user": "bob"}))
        .await;
    (c, key["id"].as_str().unwrap().to_owned())
}

async fn rbac_over_every_route(app: AppState) {
    let (c, bob_key) = world(app).await;
    let (bob, _, bob_session) = c.login("bob", "bob-phone/1").await;
    let (status, v) = c
        .call("POST", "/admin/v1/providers", json!({"name": "bobs", "kind": "openai_compatible", "base_url": "https://93.184.216.34/v1", "models": ["bm"], "keys": [{"secret": "sk-bob-upstream"}]}), Some(&bob), "bob-phone/1")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["visibility"].as_str(), v["owner"].as_str()),
        (Some("private"), Some("bob"))
    );
    let (status, _) = c
        .call(
            "PUT",
            "/admin/v1/providers/bobs/shares/carol",
            Value::Null,
            Some(&bob),
            "b",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (alice, _, _) = c.login("alice", "alice-laptop/1").await;

    // The table covers the document exactly.
    let (_, doc) = super::api();
    let mut documented = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        for (m, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ] {
            if op.is_some() {
                documented.insert((m.to_owned(), path.clone()));
            }
        }
    }
    let rows = table(&bob_key, &bob_session);
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(m, p, ..)| (m.to_string(), format!("/admin/v1{p}")))
        .collect();
    assert_eq!(
        listed, documented,
        "every documented route has a row, and only those"
    );

    for (method, route, access, probe, body) in &rows {
        // Without a token: only the open routes answer.
        let (status, v) = c.call(method, probe, body.clone(), None, "anon").await;
        if *access == Access::Open {
            assert_ne!(
                v["error"]["code"], "invalid_token",
                "{method} {route} is open"
            );
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {route} without a token: {v}"
            );
            assert_eq!(v["error"]["code"], "invalid_token");
        }
        // A forged access token counts as none.
        if *access != Access::Open {
            let forged = format!("{}x", &alice[..alice.len() - 1]);
            let (status, _) = c
                .call(method, probe, body.clone(), Some(&forged), "anon")
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {route} with a forged token"
            );
        }
        // As alice, on bob's things or admin routes.
        if matches!(access, Access::Admin | Access::Owner) {
            let (status, v) = c
                .call(method, probe, body.clone(), Some(&alice), "alice-laptop/1")
                .await;
            assert!(
                status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
                "{method} {route} as a user must be refused, got {status}: {v}"
            );
            assert!(
                v["error"]["type"].as_str().is_some(),
                "{method} {route}: JSON error"
            );
        }
    }

    // Nothing of bob's or of the gateway changed.
    let key = c
        .admin("GET", &format!("/keys/{bob_key}"), Value::Null)
        .await;
    assert_eq!(key["user"], "bob");
    let bobs = c.admin("GET", "/providers/bobs", Value::Null).await;
    assert_eq!(
        (bobs["visibility"].as_str(), bobs["review"].as_str()),
        (Some("private"), Some(""))
    );
    assert_eq!(bobs["shared_with"], json!(["carol"]));
    let public = c.admin("GET", "/providers/public", Value::Null).await;
    assert_eq!(public["enabled"], true);
    let models = c
        .admin("GET", "/providers/public/models", Value::Null)
        .await;
    assert_eq!(models["data"][0]["model"], "m");
    assert_eq!(models["data"][0]["enabled"], true);
    assert_eq!(models["data"][0]["tags_overridden"], false);
    assert_eq!(
        c.admin("GET", "/aliases", Value::Null).await,
        json!([{"name": "fast", "target": "smart"}])
    );
    assert_eq!(
        c.admin("GET", "/models/smart", Value::Null).await["strategy"],
        "balanced"
    );
    let users = c.admin("GET", "/users", Value::Null).await;
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["name"] != "mallory"));
    assert_eq!(
        c.admin("GET", "/users/alice", Value::Null).await["role"],
        "user"
    );
    let (status, _) = c
        .call(
            "GET",
            "/admin/v1/me",
            Value::Null,
            Some(&bob),
            "bob-phone/1",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "bob's session survived alice's attempts"
    );
    let (_, credits) = c
        .call("GET", "/admin/v1/credits", Value::Null, Some(TOKEN), "t")
        .await;
    assert!(
        credits["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["user"] != "alice"),
        "{credits}"
    );

    // What alice may do: her own keys, a private provider of her own (public addresses only),
    // reading what is shared with her... and nothing more.
    let (status, mine) = c
        .call(
            "POST",
            "/admin/v1/keys",
            json!({"name": "alices-key"}),
            Some(&alice),
            "a",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    assert_eq!(mine["user"], "alice");
    let (_, keys) = c
        .call("GET", "/admin/v1/keys", Value::Null, Some(&alice), "a")
        .await;
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alices-key"]);
    let (status, v) = c
        .call(
            "POST",
            "/admin/v1/keys",
            json!({"name": "rich", "credits": 1000.0}),
            Some(&alice),
            "a",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "users do not give themselves credits: {v}"
    );
    let (_, providers) = c
        .call("GET", "/admin/v1/providers", Value::Null, Some(&alice), "a")
        .await;
    let names: Vec<&str> = providers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["public"],
        "bob's private provider is not alice's to see"
    );
    assert!(
        providers[0]["keys"].as_array().unwrap().is_empty(),
        "a user sees no key ids of others' providers"
    );
    let (status, v) = c
        .call("GET", "/admin/v1/requests", Value::Null, Some(&alice), "a")
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

async fn sessions_rotate_detect_replay_and_log_out_remotely(app: AppState) {
    let (c, _) = world(app).await;
    let (access, refresh, session) = c.login("bob", "bob-phone/1").await;
    let (status, me) = c
        .call(
            "GET",
            "/admin/v1/me",
            Value::Null,
            Some(&access),
            "bob-phone/1",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("bob"), Some("user"))
    );

    // Wrong password and unknown user: the same answer.
    for login in ["bob", "nobody"] {
        let (status, v) = c
            .call(
                "POST",
                "/admin/v1/auth/login",
                json!({"login": login, "password": "wrong password"}),
                None,
                "x",
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["message"], "Wrong user name or password.");
    }

    // Rotation: the refresh token works once, and the new one works.
    let (status, pair) = c
        .call(
            "POST",
            "/admin/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
            "bob-phone/1",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let refresh2 = pair["refresh_token"].as_str().unwrap().to_owned();
    let access2 = pair["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert_eq!(pair["session_id"], session.as_str());
    let (status, _) = c
        .call(
            "GET",
            "/admin/v1/me",
            Value::Null,
            Some(&access2),
            "bob-phone/1",
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // A refresh from another device is allowed, recorded on the session, and audited.
    let (status, pair) = c
        .call(
            "POST",
            "/admin/v1/auth/refresh",
            json!({"refresh_token": refresh2}),
            None,
            "curl/8",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let refresh3 = pair["refresh_token"].as_str().unwrap().to_owned();
    let access3 = pair["access_token"].as_str().unwrap().to_owned();
    let (_, devices) = c
        .call(
            "GET",
            "/admin/v1/me/sessions",
            Value::Null,
            Some(&access3),
            "curl/8",
        )
        .await;
    assert_eq!(devices[0]["current"], true);
    assert_eq!(
        devices[0]["suspicious"][0]["reason"], "new_device",
        "{devices}"
    );
    let audit = c.admin("GET", "/audit?action=session.", Value::Null).await;
    assert_eq!(
        audit["data"][0]["action"], "session.suspicious_refresh",
        "{audit}"
    );

    // Replay of a used refresh token: the family is revoked, access tokens included.
    let (status, v) = c
        .call(
            "POST",
            "/admin/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
            "evil",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{v}"
    );
    let (status, _) = c
        .call("GET", "/admin/v1/me", Value::Null, Some(&access3), "curl/8")
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the family's access token died with it"
    );
    let (status, _) = c
        .call(
            "POST",
            "/admin/v1/auth/refresh",
            json!({"refresh_token": refresh3}),
            None,
            "curl/8",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "and its latest refresh token"
    );
    let audit = c
        .admin("GET", "/audit?action=session.replay", Value::Null)
        .await;
    assert_eq!(audit["data"][0]["actor"], "bob");

    // Remote logout: from the laptop, end the phone's session; the phone's next call fails.
    let (phone, _, phone_session) = c.login("bob", "bob-phone/2").await;
    let (laptop, _, _) = c.login("bob", "bob-laptop/2").await;
    let (_, devices) = c
        .call(
            "GET",
            "/admin/v1/me/sessions",
            Value::Null,
            Some(&laptop),
            "bob-laptop/2",
        )
        .await;
    assert_eq!(devices.as_array().unwrap().len(), 2, "{devices}");
    let (status, _) = c
        .call(
            "DELETE",
            &format!("/admin/v1/me/sessions/{phone_session}"),
            Value::Null,
            Some(&laptop),
            "bob-laptop/2",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = c
        .call(
            "GET",
            "/admin/v1/me",
            Value::Null,
            Some(&phone),
            "bob-phone/2",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the phone is signed out at its next request"
    );
    let (status, _) = c
        .call(
            "GET",
            "/admin/v1/me",
            Value::Null,
            Some(&laptop),
            "bob-laptop/2",
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Logout; a disabled user's tokens stop at once and they cannot sign in.
    let (status, _) = c
        .call(
            "POST",
            "/admin/v1/auth/logout",
            Value::Null,
            Some(&laptop),
            "l",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.call("GET", "/admin/v1/me", Value::Null, Some(&laptop), "l")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (tablet, _, _) = c.login("bob", "tablet").await;
    c.admin("PATCH", "/users/bob", json!({"status": "disabled"}))
        .await;
    assert_eq!(
        c.call("GET", "/admin/v1/me", Value::Null, Some(&tablet), "t")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, v) = c
        .call(
            "POST",
            "/admin/v1/auth/login",
            json!({"login": "bob", "password": "bob password!"}),
            None,
            "t",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["message"], "This account is disabled.");

    // Every change is in the audit log with its actor.
    let audit = c
        .admin("GET", "/audit?actor=admin-token", Value::Null)
        .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"PATCH /admin/v1/users/{name}"),
        "{actions:?}"
    );
    assert!(actions.contains(&"POST /admin/v1/keys"), "{actions:?}");
}

/// Open registration: users make themselves (role user, never admin), a bounded number per
/// address.
#[tokio::test]
async fn open_registration_makes_users_and_is_bounded_per_address() {
    let store = Store::connect(&crate::test_support::sqlite_url())
        .await
        .unwrap();
    let app = app_with(store, Sessions::memory(3600), |identity| {
        identity.spec.registration = crate::config::Registration::Open;
    });
    let c = Client { app };
    let (status, v) = c
        .call(
            "POST",
            "/admin/v1/auth/register",
            json!({"name": "eve", "password": "eve's long password", "email": "eve@example.com"}),
            None,
            "r",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["role"], "user");
    let (status, _) = c
        .call(
            "POST",
            "/admin/v1/auth/register",
            json!({"name": "eve2", "password": "eve's long password", "role": "admin"}),
            None,
            "r",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no role in a registration");
    let (status, _) = c
        .call(
            "POST",
            "/admin/v1/auth/register",
            json!({"name": "eve", "password": "eve's long password"}),
            None,
            "r",
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = c
        .call(
            "POST",
            "/admin/v1/auth/login",
            json!({"login": "eve@example.com", "password": "eve's long password"}),
            None,
            "r",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "sign-in by email");
    for i in 0..10 {
        c.call(
            "POST",
            "/admin/v1/auth/register",
            json!({"name": format!("bot{i}"), "password": "short"}),
            None,
            "r",
        )
        .await;
    }
    let (status, v) = c
        .call(
            "POST",
            "/admin/v1/auth/register",
            json!({"name": "late", "password": "a long password"}),
            None,
            "r",
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
}

async fn sign_ins_are_throttled_after_failures(app: AppState) {
    let (c, _) = world(app).await;
    for _ in 0..10 {
        c.call(
            "POST",
            "/admin/v1/auth/login",
            json!({"login": "alice", "password": "guess guess"}),
            None,
            "x",
        )
        .await;
    }
    let (status, v) = c
        .call(
            "POST",
            "/admin/v1/auth/login",
            json!({"login": "alice", "password": "alice password!"}),
            None,
            "x",
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "too_many_attempts");
}

macro_rules! on_backends {
    ($($name:ident),*) => {
        mod sqlite_memory {
            $(#[tokio::test] async fn $name() {
                let store = Store::connect(&crate::test_support::sqlite_url()).await.unwrap();
                super::$name(super::app_on(store, Sessions::memory(3600)).await).await;
            })*
            use super::*;
        }
        mod postgres_redis {
            $(#[tokio::test] async fn $name() {
                let Some(url) = crate::test_support::pg_url_for_schema().await else { return };
                let store = Store::connect(&url).await.unwrap();
                let prefix = crypto::new_id("sy-test-");
                let redis = crate::test_support::REDIS_URL;
                let sessions = match Sessions::connect(Some(redis), &prefix, 3600).await {
                    Ok(s) if s.reachable().await => s,
                    _ if crate::test_support::services_required() => panic!("Redis is required in CI"),
                    _ => return crate::test_support::skip_tier("redis", redis, &"not reachable"),
                };
                super::$name(super::app_on(store, sessions).await).await;
            })*
            use super::*;
        }
    };
}

on_backends!(
    rbac_over_every_route,
    sessions_rotate_detect_replay_and_log_out_remotely,
    sign_ins_are_throttled_after_failures
);

/// A user's provider may only reach public addresses: literals and names resolving inside the
/// network are refused at creation and on update; at connect time the control plane resolves
/// the name again and gives Envoy only vetted addresses, so a name that turns private later
/// (DNS rebinding) leaves the provider out of the configuration.
async fn providers_of_users_reach_only_public_addresses(store: Store) {
    let names = Arc::new(crate::ssrf::Fixed::default());
    names.set("metadata.evil.example", &["169.254.169.254"]);
    names.set("intranet.evil.example", &["10.20.30.40"]);
    names.set("loop6.evil.example", &["::1"]);
    names.set("rebind.evil.example", &["93.184.216.34"]);
    names.set("aiplatform.googleapis.com", &["142.250.80.10"]);
    let app = app_with(store, Sessions::memory(3600), |identity| {
        identity.guard = crate::ssrf::Guard::new(Vec::new(), names.clone());
    });
    let (c, _) = world(app).await;
    assert!(
        !c.app.reconciler.compute().await.unwrap().vetted,
        "nothing to re-check yet"
    );
    let (alice, _, _) = c.login("alice", "a").await;
    let create = |base: &str| json!({"name": "mine", "kind": "openai_compatible", "base_url": base, "models": ["m"]});
    for base in [
        "http://127.0.0.1:8080/v1",
        "http://127.1/v1",
        "http://2130706433/v1",
        "http://10.0.0.1/v1",
        "http://10.255.1.2:9000/v1",
        "http://169.254.169.254/latest",
        "http://[::1]:8080/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://[fd00:ec2::254]/v1",
        "http://0.0.0.0/v1",
        "http://localhost:8080/v1",
        "http://metadata.evil.example/v1",
        "http://intranet.evil.example/v1",
        "http://loop6.evil.example/v1",
        "http://nxdomain.evil.example/v1",
    ] {
        let (status, v) = c
            .call(
                "POST",
                "/admin/v1/providers",
                create(base),
                Some(&alice),
                "a",
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{base}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("base_url refused"), "{base}: {message}");
    }
    // A user's Vertex key may only ask Google for tokens (the control plane makes that call).
    let sa = crate::test_support::service_account_json("http://169.254.169.254/token");
    let vertex = json!({"name": "v", "kind": "vertex", "project": "p", "keys": [{"secret": sa}], "models": ["gemini-2.5-flash"]});
    let (status, v) = c
        .call("POST", "/admin/v1/providers", vertex, Some(&alice), "a")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token_uri"),
        "{v}"
    );
    // Proxies are the operator's.
    let mut with_proxy = create("https://rebind.evil.example/v1");
    with_proxy["proxies"] = json!(["10.0.0.8:3128"]);
    let (status, _) = c
        .call("POST", "/admin/v1/providers", with_proxy, Some(&alice), "a")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A public name passes; the cluster connects to the vetted address only.
    let (status, v) = c
        .call(
            "POST",
            "/admin/v1/providers",
            create("https://rebind.evil.example/v1"),
            Some(&alice),
            "a",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let state = c.app.reconciler.compute().await.unwrap();
    assert!(state.vetted, "re-checked every 30 s from now on");
    assert!(state.filter.models.iter().any(|m| m.name == "mine/m"));
    let cluster = state
        .clusters
        .iter()
        .find(|c| c.name == "provider-mine")
        .expect("cluster");
    assert_eq!(cluster.pinned, vec!["93.184.216.34:443".parse().unwrap()]);
    let (status, v) = c
        .call(
            "PUT",
            "/admin/v1/providers/mine",
            json!({"kind": "vertex", "project": "p"}),
            Some(&alice),
            "a",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a kind change brings its keys: {v}"
    );
    // Update to an inside address: refused; the admin's own providers are not checked.
    let (status, _) = c
        .call(
            "PUT",
            "/admin/v1/providers/mine",
            json!({"base_url": "http://10.0.0.1/v1"}),
            Some(&alice),
            "a",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The name turns private: at the next configuration the provider is out.
    names.set("rebind.evil.example", &["127.0.0.1"]);
    let state = c.app.reconciler.compute().await.unwrap();
    assert!(
        !state.filter.models.iter().any(|m| m.name == "mine/m"),
        "rebound name refused at connect time"
    );
    assert!(!state.clusters.iter().any(|c| c.name == "provider-mine"));
    names.set("rebind.evil.example", &["93.184.216.35"]);
    let state = c.app.reconciler.compute().await.unwrap();
    let cluster = state
        .clusters
        .iter()
        .find(|c| c.name == "provider-mine")
        .expect("back");
    assert_eq!(cluster.pinned, vec!["93.184.216.35:443".parse().unwrap()]);
}

#[tokio::test]
async fn providers_of_users_reach_only_public_addresses_on_sqlite() {
    let store = Store::connect(&crate::test_support::sqlite_url())
        .await
        .unwrap();
    providers_of_users_reach_only_public_addresses(store).await;
}

/// Rotation: every stored secret sealed again under the new key, the gateway's configuration
/// unchanged, the old key forgotten.
async fn master_key_rotation_reseals_everything(app: AppState) {
    let (c, _) = world(app).await;
    c.admin(
        "PUT",
        "/providers/public",
        json!({"keys": [{"secret": "sk-upstream-one"}, {"secret": "sk-upstream-two"}]}),
    )
    .await;
    let before = c.app.reconciler.compute().await.unwrap();
    // The access token key, as `Identity::load` keeps it.
    let sealed_setting = c.app.secrets.master.seal("token key");
    c.app
        .store
        .set_setting_if_absent(crate::identity::TOKEN_KEY_SETTING, &sealed_setting)
        .await
        .unwrap();
    let old_id = c.app.secrets.master.current_id();
    let old_sealed: Vec<String> = c
        .app
        .store
        .list_provider_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.secret_sealed)
        .collect();
    let rotated = c
        .admin("POST", "/security/master-key/rotate", json!({}))
        .await;
    assert_ne!(rotated["key_id"].as_str().unwrap(), old_id);
    assert!(
        rotated["resealed"].as_u64().unwrap() == 3,
        "two provider keys and the access token key: {rotated}"
    );
    assert!(!rotated.to_string().contains("sk-upstream"));
    let keys = c.app.store.list_provider_keys().await.unwrap();
    for k in &keys {
        assert!(c.app.secrets.master.is_current(&k.secret_sealed));
        assert!(!old_sealed.contains(&k.secret_sealed));
    }
    let setting = c
        .app
        .store
        .get_setting(crate::identity::TOKEN_KEY_SETTING)
        .await
        .unwrap()
        .unwrap();
    assert!(c.app.secrets.master.is_current(&setting));
    assert_eq!(c.app.secrets.master.open(&setting).unwrap(), "token key");
    let after = c.app.reconciler.compute().await.unwrap();
    assert_eq!(
        before.filter, after.filter,
        "Envoy's configuration is unchanged"
    );
    // Old sealed values no longer open: the old key is gone.
    assert!(old_sealed
        .iter()
        .all(|s| c.app.secrets.master.open(s).is_err()));
    // Sessions survive (the access token key was sealed again, not replaced).
    let (token, _, _) = c.login("alice", "a").await;
    assert_eq!(
        c.call("GET", "/admin/v1/me", Value::Null, Some(&token), "a")
            .await
            .0,
        StatusCode::OK
    );
    let (status, v) = c
        .call(
            "POST",
            "/admin/v1/security/master-key/rotate",
            json!({"key": "short"}),
            Some(TOKEN),
            "t",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn master_key_rotation_on_postgres() {
    let Some(url) = crate::test_support::pg_url_for_schema().await else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    master_key_rotation_reseals_everything(app_on(store, Sessions::memory(3600)).await).await;
}

#[tokio::test]
async fn master_key_rotation_on_sqlite() {
    let store = Store::connect(&crate::test_support::sqlite_url())
        .await
        .unwrap();
    master_key_rotation_reseals_everything(app_on(store, Sessions::memory(3600)).await).await;
}

/// What an admin allows a user bounds the user's keys: a user cannot give a key more models
/// than their own scope (403), a key made without `models` gets exactly that scope, each key
/// serves only what it and its owner both allow (narrowing the user narrows keys made
/// earlier, an admin's `*` key included), spend caps over all of a user's keys make them
/// limited, and only an admin sets any of it.
async fn users_scopes_and_caps_bound_their_keys(app: AppState) {
    let (c, _) = world(app.clone()).await;
    let limits = c
        .admin(
            "PUT",
            "/users/alice/limits",
            json!({"models": ["gpt-4o-mini"], "daily_budget_micros": 5_000}),
        )
        .await;
    assert_eq!(limits["models"], json!(["gpt-4o-mini"]));
    let (alice, _, _) = c.login("alice", "laptop").await;
    let user = |method: &'static str, path: &'static str, body: Value| {
        let (c, alice) = (&c, alice.clone());
        async move {
            c.call(
                method,
                &format!("/admin/v1{path}"),
                body,
                Some(&alice),
                "laptop",
            )
            .await
        }
    };
    let (status, own) = user("GET", "/users/alice/limits", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["models"], json!(["gpt-4o-mini"]));
    assert_eq!(own["daily_budget_micros"], 5_000);
    assert_eq!(
        user("GET", "/users/bob/limits", Value::Null).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        user("PUT", "/users/alice/limits", json!({"models": ["*"]}))
            .await
            .0,
        StatusCode::FORBIDDEN,
        "a user does not set their own limits"
    );
    for wider in [
        json!(["*"]),
        json!(["gpt-4o*"]),
        json!(["gpt-4o-mini", "gpt-4o"]),
    ] {
        let (status, v) = user("POST", "/keys", json!({"name": "wide", "models": wider})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{wider}: {v}");
        assert_eq!(v["error"]["code"], "forbidden", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("gpt-4o-mini"), "{message}");
    }
    let (status, narrow) = user("POST", "/keys", json!({"name": "alice-default"})).await;
    assert_eq!(status, StatusCode::CREATED, "{narrow}");
    assert_eq!(
        narrow["models"],
        json!(["gpt-4o-mini"]),
        "the user's scope by default"
    );
    let (status, exact) = user(
        "POST",
        "/keys",
        json!({"name": "alice-exact", "models": ["gpt-4o-mini"], "rpm": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{exact}");
    let star = c
        .admin(
            "POST",
            "/keys",
            json!({"name": "alice-star", "user": "alice"}),
        )
        .await;
    assert_eq!(star["models"], json!(["*"]));

    let served = |state: &crate::snapshot::GatewayState| -> Vec<(String, Vec<String>, bool)> {
        let mut keys: Vec<(String, Vec<String>, bool)> = state
            .filter
            .keys
            .iter()
            .filter(|k| k.user == "alice")
            .map(|k| (k.id.clone(), k.models.clone(), k.limited))
            .collect();
        keys.sort();
        keys
    };
    let state = app.reconciler.compute().await.unwrap();
    let keys = served(&state);
    assert_eq!(keys.len(), 3);
    for (id, models, limited) in &keys {
        assert_eq!(models, &vec!["gpt-4o-mini".to_string()], "{id}");
        assert!(
            limited,
            "{id}: the owner's spend cap makes its key spend from leases"
        );
    }
    // Narrowing the user takes every key's access away at the next snapshot.
    c.admin(
        "PUT",
        "/users/alice/limits",
        json!({"models": ["claude-*"]}),
    )
    .await;
    let state = app.reconciler.compute().await.unwrap();
    let star_id = star["id"].as_str().unwrap();
    for (id, models, limited) in served(&state) {
        if id == star_id {
            assert_eq!(models, vec!["claude-*".to_string()]);
        } else {
            assert!(models.is_empty(), "{id}: {models:?}");
        }
        assert_eq!(limited, id == exact["id"], "{id}: only the key with an rpm");
    }
    c.admin("PUT", "/users/alice/limits", json!({})).await;
    let state = app.reconciler.compute().await.unwrap();
    let (_, models, _) = served(&state)
        .into_iter()
        .find(|(id, ..)| id == star_id)
        .unwrap();
    assert_eq!(
        models,
        vec!["*".to_string()],
        "no limits: every model again"
    );
    for bad in [
        json!({"models": ["bad model"]}),
        json!({"daily_budget_micros": 0}),
        json!({"monthly_budget_micros": -5}),
        json!({"models": "gpt-4o-mini"}),
    ] {
        let (status, v) = c
            .call(
                "PUT",
                "/admin/v1/users/alice/limits",
                bad.clone(),
                Some(TOKEN),
                "t",
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (status, _) = c
        .call(
            "PUT",
            "/admin/v1/users/nobody/limits",
            json!({}),
            Some(TOKEN),
            "t",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_scopes_and_caps_on_sqlite() {
    let store = Store::connect(&crate::test_support::sqlite_url())
        .await
        .unwrap();
    users_scopes_and_caps_bound_their_keys(app_on(store, Sessions::memory(3600)).await).await;
}

#[tokio::test]
async fn users_scopes_and_caps_on_postgres() {
    let Some(url) = crate::test_support::pg_url_for_schema().await else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    users_scopes_and_caps_bound_their_keys(app_on(store, Sessions::memory(3600)).await).await;
}
