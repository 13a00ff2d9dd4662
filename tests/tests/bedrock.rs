//! OpenAI and Anthropic clients reaching Amazon Bedrock through the real Envoy: Converse
//! requests signed with SigV4 in the filter (the mock recomputes the signature), ConverseStream
//! event streams decoded and translated chunk by chunk.

use serde_json::{json, Value};
use switchyard_tests::{fixture, fixture_json, sse_events, without_created, Stack, GATEWAY_KEY};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_to_bedrock_is_signed_and_translated() {
    let stack = Stack::start().await;
    let mut request = fixture_json("openai_bedrock/simple/client_request.json");
    request["model"] = json!(MODEL);
    let resp = stack.post("/v1/chat/completions", &request).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let mut expected = fixture_json("openai_bedrock/simple/client_response.json");
    // The id comes from Envoy's x-request-id; everything else must match the fixture.
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    expected["id"] = body["id"].clone();
    assert_eq!(without_created(body), without_created(expected));

    let r = &stack.mock.requests()[0];
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    let auth = r.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAMOCKEXAMPLE/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"));
    assert!(
        !auth.contains(switchyard_tests::PROVIDER_KEY),
        "the secret never travels"
    );
    for (name, value) in &r.headers {
        assert!(!value.contains(GATEWAY_KEY), "gateway key leaked in {name}");
    }
    assert_eq!(
        r.json(),
        fixture_json("openai_bedrock/simple/upstream_request.json")
    );
    let record = stack.usage_record(MODEL).await;
    assert_eq!(record["provider"], "bedrock");
    assert_eq!(record["prompt_tokens"], 150);
    assert_eq!(record["cached_tokens"], 100);
    assert_eq!(record["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_event_streams_arrive_as_openai_chunks() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.text().await.unwrap();
    let id = sse_events(&body)[0]["id"].clone();
    let expected: Vec<Value> = sse_events(&fixture("openai_bedrock/stream/client_response.sse"))
        .into_iter()
        .map(|mut e| {
            if e.is_object() {
                e["id"] = id.clone();
            }
            e
        })
        .collect();
    assert_eq!(sse_events(&body), expected);
    assert_eq!(
        stack.mock.requests()[0].path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    let record = stack.usage_record(MODEL).await;
    assert_eq!(record["completion_tokens"], 3);
    assert_eq!(record["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_errors_and_anthropic_clients() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "bedrock-throttled", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    let resp = stack
        .client()
        .post(stack.envoy.url("/v1/messages"))
        .header("x-api-key", GATEWAY_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": MODEL, "max_tokens": 64,
                      "messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "Hello! How can I help?");
    // 150 prompt tokens: 100 read from the cache, 30 written to it, 20 plain input.
    assert_eq!(body["usage"]["input_tokens"], 20);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 100);
    assert_eq!(body["usage"]["cache_creation_input_tokens"], 30);
}
