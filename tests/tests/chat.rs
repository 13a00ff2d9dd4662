//! Chat completions and embeddings through the real Envoy, filter and control plane: what is
//! particular to OpenAI-style providers (the usage chunk hidden, streams cut off, bodies passed
//! byte for byte, model lists, metrics). The cases every provider kind shares are in
//! `providers.rs`.

use serde_json::{json, Value};
use switchyard_tests::{data_events, read_all, wasm_build_path, Stack, GATEWAY_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_passes_chunk_by_chunk_and_hides_the_usage_chunk_it_asked_for() {
    use futures::StreamExt as _;
    let stack = Stack::start().await;
    let resp = stack
        .post("/v1/chat/completions", &json!({"model": "mock-gated", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    // The mock holds everything after its first event until the gate opens: if the gateway
    // buffered the stream, this first read would never complete.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
        .await
        .expect("first chunk arrives while the provider is still streaming")
        .expect("a chunk")
        .expect("no error");
    assert!(String::from_utf8_lossy(&first).contains("\"role\":\"assistant\""));
    stack.mock.open_gate();
    let mut rest = first.to_vec();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    // Exactly what the provider sends a client that did not ask for usage: no usage-only chunk
    // and no `"usage":null` in the others, although the gateway asked upstream for usage.
    let expected: String = switchyard_tests::mock::CHAT_STREAM
        .replace("gpt-4o-mini-2024-07-18", "mock-gated")
        .split("\n\n")
        .filter(|e| !e.trim().is_empty() && !e.contains("\"choices\":[]"))
        .map(|e| format!("{}\n\n", e.replace(",\"usage\":null", "")))
        .collect();
    assert_eq!(String::from_utf8_lossy(&rest), expected);
    assert_eq!(data_events(&rest).len(), 5);

    let upstream = stack.mock.requests()[0].json();
    assert_eq!(
        upstream["stream_options"]["include_usage"], true,
        "gateway always asks for usage"
    );
    let record = stack.usage_record("mock-gated").await;
    assert_eq!(record["prompt_tokens"], 19);
    assert_eq!(record["completion_tokens"], 2);
    assert_eq!(record["stream"], true);
    assert_eq!(record["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_provider_cuts_off_does_not_look_complete() {
    let stack = Stack::start().await;
    // Connection dropped mid-stream: the client must see an error, not a clean end.
    let resp = stack
        .post("/v1/chat/completions", &json!({"model": "mock-cut", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    match read_all(resp).await {
        Err(_) => {}
        Ok(body) => {
            let events = data_events(&body);
            assert_ne!(events.last().map(String::as_str), Some("[DONE]"));
            assert!(
                events.last().is_some_and(|e| e.contains("\"error\"")),
                "{events:?}"
            );
        }
    }
    // Clean end of the HTTP body, but no [DONE]: the gateway appends an error event.
    let resp = stack
        .post("/v1/chat/completions", &json!({"model": "mock-truncated", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
        .await;
    let body = read_all(resp).await.expect("clean HTTP end");
    let events = data_events(&body);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_incomplete");
    assert_eq!(last["error"]["type"], "api_error");
    let record = stack.usage_record("mock-truncated").await;
    assert_eq!(record["complete"], false);
    // Both the cut and the truncated stream count as incomplete.
    assert_eq!(
        stack
            .envoy
            .wait_counter("switchyard_incomplete_streams_total", 2)
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_and_metrics() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": "The food was delicious"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 4);
    let r = &stack.mock.requests()[0];
    assert_eq!(r.path, "/v1/embeddings");
    assert_eq!(r.json()["input"], "The food was delicious");
    assert!(r.json().get("stream_options").is_none());
    let record = stack.usage_record("text-embedding-3-small").await;
    assert_eq!(record["prompt_tokens"], 8);
    assert_eq!(record["total_tokens"], 8);
    assert_eq!(
        stack
            .envoy
            .wait_counter("switchyard_prompt_tokens_total", 8)
            .await,
        8
    );
    // The readiness probe (401) and the embeddings request.
    assert_eq!(
        stack
            .envoy
            .wait_counter("switchyard_requests_total", 2)
            .await,
        2
    );
    assert_eq!(
        stack
            .envoy
            .counter("switchyard_completion_tokens_total")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_per_key() {
    let stack = Stack::start().await;
    let list = |key: &'static str| {
        let client = stack.client();
        let url = stack.envoy.url("/v1/models");
        async move {
            let resp = client.get(url).bearer_auth(key).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["object"], "list");
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let all = list(GATEWAY_KEY).await;
    for id in [
        "smart",
        "gpt-4o-mini",
        "mock/gpt-4o-mini",
        "text-embedding-3-small",
        "dead/dead-model",
    ] {
        assert!(all.contains(&id.to_owned()), "{id} missing from {all:?}");
    }
    assert_eq!(
        list(switchyard_tests::LIMITED_KEY).await,
        vec!["gpt-4o-mini".to_owned()]
    );
    // x-api-key works as well as Bearer.
    let resp = stack
        .client()
        .get(stack.envoy.url("/v1/models"))
        .header("x-api-key", GATEWAY_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_needs_no_rewrite_reaches_the_provider_byte_for_byte() {
    let stack = Stack::start().await;
    // Unusual spacing and key order survive: the gateway does not re-serialise this body.
    let body = "{ \"messages\" : [ {\"role\":\"user\", \"content\":\"caf\\u00e9\"} ],\n  \"model\":\"gpt-4o-mini\" }";
    let resp = stack
        .client()
        .post(stack.envoy.url("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = &stack.mock.requests()[0];
    assert_eq!(r.body, body.as_bytes());
    assert_eq!(
        r.header("content-length"),
        Some(body.len().to_string().as_str())
    );
}

/// The GenAI histograms reach Prometheus with their labels: token usage by type, duration by
/// status class, time to first token and per output token for streams, the gateway's overhead;
/// and a configuration change carries the series on (the native build defines them per
/// configuration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genai_metrics_carry_provider_model_and_status_labels() {
    let stack = Stack::start().await;
    let body = json!({"model": "smart", "messages": [{"role": "user", "content": "Hi"}]});
    assert_eq!(
        stack.post("/v1/chat/completions", &body).await.status(),
        200
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = stack.post("/v1/chat/completions", &streamed).await;
    assert_eq!(resp.status(), 200);
    read_all(resp).await.unwrap();
    let labels = r#"gen_ai_provider_name="mock",gen_ai_response_model="gpt-4o-mini""#;
    let wanted = |n: u32| {
        [
            format!(r#"gen_ai_client_token_usage_count{{{labels},gen_ai_token_type="input"}} {n}"#),
            // (Envoy's histogram sums are estimates from its buckets: counts only.)
            format!(
                r#"gen_ai_client_token_usage_count{{{labels},gen_ai_token_type="output"}} {n}"#
            ),
            format!(
                r#"gen_ai_client_operation_duration_ms_count{{{labels},http_status_class="2xx"}} {n}"#
            ),
            format!(r#"gen_ai_server_time_to_first_token_ms_count{{{labels}}} 1"#),
            format!(r#"gen_ai_server_time_per_output_token_us_count{{{labels}}} 1"#),
            format!("switchyard_gateway_overhead_us_count{{}} {n}"),
        ]
    };
    wait_for_stats(&stack, &wanted(2)).await;

    // A configuration change (a new key: the answer comes once Envoy has it), then a request.
    let (status, created) = stack
        .admin(
            reqwest::Method::POST,
            "/keys",
            Some(json!({"name": "another", "models": ["smart"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        stack.post("/v1/chat/completions", &body).await.status(),
        200
    );
    wait_for_stats(&stack, &wanted(3)).await;
}

/// Waits for every line of `wanted` in Envoy's Prometheus stats.
async fn wait_for_stats(stack: &Stack, wanted: &[String]) {
    // Histograms reach the admin endpoint with Envoy's stats flush (every 5 s).
    let mut stats = String::new();
    for _ in 0..60 {
        stats = stack.envoy.stats().await;
        if wanted.iter().all(|w| stats.contains(w.as_str())) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let ours: Vec<&str> = stats
        .lines()
        .filter(|l| l.contains("gen_ai") || l.contains("switchyard_gateway"))
        .filter(|l| l.contains("_count") || l.contains("_sum"))
        .collect();
    panic!("missing {wanted:#?}\nin:\n{}", ours.join("\n"));
}

/// The filter's budget of crossings between Envoy and V8 per request: each costs about a
/// microsecond or two (more than the filter's own work on a request), so every one added is a
/// cost every request pays. Counted from Envoy's wasm trace, not timed. A change that needs
/// more raises these numbers on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_costs_a_bounded_number_of_host_calls() {
    // The wasm build's crossings between V8 and Envoy (the native build's are function calls).
    let stack = Stack::start_edited(1, |_| {}, |c| c.gateway.wasm = wasm_build_path()).await;
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]});
    // Warm: the first request of a worker defines its metrics.
    assert_eq!(
        stack.post("/v1/chat/completions", &chat).await.status(),
        200
    );
    let crossings = stack
        .envoy
        .crossings(async {
            let resp = stack.post("/v1/chat/completions", &chat).await;
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        })
        .await;
    eprintln!("JSON answer: {}", crossings.summary());
    // One each: the context's creation, headers both ways, the log, done, delete.
    for name in [
        "proxy_on_context_create",
        "proxy_on_request_headers",
        "proxy_on_response_headers",
        "proxy_on_log",
        "proxy_on_done",
        "proxy_on_delete",
    ] {
        assert_eq!(crossings.count(name), 1, "{name}: {}", crossings.summary());
    }
    // Read once each: the request's and the answer's headers, the body both ways.
    assert_eq!(crossings.count("proxy_get_header_map_pairs"), 2);
    assert_eq!(crossings.count("proxy_get_buffer_bytes"), 2);
    assert_eq!(
        crossings.count("proxy_get_property"),
        0,
        "{}",
        crossings.summary()
    );
    assert!(
        crossings.host_calls() <= 17,
        "host calls: {}",
        crossings.summary()
    );
    assert!(
        crossings.calls.len() <= 31,
        "crossings: {}",
        crossings.summary()
    );
}
