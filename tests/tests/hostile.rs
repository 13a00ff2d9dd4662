//! The gateway's public listener against a hostile client: raw HTTP/1.1 and HTTP/2 framing,
//! spoofed internal headers, request trailers, huge, deep, duplicate-keyed and invalid bodies,
//! slow and abandoned connections, clients that leave mid-stream, and providers that answer
//! more (or otherwise) than they should. Every loop is bounded; everything runs on loopback.

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_tests::config::{Model, Provider, Target};
use switchyard_tests::raw::{exchange, h2_exchange, RawResponse};
use switchyard_tests::{mock, Stack, GATEWAY_KEY, LIMITED_KEY, PROVIDER_KEY};

const CHAT: &str = "/v1/chat/completions";

fn chat_body(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]})
        .to_string()
        .into_bytes()
}

/// An error the gateway made: JSON in OpenAI's shape, with a code.
fn assert_openai_error(r: &RawResponse, status: u16, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: JSON expected: {r:?}"
    );
    let v = r.json();
    assert!(
        v["error"]["message"].is_string(),
        "{what}: an OpenAI error body: {}",
        String::from_utf8_lossy(&r.body)
    );
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Requests the mock saw carrying the gateway key a client sent (it must never see one).
fn leaked_gateway_keys(stack: &Stack) -> usize {
    stack
        .mock
        .requests()
        .iter()
        .filter(|r| {
            r.headers
                .iter()
                .any(|(_, v)| v.contains(GATEWAY_KEY) || v.contains(LIMITED_KEY))
        })
        .count()
}

/// Issue 16, point 1: a request ending in a trailers frame never reached the filter's body
/// decisions, so the client's `x-switchyard-cluster` chose the upstream: a provider (which got
/// the client's gateway key), or the control plane's own port through the public listener.
#[tokio::test]
async fn request_trailers_never_route_around_the_filter() {
    let stack = Stack::start().await;
    let addr = stack.envoy.addr();
    let body = chat_body("gpt-4o-mini");
    let before = stack.mock.requests().len();
    for cluster in [
        "provider-mock",
        "provider-claude",
        "switchyard_xds",
        "failover-2-0-resilient",
        "no-such-cluster",
    ] {
        for key in [LIMITED_KEY, GATEWAY_KEY, "sk-not-a-key"] {
            let auth = format!("Bearer {key}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("x-switchyard-cluster", cluster),
                ("x-switchyard-limited", "key_x openai"),
            ];
            let r = h2_exchange(
                addr,
                "POST",
                CHAT,
                &headers,
                &body,
                Some(&[("x-checksum", "abc")]),
            )
            .await;
            assert!(
                (400..500).contains(&r.status),
                "{cluster} with {key}: the gateway refuses: {r:?}"
            );
            assert!(
                r.json()["error"]["message"].is_string(),
                "{cluster}: a gateway error, not the upstream's: {r:?}"
            );
        }
    }
    // Trailers with nothing else: no body at all.
    let auth = format!("Bearer {GATEWAY_KEY}");
    let r = h2_exchange(
        addr,
        "POST",
        CHAT,
        &[
            ("authorization", &auth),
            ("x-switchyard-cluster", "provider-mock"),
        ],
        b"",
        Some(&[("x-checksum", "abc")]),
    )
    .await;
    assert!((400..500).contains(&r.status), "{r:?}");
    assert_eq!(
        stack.mock.requests().len(),
        before,
        "no request with trailers reached a provider"
    );
    assert_eq!(leaked_gateway_keys(&stack), 0);
    // The same request without trailers is served, over HTTP/2 too.
    let r = h2_exchange(
        addr,
        "POST",
        CHAT,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-switchyard-cluster", "switchyard_xds"),
        ],
        &body,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(leaked_gateway_keys(&stack), 0);
}

