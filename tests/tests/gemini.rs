//! OpenAI clients reaching a Gemini provider through the real Envoy: requests arrive as
//! `generateContent` requests the strict mock accepts, answers come back in OpenAI's format.

use serde_json::{json, Value};
use switchyard_tests::{
    fixture, fixture_json, sse_events, without_created, Stack, GATEWAY_KEY, PROVIDER_KEY,
};

const MODEL: &str = "gemini-2.5-flash";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_to_gemini_is_translated_both_ways() {
    let stack = Stack::start().await;
    let request = fixture_json("openai_gemini/simple/client_request.json");
    let mut request = request.as_object().unwrap().clone();
    request.insert("model".into(), json!(MODEL));
    let resp = stack
        .post("/v1/chat/completions", &Value::Object(request))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        without_created(body),
        without_created(fixture_json("openai_gemini/simple/client_response.json"))
    );

    let r = &stack.mock.requests()[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r.header("x-goog-api-key"), Some(PROVIDER_KEY));
    assert_eq!(
        r.header("authorization"),
        None,
        "no bearer credential reaches Google"
    );
    for (name, value) in &r.headers {
        assert!(
            !value.contains(GATEWAY_KEY),
            "gateway key leaked upstream in {name}"
        );
    }
    assert_eq!(
        r.json(),
        fixture_json("openai_gemini/simple/upstream_request.json")
    );

    let record = stack.usage_record(MODEL).await;
    assert_eq!(record["provider"], "gem");
    assert_eq!(record["prompt_tokens"], 1200);
    assert_eq!(record["cached_tokens"], 1024);
    assert_eq!(record["completion_tokens"], 12);
    assert_eq!(record["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_stream_arrives_as_openai_chunks() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Write a story about a magic backpack."}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    assert_eq!(
        sse_events(&body),
        sse_events(&fixture("openai_gemini/stream/client_response.sse"))
    );
    assert_eq!(
        stack.mock.requests()[0].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    let record = stack.usage_record(MODEL).await;
    assert_eq!(record["prompt_tokens"], 9);
    assert_eq!(record["completion_tokens"], 7);
    assert_eq!(record["stream"], true);
    assert_eq!(record["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_and_its_result_make_a_round_trip() {
    let stack = Stack::start().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let question = json!({"role": "user", "content": "What's the weather in Boston?"});
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "messages": [question], "tools": tools}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let call = body["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");

    // The client answers the call the OpenAI way; Gemini gets a function response by name,
    // and the thought signature that rode in the call id.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "tools": tools, "messages": [
                question,
                {"role": "assistant", "content": null, "tool_calls": [call.clone()]},
                {"role": "tool", "tool_call_id": call["id"], "content": "{\"temperature\": 22}"},
            ]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let sent = stack.mock.requests()[1].json();
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"],
        "CiQBVKhc7sig"
    );
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"temperature": 22}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_errors_become_openai_errors() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "gemini-overloaded", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(body["error"]["code"], "overloaded");

    // Google's RetryInfo (in the body) reaches the client as retry-after.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "gemini-rate-limited", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "37");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Google refuses a bad key with 400 API_KEY_INVALID; OpenAI clients get a 401.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "gemini-with-a-wrong-key", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(body["error"]["code"], "invalid_api_key");

    // What Gemini cannot take is refused by the gateway, before anything is sent.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no assistant message called"));
    assert_eq!(stack.mock.requests().len(), 3);
}
