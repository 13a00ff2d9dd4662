//! Users through the real control plane and Envoy: sign-in over HTTP, self-service keys, a
//! private provider that serves its owner and the users it is shared with (and nobody else),
//! submission and approval into the public pool, a disabled user's keys stopping, remote logout;
//! provider secrets in no answer, audit entry or log.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use switchyard_tests::{wait_until, Stack, ADMIN_TOKEN, PROVIDER_KEY};

struct User {
    access: String,
    key: String,
}

async fn call(
    stack: &Stack,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = stack
        .client()
        .request(method, stack.cp.admin_url(path))
        .bearer_auth(token)
        .header("user-agent", "identity-test/1");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin API");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates the user, signs them in, and lets them make a key of their own.
async fn user(stack: &Stack, name: &str) -> User {
    let password = format!("{name}'s long password");
    let (status, v) = stack
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": name, "password": password})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let resp = stack
        .client()
        .post(stack.cp.admin_url("/auth/login"))
        .json(&json!({"login": name, "password": password, "device": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (status, key) = call(
        stack,
        Method::POST,
        "/keys",
        &access,
        Some(json!({"name": format!("{name}-key"), "models": ["*"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["user"], name);
    User {
        access,
        key: key["key"].as_str().unwrap().to_owned(),
    }
}

async fn chat(stack: &Stack, key: &str, model: &str) -> (u16, Value) {
    let resp = stack
        .client()
        .post(stack.envoy.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn models(stack: &Stack, key: &str) -> Vec<String> {
    let v: Value = stack
        .client()
        .get(stack.envoy.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn until_status(stack: &Stack, key: &str, model: &str, want: u16, what: &str) {
    wait_until(what, Duration::from_secs(2), || async {
        chat(stack, key, model).await.0 == want
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_providers_serve_their_owner_and_whom_they_share_with() {
    // The mock listens on loopback: the operator allows that network for users' providers.
    let stack = Stack::start_edited(
        1,
        |_| {},
        |c| {
            c.auth = Some(switchyard_tests::config::Auth {
                allowed_provider_networks: vec!["127.0.0.1/32".into()],
            })
        },
    )
    .await;
    let bob = user(&stack, "bob").await;
    let alice = user(&stack, "alice").await;
    let carol = user(&stack, "carol").await;
    let model = "bobs/mock-private";

    let (status, provider) = call(
        &stack,
        Method::POST,
        "/providers",
        &bob.access,
        Some(json!({
            "name": "bobs", "kind": "openai_compatible", "base_url": stack.mock.base_url(),
            "models": ["mock-private"], "keys": [{"secret": PROVIDER_KEY}],
        })),
    )
    .await;
    assert_eq!(status, 201, "{provider}");
    assert_eq!(provider["visibility"], "private");
    assert!(!provider.to_string().contains(PROVIDER_KEY));

    // The owner's key reaches it within a second; to others it does not exist.
    until_status(&stack, &bob.key, model, 200, "bob's provider to serve bob").await;
    let (status, v) = chat(&stack, &alice.key, model).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(models(&stack, &bob.key).await.contains(&model.to_owned()));
    assert!(!models(&stack, &alice.key).await.contains(&model.to_owned()));
    assert_eq!(
        chat(&stack, &alice.key, "mock-private").await.0,
        404,
        "a private provider's models take no plain name"
    );

    // Shared with alice: her key works; carol's still not; unshared: alice's stops.
    let (status, v) = call(
        &stack,
        Method::PUT,
        "/providers/bobs/shares/alice",
        &bob.access,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["shared_with"], json!(["alice"]));
    until_status(&stack, &alice.key, model, 200, "the share to reach Envoy").await;
    assert_eq!(chat(&stack, &carol.key, model).await.0, 404);
    let (status, v) = call(
        &stack,
        Method::PUT,
        "/providers/bobs/shares/carol",
        &alice.access,
        None,
    )
    .await;
    assert_eq!(status, 403, "alice uses it but does not own it: {v}");
    let (status, _) = call(
        &stack,
        Method::DELETE,
        "/providers/bobs/shares/alice",
        &bob.access,
        None,
    )
    .await;
    assert_eq!(status, 204);
    until_status(&stack, &alice.key, model, 404, "the unshare to reach Envoy").await;

    // Submitted to the public pool: a user cannot approve it, an admin can; then every key
    // may use it.
    let (status, v) = call(
        &stack,
        Method::POST,
        "/providers/bobs/submit",
        &bob.access,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["review"], "pending");
    let (_, pending) = stack
        .admin(Method::GET, "/providers?review=pending", None)
        .await;
    let names: Vec<&str> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bobs"], "the admin's review queue");
    let (status, _) = call(
        &stack,
        Method::POST,
        "/providers/bobs/review",
        &alice.access,
        Some(json!({"decision": "approve"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, v) = stack
        .admin(
            Method::POST,
            "/providers/bobs/review",
            Some(json!({"decision": "approve", "note": "looks fine"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["visibility"].as_str(), v["review"].as_str()),
        (Some("public"), Some("approved"))
    );
    until_status(
        &stack,
        &carol.key,
        model,
        200,
        "the approval to reach Envoy",
    )
    .await;
    // Changed by its owner, it goes back to review (and private).
    let (status, v) = call(
        &stack,
        Method::PUT,
        "/providers/bobs",
        &bob.access,
        Some(json!({"models": ["mock-private", "gpt-4o-mini"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["visibility"].as_str(), v["review"].as_str()),
        (Some("private"), Some("pending"))
    );
    until_status(
        &stack,
        &carol.key,
        model,
        404,
        "the change to take it private",
    )
    .await;

    // A disabled user's keys stop within a second, and their access token at once.
    let (status, _) = stack
        .admin(
            Method::PATCH,
            "/users/bob",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        call(&stack, Method::GET, "/me", &bob.access, None).await.0,
        401
    );
    until_status(&stack, &bob.key, "gpt-4o-mini", 401, "bob's key to stop").await;

    // The provider key appears in no answer and no audit entry, nor in the control plane's log.
    let (_, audit) = stack.admin(Method::GET, "/audit?limit=1000", None).await;
    assert!(audit["data"].as_array().unwrap().len() > 10, "{audit}");
    let (_, providers) = stack.admin(Method::GET, "/providers", None).await;
    for text in [
        audit.to_string(),
        providers.to_string(),
        stack.cp.proc.log_text(),
    ] {
        assert!(!text.contains(PROVIDER_KEY));
        assert!(!text.contains("long password"));
    }
    // Envoy holds the provider key sealed: its config_dump shows ciphertext only, and no
    // gateway key or admin token either.
    let dump = stack.envoy.config_dump("?include_eds").await;
    assert!(dump.contains("sealed:v1:"), "provider keys travel sealed");
    for secret in [
        PROVIDER_KEY,
        ADMIN_TOKEN,
        &bob.key,
        &alice.key,
        switchyard_tests::GATEWAY_KEY,
    ] {
        assert!(!dump.contains(secret), "a secret in Envoy's config_dump");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_over_http_sees_the_client_and_remote_logout_ends_the_other_device() {
    let stack = Stack::start().await;
    let (status, _) = stack
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "dana", "password": "dana's long password"})),
        )
        .await;
    assert_eq!(status, 201);
    let login = |device: &'static str| {
        let stack = &stack;
        async move {
            let v: Value = stack
                .client()
                .post(stack.cp.admin_url("/auth/login"))
                .header("user-agent", device)
                .json(
                    &json!({"login": "dana", "password": "dana's long password", "device": device}),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                v["access_token"].as_str().unwrap().to_owned(),
                v["session_id"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (phone, phone_session) = login("phone").await;
    let (laptop, _) = login("laptop").await;
    let (status, devices) = call(&stack, Method::GET, "/me/sessions", &laptop, None).await;
    assert_eq!(status, 200);
    let list = devices.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for d in list {
        assert_eq!(d["ip"], "127.0.0.1", "the peer's address: {d}");
    }
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/me/sessions/{phone_session}"),
        &laptop,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(call(&stack, Method::GET, "/me", &phone, None).await.0, 401);
    assert_eq!(call(&stack, Method::GET, "/me", &laptop, None).await.0, 200);
    let (_, audit) = stack.admin(Method::GET, "/audit?actor=dana", None).await;
    let entry = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "DELETE /admin/v1/me/sessions/{id}")
        .expect("the remote logout is audited");
    assert_eq!(entry["ip"], "127.0.0.1");
    assert_eq!(entry["user_agent"], "identity-test/1");
    assert_eq!(entry["status"], 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_while_requests_flow_and_survives_a_restart() {
    let mut stack = Stack::start().await;
    let key_file = stack.dir.0.join("master.key");
    let before = std::fs::read_to_string(&key_file).unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (client, url) = (stack.client(), stack.envoy.url("/v1/chat/completions"));
        let (served, failed, stop) = (served.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = client
                    .post(&url)
                    .bearer_auth(switchyard_tests::GATEWAY_KEY)
                    .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                let counter = if status == 200 { &served } else { &failed };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, v) = stack
        .admin(Method::POST, "/security/master-key/rotate", Some(json!({})))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"], "file");
    assert!(v["resealed"].as_u64().unwrap() >= 2, "{v}");
    let after = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(before.trim(), after.trim());
    assert_eq!(
        after.trim().lines().count(),
        1,
        "the old key is gone from the file"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A restart reads the new key and still opens every provider key.
    let (config, ports) = (stack.cp.config.clone(), stack.cp.ports);
    stack.cp.stop();
    stack.cp = switchyard_tests::ControlPlane::start_with(config, &stack.dir.0, ports).await;
    let (status, _) = stack
        .admin(
            Method::PUT,
            "/providers/mock",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "publishes again after the restart");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();
    let (ok, bad) = (
        served.load(std::sync::atomic::Ordering::Relaxed),
        failed.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(ok > 20, "{ok} served");
    assert_eq!(
        bad, 0,
        "no request failed during the rotation and the restart ({ok} served)"
    );
    assert!(!stack.cp.proc.log_text().contains("cannot be decrypted"));
    let (status, _) = chat(&stack, switchyard_tests::GATEWAY_KEY, "gpt-4o-mini").await;
    assert_eq!(status, 200);
}