/// Envoy's own steering headers (`x-envoy-*`) are a client's to send but not to obey: with them
/// a client set the upstream timeout, retries and their conditions.
#[tokio::test]
async fn envoy_and_switchyard_headers_from_clients_steer_nothing() {
    let stack = Stack::start().await;
    let body = json!({"model": "mock-slow", "messages": [{"role": "user", "content": "Hi"}]});
    let resp = stack
        .client()
        .post(stack.envoy.url(CHAT))
        .bearer_auth(GATEWAY_KEY)
        .header("x-envoy-upstream-rq-timeout-ms", "1")
        .header("x-envoy-upstream-rq-per-try-timeout-ms", "1")
        .header("x-envoy-max-retries", "25")
        .header("x-envoy-retry-on", "5xx,retriable-4xx")
        .header("x-switchyard-stream", "1")
        .header("x-switchyard-cluster", "switchyard_xds")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "the client's timeout is not obeyed");
    let slow = stack
        .mock
        .requests()
        .iter()
        .filter(|r| r.json()["model"] == "mock-slow")
        .count();
    assert_eq!(slow, 1, "one attempt, no client-chosen retries");
    for r in stack.mock.requests() {
        assert!(
            r.headers
                .iter()
                .all(|(k, _)| !k.starts_with("x-switchyard") && !k.starts_with("x-envoy")),
            "internal headers reach the provider: {:?}",
            r.headers
        );
    }
}

/// Issue 16, point 2: the duplicate-key check compared every top-level key with every earlier
/// one, so one request of 120,000 keys held a worker for seconds.
#[tokio::test]
async fn huge_key_sets_are_refused_at_once() {
    let stack = big_body_stack().await;
    let mut body = String::from("{\"model\":\"gpt-4o-mini\",\"messages\":[]");
    for i in 0..120_000 {
        body.push_str(&format!(",\"k{i}\":0"));
    }
    body.push('}');
    assert!(body.len() > 1_200_000);
    let started = Instant::now();
    let r = post_raw(&stack, CHAT, GATEWAY_KEY, body.as_bytes()).await;
    let took = started.elapsed();
    let code = assert_openai_error(&r, 400, "120,000 top-level keys");
    assert_eq!(code, "too_many_fields");
    assert!(
        took < Duration::from_secs(2),
        "refused without walking every pair ({took:?})"
    );
    // Duplicates are refused too, however many.
    let mut dup = String::from("{\"model\":\"gpt-4o-mini\"");
    for i in 0..200 {
        dup.push_str(&format!(",\"k{i}\":0"));
    }
    dup.push_str(",\"k7\":1}");
    let r = post_raw(&stack, CHAT, GATEWAY_KEY, dup.as_bytes()).await;
    assert_openai_error(&r, 400, "a duplicate key");
}

