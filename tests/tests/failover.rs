//! Failover through the real Envoy: model `fickle` tries provider `flaky` (a fault-injecting
//! mock) first and the healthy mock after it. Every fault before the first byte moves the
//! request to the mock within the same request, the failing target cools down at once (the next
//! request does not try it), and it is used again once it has recovered. Faults after the first
//! byte end the stream with an error the client sees.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_tests::mock::faulty::Fault;
use switchyard_tests::{data_events, read_all, usage_records, wait_until, Stack};

fn ask(stream: bool) -> Value {
    json!({"model": "fickle", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]})
}

/// The access-log records of `fickle` requests, in order.
fn records(stack: &Stack) -> Vec<Value> {
    usage_records(&stack.envoy.proc.log_text())
        .into_iter()
        .filter(|r| r["model"] == "fickle")
        .collect()
}

async fn record_count(stack: &Stack, n: usize) -> Vec<Value> {
    wait_until(
        &format!("{n} access-log records"),
        Duration::from_secs(10),
        || async { records(stack).len() >= n },
    )
    .await;
    records(stack)
}

/// One request that must succeed in full, whoever serves it.
async fn served(stack: &Stack, stream: bool) {
    let resp = stack.post("/v1/chat/completions", &ask(stream)).await;
    assert_eq!(resp.status(), 200);
    if stream {
        let body = read_all(resp).await.expect("a whole stream");
        let events = data_events(&body);
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{events:?}"
        );
        let text: String = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "Hello!");
    } else {
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert!(body["choices"][0]["message"]["content"].is_string());
    }
}

