//! Anthropic clients (`POST /v1/messages`) through the real Envoy: to Anthropic untouched apart
//! from model and key, to OpenAI-style providers, Gemini and Bedrock translated both ways, to
//! Claude on Vertex, and every gateway error in Anthropic's shape.

use serde_json::{json, Value};
use switchyard_tests::{fixture, Stack, GATEWAY_KEY, PROVIDER_KEY};

/// `POST /v1/messages` the way the Anthropic SDK sends it, with a beta feature.
async fn messages(stack: &Stack, body: &Value) -> reqwest::Response {
    post_messages(stack, body, Some("prompt-caching-2024-07-31")).await
}

/// `POST /v1/messages` with the gateway key, the version header and `anthropic-beta` if given.
async fn post_messages(stack: &Stack, body: &Value, beta: Option<&str>) -> reqwest::Response {
    let mut request = stack
        .client()
        .post(stack.envoy.url("/v1/messages"))
        .header("x-api-key", GATEWAY_KEY)
        .header("anthropic-version", "2023-06-01");
    if let Some(beta) = beta {
        request = request.header("anthropic-beta", beta);
    }
    request
        .json(body)
        .send()
        .await
        .expect("request through Envoy")
}

/// The `data` of each event, checked against its `event:` name.
fn anthropic_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .expect("event name");
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("data");
            let v: Value = serde_json::from_str(data).expect("json");
            assert_eq!(v["type"], name);
            v
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_anthropic_the_request_passes_untouched_apart_from_model_and_key() {
    let stack = Stack::start().await;
    let request = json!({"model": "claude/claude-sonnet-4-5", "max_tokens": 1024,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hello, Claude"}]});
    let resp = messages(&stack, &request).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let answer: Value = serde_json::from_str(&body).unwrap();
    let provider: Value =
        serde_json::from_str(&fixture("openai_anthropic/simple/upstream_response.json")).unwrap();
    assert_eq!(answer, provider, "the provider's answer, as it was");

    let r = &stack.mock.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(PROVIDER_KEY));
    assert_eq!(
        r.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    let mut expected = request.clone();
    expected["model"] = json!("claude-sonnet-4-5");
    assert_eq!(r.json(), expected);
    for (name, value) in &r.headers {
        assert!(!value.contains(GATEWAY_KEY), "gateway key leaked in {name}");
    }
    // Usage recorded with the cache reads and writes in the prompt, as everywhere.
    let record = stack.usage_record("claude/claude-sonnet-4-5").await;
    assert_eq!(record["prompt_tokens"], 3195);
    assert_eq!(record["cached_tokens"], 1000);
    assert_eq!(record["complete"], true);

    let stream = messages(
        &stack,
        &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.text().await.unwrap(),
        fixture("openai_anthropic/stream/upstream_response.sse"),
        "streams pass byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_an_openai_provider_the_conversation_is_translated_both_ways() {
    let stack = Stack::start().await;
    let resp = messages(
        &stack,
        &json!({"model": "gpt-4o-mini", "max_tokens": 100, "system": "Be brief.",
                "messages": [{"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(
        body["content"][0]["text"],
        "Hello! How can I assist you today?"
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 19);
    assert_eq!(body["usage"]["output_tokens"], 10);
    let sent = stack.mock.requests()[0].json();
    assert_eq!(stack.mock.requests()[0].path, "/v1/chat/completions");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["max_tokens"], 100,
        "a compatible provider gets max_tokens"
    );
    assert_eq!(
        stack.mock.requests()[0].header("anthropic-version"),
        Some("2023-06-01")
    );

    let resp = messages(
        &stack,
        &json!({"model": "gpt-4o-mini", "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = anthropic_events(&resp.text().await.unwrap());
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[5]["usage"]["input_tokens"], 19);
    assert_eq!(events[5]["usage"]["output_tokens"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_gemini_and_to_a_quirky_provider() {
    let stack = Stack::start().await;
    let resp = messages(
        &stack,
        &json!({"model": "gemini-2.5-flash", "max_tokens": 100,
                "messages": [{"role": "user", "content": "Write a story about a magic backpack."}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["content"][0]["text"],
        "In the heart of a bustling city, lived a girl named Lily."
    );
    // Gemini counted 1200 prompt tokens, 1024 of them cached: Anthropic's input excludes those.
    assert_eq!(body["usage"]["input_tokens"], 176);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 1024);
    let r = &stack.mock.requests()[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r.json()["generationConfig"]["maxOutputTokens"], 100);

    let resp = messages(
        &stack,
        &json!({"model": "gemini-2.5-flash", "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": "Write a story."}]}),
    )
    .await;
    let events = anthropic_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap()["type"], "message_stop");
    let text: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "In the heart of a city.");

    // Mistral takes no stream_options: the translated request leaves it out too.
    let resp = messages(
        &stack,
        &json!({"model": "mistral-small-latest", "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": "Salut"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = anthropic_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap()["type"], "message_stop");
    let sent = stack.mock.requests()[2].json();
    assert!(sent.get("stream_options").is_none(), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_bedrock_and_to_claude_on_vertex() {
    let stack = Stack::start().await;
    stack.wait_ready("gemini-2.5-pro").await;
    // Bedrock: Converse translated both ways.
    let resp = post_messages(
        &stack,
        &json!({"model": "anthropic.claude-3-5-sonnet-20240620-v1:0", "max_tokens": 64,
                "messages": [{"role": "user", "content": "Hello"}]}),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "Hello! How can I help?");
    // 150 prompt tokens: 100 read from the cache, 30 written to it, 20 plain input.
    assert_eq!(body["usage"]["input_tokens"], 20);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 100);
    assert_eq!(body["usage"]["cache_creation_input_tokens"], 30);

    // Claude on Vertex, with the body passed through.
    let resp = post_messages(
        &stack,
        &json!({"model": "claude-opus-4-1@20250805", "max_tokens": 64,
                "messages": [{"role": "user", "content": "Hello"}]}),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_take_anthropics_shape() {
    let stack = Stack::start().await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            stack
                .client()
                .post(stack.envoy.url("/v1/messages"))
                .header("x-api-key", "sk-wrong-key-123"),
            401,
            "authentication_error",
        ),
        (
            stack
                .client()
                .post(stack.envoy.url("/v1/messages"))
                .header("x-api-key", GATEWAY_KEY),
            400,
            "invalid_request_error",
        ),
    ];
    for (request, status, kind) in cases {
        let resp = request
            .header("content-type", "application/json")
            .body("{\"model\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], kind, "{body}");
    }
    let resp = messages(
        &stack,
        &json!({"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");
    // An Anthropic request without max_tokens is refused before it reaches a provider.
    let resp = messages(
        &stack,
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(stack.mock.requests().is_empty());
}