/// Nesting, encodings and types a client chooses get a 400 in the client's shape, never a 5xx
/// (a trap in the filter would answer 500/503 and rebuild the worker's VM).
#[tokio::test]
async fn malformed_bodies_get_400_never_5xx() {
    let stack = big_body_stack().await;
    let deep = |n: usize| {
        format!(
            "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":{}1{}}}]}}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("deep arrays", deep(200_000).into_bytes()),
        ("deep objects", {
            let mut s = String::from("{\"model\":\"gpt-4o-mini\",\"x\":");
            s.push_str(&"{\"a\":".repeat(100_000));
            s.push('1');
            s.push_str(&"}".repeat(100_000));
            s.push('}');
            s.into_bytes()
        }),
        ("invalid UTF-8", {
            let mut b = b"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"".to_vec();
            b.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
            b.extend_from_slice(b"\"}]}");
            b
        }),
        ("a lone surrogate", br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\ud800"}]}"#.to_vec()),
        ("NUL in the model", b"{\"model\":\"gpt\\u0000-4o\",\"messages\":[]}".to_vec()),
        ("model as number", br#"{"model":4,"messages":[]}"#.to_vec()),
        ("top level array", b"[1,2,3]".to_vec()),
        ("truncated", b"{\"model\":\"gpt-4o-mini\",\"messages\":[".to_vec()),
        ("stream as string", br#"{"model":"gpt-4o-mini","stream":"yes","messages":[]}"#.to_vec()),
        ("huge number", format!("{{\"model\":\"gpt-4o-mini\",\"max_tokens\":1{},\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}]}}", "0".repeat(5000)).into_bytes()),
    ];
    // Translated providers parse the whole body: the same hostile bodies through them.
    for model in ["claude-sonnet-4-5", "gemini-2.5-flash"] {
        cases.push((
            "deep arrays to a translator",
            deep(200_000).replace("gpt-4o-mini", model).into_bytes(),
        ));
    }
    for (what, body) in &cases {
        let r = post_raw(&stack, CHAT, GATEWAY_KEY, body).await;
        assert!(
            (400..500).contains(&r.status),
            "{what}: a client error expected: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
        );
        assert!(r.json()["error"]["message"].is_string(), "{what}: {r:?}");
        let r = post_raw(&stack, "/v1/messages", GATEWAY_KEY, body).await;
        assert!((400..500).contains(&r.status), "{what} (messages): {r:?}");
        assert_eq!(r.json()["type"], "error", "{what}: Anthropic-shaped: {r:?}");
    }
    // The worker is still serving.
    let r = post_raw(&stack, CHAT, GATEWAY_KEY, &chat_body("gpt-4o-mini")).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Issue 16, points 3 and 13: what reaches a provider is the gateway's request, not the
/// client's cookies, addresses, organisation or accepted encodings; what reaches the client is
/// the answer, not the provider's cookies and account headers.
#[tokio::test]
async fn headers_are_cleaned_both_ways() {
    let stack = Stack::start().await;
    let resp = stack
        .client()
        .post(stack.envoy.url(CHAT))
        .bearer_auth(GATEWAY_KEY)
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .header("cookie", "session=client-secret")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-real-ip", "203.0.113.9")
        .header("forwarded", "for=203.0.113.9")
        .header("openai-organization", "org-client")
        .header("openai-project", "proj-client")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("via", "1.1 client-proxy")
        .header("x-forwarded-host", "client.example")
        .header("x-forwarded-port", "8443")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    for name in [
        "set-cookie",
        "openai-organization",
        "x-ratelimit-remaining-requests",
        "server-timing",
    ] {
        assert!(
            resp.headers().get(name).is_none(),
            "{name} reached the client: {:?}",
            resp.headers()
        );
    }
    assert!(resp.headers().get("x-request-id").is_some());
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap_or_default(),
        "application/json"
    );
    let seen = stack.mock.requests();
    let last = seen.last().expect("the provider was asked");
    for name in [
        "accept-encoding",
        "cookie",
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "openai-organization",
        "openai-project",
        "proxy-authorization",
        "via",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-envoy-internal",
        "x-envoy-external-address",
    ] {
        assert!(
            last.header(name).is_none(),
            "{name} reached the provider: {:?}",
            last.headers
        );
    }
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    // Streams too.
    let resp = stack
        .post(
            CHAT,
            &json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("set-cookie").is_none());
    let _ = resp.bytes().await;
    // A provider that compresses anyway would hide its usage: a clear 502, not an unmetered answer.
    let r = post_raw(&stack, CHAT, GATEWAY_KEY, &chat_body("mock-gzip")).await;
    assert_eq!(
        assert_openai_error(&r, 502, "gzip answer"),
        "provider_encoding"
    );
    assert!(r.header("content-encoding").is_none(), "{r:?}");
    assert!(mock::PROVIDER_COOKIE.contains("mock-provider-session"));
}

/// Issue 16, point 13: Envoy's `config_dump` showed each gateway key's plain SHA-256, which
/// anyone who saw it could test guesses of a weak key against (`sk-demo-change-me`).
#[tokio::test]
async fn config_dump_gives_nothing_to_test_key_guesses_against() {
    use sha2::Digest as _;
    let stack = Stack::start().await;
    let dump = stack.envoy.config_dump("").await;
    assert!(
        dump.contains("key_digest_key"),
        "the filter's configuration is there"
    );
    for key in [GATEWAY_KEY, LIMITED_KEY] {
        let plain = hex::encode(sha2::Sha256::digest(key.as_bytes()));
        assert!(!dump.contains(&plain), "a plain digest of {key}");
        assert!(!dump.contains(key));
    }
    assert!(!dump.contains(PROVIDER_KEY));
    // The keys still work, and neither the keys nor the provider's appear in any log or answer.
    let r = post_raw(&stack, CHAT, GATEWAY_KEY, &chat_body("gpt-4o-mini")).await;
    assert_eq!(r.status, 200);
    let wrong = post_raw(&stack, CHAT, "sk-wrong-key-0123", &chat_body("gpt-4o-mini")).await;
    assert_eq!(wrong.status, 401);
    let _ = post_raw(&stack, CHAT, LIMITED_KEY, &chat_body("claude-sonnet-4-5")).await;
    for answer in [&r, &wrong] {
        let text = String::from_utf8_lossy(&answer.body);
        assert!(!text.contains(PROVIDER_KEY) && !text.contains(GATEWAY_KEY));
    }
    for (name, log) in [
        ("envoy", stack.envoy.proc.log_text()),
        ("control plane", stack.cp.proc.log_text()),
    ] {
        for secret in [PROVIDER_KEY, GATEWAY_KEY, LIMITED_KEY, "sk-wrong-key-0123"] {
            assert!(!log.contains(secret), "{secret} in the {name} log");
        }
    }
}

/// Issue 16, point 13: a key scoped to some models could tell the models it may not use (403)
/// from those that do not exist (404).
#[tokio::test]
async fn scoped_keys_cannot_enumerate_models() {
    let stack = Stack::start().await;
    let unknown = post_raw(&stack, CHAT, LIMITED_KEY, &chat_body("no-such-model")).await;
    let forbidden = post_raw(&stack, CHAT, LIMITED_KEY, &chat_body("claude-sonnet-4-5")).await;
    let code = assert_openai_error(&unknown, 404, "unknown model");
    assert_eq!(
        assert_openai_error(&forbidden, 404, "forbidden model"),
        code
    );
    let text = |r: &RawResponse| {
        r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .replace("no-such-model", "M")
            .replace("claude-sonnet-4-5", "M")
    };
    assert_eq!(text(&unknown), text(&forbidden), "the same words");
    let allowed = post_raw(&stack, CHAT, LIMITED_KEY, &chat_body("gpt-4o-mini")).await;
    assert_eq!(allowed.status, 200);
}

/// HTTP/1.1 framing a client controls: pipelined requests, conflicting lengths, junk lines.
/// Envoy's own refusals are JSON too.
#[tokio::test]
async fn framing_tricks_get_json_answers() {
    let stack = Stack::start().await;
    let addr = stack.envoy.addr();
    let body = chat_body("gpt-4o-mini");
    let one = |extra: &str, close: bool| {
        format!(
            "POST {CHAT} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {GATEWAY_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}{}\r\n{}",
            body.len(),
            if close { "connection: close\r\n" } else { "" },
            String::from_utf8_lossy(&body)
        )
    };
    // Two pipelined requests, the second spoofing the route: both answered by the gateway.
    let pipelined = format!(
        "{}{}",
        one("", false),
        one("x-switchyard-cluster: switchyard_xds\r\n", true)
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, pipelined.as_bytes())
        .await
        .expect("write");
    let mut data = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut data),
    )
    .await;
    let text = String::from_utf8_lossy(&data);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");

    let cases = [
        (
            "content-length and chunked",
            format!("POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n"),
        ),
        (
            "two content-lengths",
            format!("POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhello"),
        ),
        (
            "a space before the colon",
            format!("POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-length : 5\r\nconnection: close\r\n\r\nhello"),
        ),
        (
            "a bad chunk size",
            format!("POST {CHAT} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "too many headers",
            format!(
                "GET /v1/models HTTP/1.1\r\nhost: x\r\n{}connection: close\r\n\r\n",
                (0..200).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
            ),
        ),
        (
            "a header over the size limit",
            format!(
                "GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
                "a".repeat(100 * 1024)
            ),
        ),
    ];
    for (what, request) in cases {
        let r = exchange(addr, request.as_bytes()).await;
        assert!(
            (400..500).contains(&r.status),
            "{what}: a client error: {r:?}"
        );
        assert!(
            r.json()["error"]["message"].is_string(),
            "{what}: JSON: {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    // A chunked upload that outgrows the limit, as fast as the client can send it: the JSON 413.
    let mut request = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {GATEWAY_KEY}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b'a'; 256 * 1024];
    for _ in 0..4 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(addr, &request).await;
    assert_eq!(
        assert_openai_error(&r, 413, "a fast chunked upload"),
        "request_too_large"
    );
}

/// Issue 16, point 4: a client that leaves a stream before its final usage event paid nothing
/// and counted no tokens, while the provider billed for what it had generated.
#[tokio::test]
async fn a_client_leaving_mid_stream_is_charged_for_what_it_got() {
    let stack = Stack::start().await;
    // A key with a token limit: what it is charged also counts in its token window.
    let (status, created) = stack
        .admin(
            reqwest::Method::POST,
            "/keys",
            Some(json!({"name": "leaver", "models": ["*"], "tpm": 1_000_000})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().expect("secret").to_owned();
    let chat = |stream: bool| {
        stack
            .client()
            .post(stack.envoy.url(CHAT))
            .bearer_auth(&secret)
            .json(&json!({"model": "mock-held", "stream": stream, "messages": [{"role": "user", "content": "Say hello, then wait"}]}))
    };
    // Tokens of the whole answers so far, and how many there were.
    let whole = std::sync::Mutex::new((0u64, 0u64));
    let answer = || async {
        let Ok(r) = chat(false).send().await else {
            return None;
        };
        if r.status() != 200 {
            return None;
        }
        let remaining = r
            .headers()
            .get("x-ratelimit-remaining-tokens")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let body: serde_json::Value = r.json().await.ok()?;
        let mut w = whole.lock().unwrap();
        w.0 += body["usage"]["total_tokens"].as_u64().unwrap_or(0);
        w.1 += 1;
        Some(remaining)
    };
    // The key reaches Envoy within a second.
    switchyard_tests::wait_until("the new key", Duration::from_secs(5), || async {
        answer().await.is_some()
    })
    .await;
    let resp = chat(true).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\"!\"") {
        let chunk =
            tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut body))
                .await
                .expect("text within 10 s")
                .expect("more")
                .expect("chunk");
        got.extend_from_slice(&chunk);
    }
    drop(body);
    let streamed = || {
        switchyard_tests::usage_records(&stack.envoy.proc.log_text())
            .into_iter()
            .find(|r| r["model"] == "mock-held" && r["stream"] == true)
    };
    switchyard_tests::wait_until("the stream's record", Duration::from_secs(10), || async {
        streamed().is_some()
    })
    .await;
    let record = streamed().unwrap_or_default();
    assert_eq!(record["complete"], false, "{record}");
    assert_eq!(record["estimated"], true, "{record}");
    assert!(
        record["completion_tokens"].as_u64().unwrap_or(0) >= 2,
        "the text it received counts: {record}"
    );
    assert!(
        record["prompt_tokens"].as_u64().unwrap_or(0) >= 1,
        "and the prompt: {record}"
    );
    stack.mock.open_gate();
    // Its end is charged to the key's lease too: the key's token window holds the whole
    // answers' tokens and the stream's (the lease counts them as requests end; the control
    // plane hears them with the lease's next ask).
    let charged = record["total_tokens"].as_u64().unwrap_or(0);
    let last = std::sync::Mutex::new((0u64, None));
    let counted = || async {
        let tokens = whole.lock().unwrap().0;
        let remaining = answer().await.flatten();
        *last.lock().unwrap() = (tokens, remaining);
        remaining == Some(1_000_000 - tokens - charged)
    };
    switchyard_tests::wait_until(
        "the stream's tokens counted",
        Duration::from_secs(5),
        counted,
    )
    .await;
    let (tokens, remaining) = *last.lock().unwrap();
    assert_eq!(remaining, Some(1_000_000 - tokens - charged));
}