/// `fault` on the first target: the request is served by the second in the same request; the
/// next request goes straight to the second; once `flaky` is healthy again it serves again.
async fn fails_over_and_recovers(fault: Fault, stream: bool) {
    let stack = Stack::start().await;
    served(&stack, stream).await; // flaky healthy: it serves
    stack.flaky.set(fault);
    served(&stack, stream).await; // flaky fails: the mock serves, in the same request
    assert_eq!(stack.flaky.requests(), 2);
    served(&stack, stream).await; // flaky cools down: not even tried
    assert_eq!(stack.flaky.requests(), 2, "a target in cooldown was tried");
    let r = record_count(&stack, 3).await;
    assert_eq!(r[0]["provider"], "flaky");
    assert_eq!(r[0]["attempts"], 1);
    assert_eq!(r[1]["provider"], "mock", "{:?}", r[1]);
    assert_eq!(r[1]["attempts"], 2);
    assert_eq!(r[1]["complete"], true);
    assert_eq!(r[2]["provider"], "mock");
    assert_eq!(r[2]["attempts"], 1);

    // Recovery: once the cooldown is over (5 s for a first failure, or sooner when a probe finds
    // flaky answering again) flaky is tried, and serves, again.
    stack.flaky.set(Fault::Healthy);
    wait_until("flaky to serve again", Duration::from_secs(20), || async {
        served(&stack, stream).await;
        records(&stack)
            .last()
            .is_some_and(|r| r["provider"] == "flaky")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_moves_the_request_to_the_next_target() {
    fails_over_and_recovers(Fault::Status(500, None), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_the_answer_moves_a_stream_to_the_next_target() {
    fails_over_and_recovers(Fault::Reset, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_before_the_first_byte_moves_a_stream_to_the_next_target() {
    // The test gateway gives a silent provider 2 s (`first_byte_timeout_secs`).
    fails_over_and_recovers(Fault::Stall, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_moves_the_request_on_and_its_retry_after_is_honoured() {
    let stack = Stack::start().await;
    stack.flaky.set(Fault::Status(429, Some(8)));
    served(&stack, true).await;
    assert_eq!(stack.flaky.requests(), 1);
    stack.flaky.set(Fault::Healthy);
    // A first failure cools down for 5 s; `retry-after: 8` asks for more, and gets it.
    let waited = wait_until("flaky to serve again", Duration::from_secs(20), || async {
        served(&stack, false).await;
        records(&stack)
            .last()
            .is_some_and(|r| r["provider"] == "flaky")
    })
    .await;
    assert!(
        waited >= Duration::from_secs(6),
        "retry-after ignored: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_moves_the_request_to_the_next_target() {
    let stack = Stack::start().await;
    // `resilient` tries `dead` (nothing listens there) first.
    let ask = json!({"model": "resilient", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..3 {
        let resp = stack.post("/v1/chat/completions", &ask).await;
        assert_eq!(resp.status(), 200);
    }
    let records = || -> Vec<Value> {
        usage_records(&stack.envoy.proc.log_text())
            .into_iter()
            .filter(|r| r["model"] == "resilient")
            .collect()
    };
    wait_until("three records", Duration::from_secs(10), || async {
        records().len() >= 3
    })
    .await;
    let r = records();
    assert!(r.iter().all(|r| r["provider"] == "mock"), "{r:?}");
    // The first request tried `dead` and moved on, unless the probes had already found it
    // down (they run every second in the test stack); from then on it cools down.
    if r[0]["attempts"] != 2 {
        let (_, health) = stack.admin(reqwest::Method::GET, "/health", None).await;
        assert!(
            health["providers_down_until"]["dead"].is_u64(),
            "{:?} {health}",
            r[0]
        );
    }
    assert!(r[1..].iter().all(|r| r["attempts"] == 1), "{r:?}");

    // Bedrock providers are not probed: the first request to `resilient-unprobed` always meets
    // the refused connection itself, and moves on (from Bedrock's format to OpenAI's).
    let ask =
        json!({"model": "resilient-unprobed", "messages": [{"role": "user", "content": "hi"}]});
    let resp = stack.post("/v1/chat/completions", &ask).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let record = stack.usage_record("resilient-unprobed").await;
    assert_eq!(record["provider"], "mock");
    assert_eq!(record["attempts"], 2, "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_attempt_is_translated_for_its_own_provider() {
    let stack = Stack::start().await;
    // `polyglot`: OpenAI-style `flaky` first, Anthropic after it. The second attempt carries
    // Anthropic's body, path and key; the answer comes back in OpenAI's format.
    stack.flaky.set(Fault::Status(503, None));
    let polyglot = |stream: bool| {
        json!({"model": "polyglot", "stream": stream, "max_tokens": 100,
               "messages": [{"role": "user", "content": "Hi"}]})
    };
    let resp = stack.post("/v1/chat/completions", &polyglot(false)).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["model"]
        .as_str()
        .unwrap()
        .starts_with("claude-sonnet-4-5"));
    // Streamed too (flaky now cools down: Anthropic is the first choice).
    let resp = stack.post("/v1/chat/completions", &polyglot(true)).await;
    let events = data_events(&read_all(resp).await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let to_anthropic: Vec<_> = stack
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/messages")
        .collect();
    assert_eq!(to_anthropic.len(), 2);
    for r in &to_anthropic {
        assert_eq!(r.header("x-api-key"), Some(switchyard_tests::PROVIDER_KEY));
        assert_eq!(
            r.header("authorization"),
            None,
            "the OpenAI-style key leaked"
        );
        assert_eq!(r.json()["model"], "claude-sonnet-4-5");
    }

    // `polyglot-back`: Anthropic first (it answers 529, overloaded), the OpenAI-style mock after
    // it. Anthropic's headers must not follow the request there.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "polyglot-back", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let to_openai = stack
        .mock
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/v1/chat/completions")
        .expect("the mock got the second attempt");
    assert_eq!(
        to_openai.header("authorization"),
        Some(format!("Bearer {}", switchyard_tests::PROVIDER_KEY).as_str())
    );
    assert_eq!(to_openai.header("x-api-key"), None);
    assert_eq!(to_openai.header("anthropic-version"), None);
    assert_eq!(to_openai.json()["model"], "gpt-4o-mini");
    let back = stack.usage_record("polyglot-back").await;
    assert_eq!(back["provider"], "mock");
    assert_eq!(back["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_after_its_first_bytes_ends_with_an_error() {
    let stack = Stack::start().await;
    stack.flaky.set(Fault::CutStream);
    let resp = stack.post("/v1/chat/completions", &ask(true)).await;
    assert_eq!(resp.status(), 200);
    // Bytes reached the client: no failover now. The client sees the stream break (a reset
    // cannot be turned into a clean end), never a clean end without `[DONE]`.
    match read_all(resp).await {
        Err(_) => {}
        Ok(body) => {
            let events = data_events(&body);
            assert!(
                events.last().is_some_and(|e| e.contains("\"error\"")),
                "{events:?}"
            );
        }
    }
    let r = record_count(&stack, 1).await;
    assert_eq!(r[0]["provider"], "flaky");
    assert_eq!(r[0]["complete"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_mid_stream_reaches_the_client() {
    let stack = Stack::start().await;
    stack.flaky.set(Fault::ErrorEvent);
    let resp = stack.post("/v1/chat/completions", &ask(true)).await;
    assert_eq!(resp.status(), 200);
    let body = read_all(resp).await.expect("a clean HTTP end");
    let events = data_events(&body);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{events:?}");
    let r = record_count(&stack, 1).await;
    assert_eq!(r[0]["complete"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_follows_the_latency_envoy_reports() {
    // `quick` (strategy `latency`) has a slow target (300 ms) and a fast one. With no figures
    // yet both are used; Envoy's access-log stream gives the control plane their latency, and
    // once it is pushed every request goes to the fast one.
    let stack = Stack::start().await;
    let ask = json!({"model": "quick", "messages": [{"role": "user", "content": "Hi"}]});
    let targets = |stack: &Stack| -> Vec<String> {
        usage_records(&stack.envoy.proc.log_text())
            .into_iter()
            .filter(|r| r["model"] == "quick")
            .map(|r| r["upstream_model"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for _ in 0..8 {
        let resp = stack.post("/v1/chat/completions", &ask).await;
        assert_eq!(resp.status(), 200);
    }
    let first = targets(&stack);
    assert!(first.iter().any(|m| m == "mock-slow"), "{first:?}");
    // The figures reach Envoy within a few seconds (2 s write period, then a push).
    wait_until(
        "only the fast target to be chosen",
        Duration::from_secs(20),
        || async {
            let before = targets(&stack).len();
            for _ in 0..5 {
                let _ = stack.post("/v1/chat/completions", &ask).await;
            }
            wait_until("records", Duration::from_secs(5), || async {
                targets(&stack).len() >= before + 5
            })
            .await;
            targets(&stack)[before..].iter().all(|m| m == "gpt-4o-mini")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_probe_ends_a_cooldown_that_failures_made_long() {
    let stack = Stack::start().await;
    stack.flaky.set(Fault::Status(503, None));
    // Four failures in a row on flaky's target (`flaky-only` has no other): its cooldown grows
    // to 5, 10, 20, then 40 s.
    let only = json!({"model": "flaky-only", "messages": [{"role": "user", "content": "Hi"}]});
    for _ in 0..4 {
        let resp = stack.post("/v1/chat/completions", &only).await;
        assert_eq!(resp.status(), 503);
    }
    // The probes (every second in the test stack) find flaky down, and say so.
    wait_until("flaky reported down", Duration::from_secs(10), || async {
        let (status, health) = stack.admin(reqwest::Method::GET, "/health", None).await;
        status == 200 && health["providers_down_until"]["flaky"].is_u64()
    })
    .await;
    served(&stack, false).await;
    assert_eq!(record_count(&stack, 1).await[0]["provider"], "mock");
    // It recovers: the next passing probe ends the 40 s cooldown on every worker.
    stack.flaky.set(Fault::Healthy);
    let waited = wait_until("flaky to serve again", Duration::from_secs(15), || async {
        served(&stack, false).await;
        records(&stack)
            .last()
            .is_some_and(|r| r["provider"] == "flaky")
    })
    .await;
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    let (_, health) = stack.admin(reqwest::Method::GET, "/health", None).await;
    assert!(health["providers_up_since"]["flaky"].is_u64(), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_tools_or_images_go_only_to_targets_that_take_them() {
    // `picky`: flaky first (plain chat only), the mock after it (tools and images).
    let stack = Stack::start().await;
    let hi = json!({"role": "user", "content": "Hi"});
    let image = json!({"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]});
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let cases = [
        (json!({"model": "picky", "messages": [hi]}), "flaky"),
        (
            json!({"model": "picky", "messages": [hi], "tools": tools}),
            "mock",
        ),
        (json!({"model": "picky", "messages": [image]}), "mock"),
    ];
    for (i, (body, provider)) in cases.iter().enumerate() {
        let resp = stack.post("/v1/chat/completions", body).await;
        assert_eq!(resp.status(), 200, "{body}");
        wait_until("a record", Duration::from_secs(10), || async {
            usage_records(&stack.envoy.proc.log_text())
                .into_iter()
                .filter(|r| r["model"] == "picky")
                .count()
                > i
        })
        .await;
        let records: Vec<Value> = usage_records(&stack.envoy.proc.log_text())
            .into_iter()
            .filter(|r| r["model"] == "picky")
            .collect();
        assert_eq!(records[i]["provider"], *provider, "{body}");
    }
    // No target of `blind` takes images: a clear error, nothing sent.
    let before = stack.flaky.requests();
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "blind", "messages": [image]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_capable");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(stack.flaky.requests(), before);
}
