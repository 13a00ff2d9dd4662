//! Every gateway-made error through the real Envoy: status, OpenAI-style JSON body, and nothing
//! reaching the provider. Hostile input goes over raw TCP where a client library would refuse it.

use serde_json::{json, Value};
use switchyard_tests::raw::{exchange, RawResponse};
use switchyard_tests::{Stack, GATEWAY_KEY, LIMITED_KEY};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], want_code, "{body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].as_str().is_some(), "{body}");
}

async fn post_raw_body(stack: &Stack, key: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut req = stack
        .client()
        .post(stack.envoy.url("/v1/chat/completions"))
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.body(body.to_vec()).send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("application/json")
    );
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn raw_post(path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut req =
        format!("POST {path} HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    req
}

fn check_raw(resp: &RawResponse, status: u16, code: &str) {
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{resp:?}"
    );
    assert_error(resp.status, &resp.json(), status, code);
}

const CHAT: &str = r#"{"model":"smart","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_json_and_never_reach_the_provider() {
    let stack = Stack::start().await;

    let (s, b) = post_raw_body(&stack, Some(GATEWAY_KEY), b"{\"model\": \"smart\", ").await;
    assert_error(s, &b, 400, "invalid_json");
    let (s, b) = post_raw_body(&stack, Some(GATEWAY_KEY), b"").await;
    assert_error(s, &b, 400, "invalid_json");
    let (s, b) = post_raw_body(&stack, Some(GATEWAY_KEY), b"[1,2]").await;
    assert_error(s, &b, 400, "invalid_json");
    let (s, b) = post_raw_body(&stack, None, CHAT.as_bytes()).await;
    assert_error(s, &b, 401, "missing_api_key");
    let (s, b) = post_raw_body(&stack, Some("sk-not-a-real-key-000"), CHAT.as_bytes()).await;
    assert_error(s, &b, 401, "invalid_api_key");
    let (s, b) = post_raw_body(&stack, Some(LIMITED_KEY), CHAT.as_bytes()).await;
    // Outside the key's scope: the same answer as a model that does not exist.
    assert_error(s, &b, 404, "model_not_found");
    let (s, b) = post_raw_body(
        &stack,
        Some(GATEWAY_KEY),
        br#"{"model":"no-such-model","messages":[]}"#,
    )
    .await;
    assert_error(s, &b, 404, "model_not_found");
    let (s, b) = post_raw_body(&stack, Some(GATEWAY_KEY), br#"{"messages":[]}"#).await;
    assert_error(s, &b, 400, "missing_model");

    // Hostile model values: CR/LF, control characters, overlong, wrong type, duplicated.
    for body in [
        r#"{"model":"smart\r\nx-evil: 1","messages":[]}"#,
        r#"{"model":"sm\u0001art","messages":[]}"#,
        r#"{"model":5,"messages":[]}"#,
    ] {
        let (s, b) = post_raw_body(&stack, Some(GATEWAY_KEY), body.as_bytes()).await;
        assert_error(s, &b, 400, "invalid_model");
    }
    let long = format!(r#"{{"model":"{}","messages":[]}}"#, "m".repeat(300));
    let (s, b) = post_raw_body(&stack, Some(GATEWAY_KEY), long.as_bytes()).await;
    assert_error(s, &b, 400, "invalid_model");
    let (s, b) = post_raw_body(
        &stack,
        Some(GATEWAY_KEY),
        br#"{"model":"smart","model":"dead-model"}"#,
    )
    .await;
    assert_error(s, &b, 400, "invalid_json");
    let (s, b) = post_raw_body(&stack, Some(GATEWAY_KEY), b"{\"model\":\"sm\xffart\"}").await;
    assert_error(s, &b, 400, "invalid_json");
    let (s, b) = post_raw_body(
        &stack,
        Some(GATEWAY_KEY),
        br#"{"model":"smart","stream":"yes","messages":[]}"#,
    )
    .await;
    assert_error(s, &b, 400, "invalid_field");

    // Paths and methods.
    let resp = stack
        .client()
        .get(stack.envoy.url("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = stack
        .client()
        .post(stack.envoy.url("/v2/whatever"))
        .bearer_auth(GATEWAY_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_path"
    );

    assert!(
        stack.mock.requests().is_empty(),
        "nothing may reach the provider"
    );

    // A refused request still leaves a record naming the key and the model it asked for.
    let record = stack.usage_record("no-such-model").await;
    assert_eq!(record["status"], 404);
    assert_eq!(record["user"], "test");
    assert_eq!(record["provider"], "");

    // 17 refused requests above, plus the harness's readiness probe (401).
    assert_eq!(
        stack
            .envoy
            .wait_counter("switchyard_gateway_errors_total", 18)
            .await,
        18
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_with_and_without_content_length() {
    let stack = Stack::start().await;
    let big = format!(
        r#"{{"model":"smart","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(70_000)
    );
    let (s, b) = post_raw_body(&stack, Some(GATEWAY_KEY), big.as_bytes()).await;
    assert_error(s, &b, 413, "request_too_large");

    // Chunked, so the filter only learns the size as the body arrives.
    let mut chunked = Vec::new();
    for piece in big.as_bytes().chunks(8192) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let auth = format!("Bearer {GATEWAY_KEY}");
    let req = raw_post(
        "/v1/chat/completions",
        &[
            ("authorization", auth.as_bytes()),
            ("content-type", b"application/json"),
            ("transfer-encoding", b"chunked"),
        ],
        &chunked,
    );
    check_raw(
        &exchange(stack.envoy.addr(), &req).await,
        413,
        "request_too_large",
    );
    assert!(stack.mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_do_not_break_the_filter() {
    let stack = Stack::start().await;
    // Non-UTF-8 credentials in either header: refused as no key, and the worker's VM survives.
    let length = CHAT.len().to_string();
    for credential in [
        ("authorization", &b"Bearer sk-\xff\xfe-key"[..]),
        ("x-api-key", &b"\x80\x81"[..]),
    ] {
        let req = raw_post(
            "/v1/chat/completions",
            &[
                credential,
                ("content-type", b"application/json"),
                ("content-length", length.as_bytes()),
            ],
            CHAT.as_bytes(),
        );
        check_raw(
            &exchange(stack.envoy.addr(), &req).await,
            401,
            "missing_api_key",
        );
    }

    // A client cannot pick the cluster: its routing header is overwritten.
    let resp = stack
        .client()
        .post(stack.envoy.url("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .header("x-switchyard-cluster", "provider-dead")
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "routed by the filter, not by the client header"
    );
    assert_eq!(stack.mock.requests().len(), 1);

    // A trap in the filter would show as a Rust panic and an uncaught runtime error.
    let log = stack.envoy.proc.log_text();
    assert!(
        !log.contains("panicked at") && !log.contains("Uncaught RuntimeError"),
        "the filter trapped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_is_a_json_5xx() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "dead-model", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let status = resp.status().as_u16();
    assert!(status == 502 || status == 503, "{status}");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_error(status, &body, status, "provider_unreachable");
    assert_eq!(body["error"]["type"], "api_error");
    let record = stack.usage_record("dead-model").await;
    assert_eq!(record["provider"], "dead");
    assert_eq!(record["status"], status);

    // For an Anthropic client (its SDK sends `anthropic-version`) the same failure is
    // Anthropic-shaped.
    let resp = stack
        .client()
        .post(stack.envoy.url("/v1/messages"))
        .header("x-api-key", switchyard_tests::GATEWAY_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "dead-model", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(status == 502 || status == 503, "{status}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "api_error");
    assert_eq!(
        body["error"]["message"],
        "The provider could not be reached."
    );
}