/// Timeouts a client cannot stretch (slow headers, idle connections) and answers a provider
/// cannot inflate (a translated answer over the limit): each ends with a clear answer.
#[tokio::test]
async fn slow_clients_and_huge_answers_are_bounded() {
    let stack = Stack::start_edited(
        1,
        |_| {},
        |c| {
            c.gateway.request_headers_timeout_secs = Some(1);
            c.gateway.idle_timeout_secs = Some(2);
            c.gateway.max_response_bytes = Some(1_048_576);
        },
    )
    .await;
    let addr = stack.envoy.addr();
    // Headers that never end: closed (with a JSON 408) within a few seconds.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut slow,
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n",
    )
    .await
    .expect("write");
    let mut data = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(8),
        tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut data),
    )
    .await;
    assert!(read.is_ok(), "slow headers are cut off");
    let text = String::from_utf8_lossy(&data);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    // A connection that asks nothing is closed.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(
        Duration::from_secs(8),
        tokio::io::AsyncReadExt::read(&mut idle, &mut buf),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle connections close"
    );
    // An answer bigger than the gateway will hold to translate: 502 in the client's shape.
    let r = post_raw(&stack, CHAT, GATEWAY_KEY, &chat_body("claude-huge")).await;
    assert_eq!(
        assert_openai_error(&r, 502, "2 MiB to translate"),
        "provider_response_too_large"
    );
    let body = json!({"model": "claude-huge", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]});
    let r = post_raw(
        &stack,
        "/v1/messages",
        GATEWAY_KEY,
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "passed through untranslated, not held: {}",
        r.status
    );
    assert!(r.body.len() > 2 << 20);
    let r = post_raw(&stack, CHAT, GATEWAY_KEY, &chat_body("gpt-4o-mini")).await;
    assert_eq!(r.status, 200);
}

/// Malformed input of every kind, a bounded number of times: no 5xx, ever.
#[tokio::test]
async fn no_malformed_request_gets_a_5xx() {
    let stack = Stack::start().await;
    let addr = stack.envoy.addr();
    let mut seed: u64 = 0x5eed_1234_abcd_ef01;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let fragments: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"model\"",
        b":",
        b",",
        b"\"gpt-4o-mini\"",
        b"\"messages\"",
        b"\\u0000",
        b"\xff",
        b"null",
    ];
    let paths = [
        CHAT,
        "/v1/messages",
        "/v1/embeddings",
        "/v1/images/generations",
    ];
    for round in 0..120 {
        let mut body = Vec::new();
        for _ in 0..(next() % 24) {
            body.extend_from_slice(fragments[(next() % 12) as usize]);
        }
        let path = paths[round % paths.len()];
        let h2 = round % 2 == 0;
        let r = if h2 {
            let auth = format!("Bearer {GATEWAY_KEY}");
            h2_exchange(addr, "POST", path, &[("authorization", &auth)], &body, None).await
        } else {
            post_raw(&stack, path, GATEWAY_KEY, &body).await
        };
        assert!(
            r.status < 500 && r.status >= 400,
            "round {round} {path} {:?}: {} {}",
            String::from_utf8_lossy(&body),
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// A stack whose bodies may be as large as the gateway's default (4 MiB).
async fn big_body_stack() -> Stack {
    Stack::start_edited(1, |_| {}, |c| c.gateway.max_body_bytes = Some(4_194_304)).await
}

/// `POST path` over a fresh HTTP/1.1 connection with `key` and `body` as given.
async fn post_raw(stack: &Stack, path: &str, key: &str, body: &[u8]) -> RawResponse {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {key}\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !path.starts_with("/v1/messages") {
        // Anthropic's version header only where an Anthropic client would send it.
        let text =
            String::from_utf8_lossy(&request).replace("anthropic-version: 2023-06-01\r\n", "");
        request = text.into_bytes();
    }
    request.extend_from_slice(body);
    exchange(stack.envoy.addr(), &request).await
}

/// Methods and upgrades a client may try on the gateway's paths: each a client error in JSON.
#[tokio::test]
async fn odd_methods_and_upgrades_get_json_client_errors() {
    let stack = Stack::start().await;
    let addr = stack.envoy.addr();
    let auth = format!("authorization: Bearer {GATEWAY_KEY}\r\n");
    let cases = [
        ("TRACE", format!("TRACE {CHAT} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n")),
        ("HEAD", format!("HEAD /v1/models HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n")),
        ("CONNECT", "CONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: 127.0.0.1:22\r\nconnection: close\r\n\r\n".to_owned()),
        ("websocket upgrade", format!("GET /v1/models HTTP/1.1\r\nhost: x\r\n{auth}connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")),
        ("h2c upgrade", format!("GET /v1/models HTTP/1.1\r\nhost: x\r\n{auth}connection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")),
        ("absolute URI to another host", format!("POST http://169.254.169.254{CHAT} HTTP/1.1\r\nhost: 169.254.169.254\r\n{auth}content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}")),
        ("path traversal", format!("GET /v1/models/../../admin/v1/users HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n")),
        ("encoded slash", format!("GET /v1%2Fmodels HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n")),
        ("NUL in a header", format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nx-a: a\0b\r\n{auth}connection: close\r\n\r\n")),
        ("bare LF", format!("GET /v1/models HTTP/1.1\nhost: x\n{auth}connection: close\n\n")),
        ("HTTP/1.0", format!("POST {CHAT} HTTP/1.0\r\nhost: x\r\n{auth}content-length: 2\r\n\r\n{{}}")),
        ("HTTP/0.9", "GET /v1/models\r\n\r\n".to_owned()),
    ];
    for (what, request) in cases {
        let started = Instant::now();
        let r = exchange(addr, request.as_bytes()).await;
        assert!(
            r.status == 0
                || (r.status >= 400 && r.status < 500)
                // Envoy does not upgrade to h2c (the request is served as HTTP/1.1), and reads
                // bare LF line ends as a lenient parser does: both are the key's own request.
                || (matches!(what, "HEAD" | "h2c upgrade" | "bare LF") && r.status < 500),
            "{what}: {} {:?} {}",
            r.status,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
        if r.status >= 400 && what != "HEAD" {
            assert!(
                r.json()["error"]["message"].is_string(),
                "{what}: JSON: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: answered in time"
        );
    }
    assert_eq!(leaked_gateway_keys(&stack), 0);
}

/// The work one request can make a worker do is bounded: a body of `max_body_bytes` shaped to
/// be as costly as possible to parse and translate (as many objects as a request may hold) is
/// answered, and one with more objects is refused before any of that work.
#[tokio::test]
async fn the_costliest_bodies_are_bounded() {
    let stack = big_body_stack().await;
    let body = |parts: usize| {
        // Each part: a message, its content array, the part, its image: four objects.
        let part = r#"{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}"#;
        format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{}]}}"#,
            vec![part; parts].join(",")
        )
    };
    let over = post_raw(&stack, CHAT, GATEWAY_KEY, body(20_000).as_bytes()).await;
    assert_eq!(
        assert_openai_error(&over, 400, "80,000 objects"),
        "too_complex"
    );
    let started = Instant::now();
    let at_limit = post_raw(&stack, CHAT, GATEWAY_KEY, body(16_000).as_bytes()).await;
    assert!(at_limit.status < 500, "{at_limit:?}");
    eprintln!(
        "64,000 objects translated: {} in {:?}",
        at_limit.status,
        started.elapsed()
    );
}

/// Envoy's own error replies keep the client's API shape when a failover attempt has taken an
/// OpenAI client's request to an Anthropic provider (whose `anthropic-version` header the
/// request then carries, as Anthropic clients' requests do).
#[tokio::test]
async fn envoy_errors_keep_the_clients_shape_across_provider_families() {
    let dead = switchyard_tests::free_port();
    let stack = Stack::start_edited(
        1,
        |_| {},
        |c| {
            let base_url = format!("http://127.0.0.1:{dead}");
            c.providers.insert(
                0,
                Provider::new("dead-claude", "anthropic", &base_url, "sk-ant-dead")
                    .models(&["claude-gone"]),
            );
            c.models.insert(
                0,
                Model::new(
                    "doomed",
                    vec![
                        Target::new("dead", "dead-model"),
                        Target::new("dead-claude", "claude-gone").priority(1),
                    ],
                ),
            );
        },
    )
    .await;
    let r = post_raw(&stack, CHAT, GATEWAY_KEY, &chat_body("doomed")).await;
    assert!(r.status >= 500, "{r:?}");
    assert_eq!(
        assert_openai_error(&r, r.status, "both targets unreachable"),
        "provider_unreachable"
    );
    // An Anthropic client gets Anthropic's shape.
    let body = json!({"model": "doomed", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]});
    let r = post_raw(
        &stack,
        "/v1/messages",
        GATEWAY_KEY,
        body.to_string().as_bytes(),
    )
    .await;
    assert!(r.status >= 500, "{r:?}");
    assert_eq!(r.json()["type"], "error", "{r:?}");
}
