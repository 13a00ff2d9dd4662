//! The provider matrix: OpenAI clients (`POST /v1/chat/completions`) reaching every provider
//! kind through the real Envoy, filter and control plane, the same cases for each: a plain
//! answer, a stream, a tool call and its result, an image, the usage recorded, and the
//! provider's errors mapped to OpenAI's. One table ([`KINDS`]) says what each kind must receive
//! (path, credentials, the translated body: the translator's golden fixtures where it has them)
//! and answer; one test per case runs it for every kind on one stack.

use serde_json::{json, Value};
use switchyard_tests::mock::{Recorded, CHAT_STREAM};
use switchyard_tests::{
    fixture, fixture_json, sse_events, usage_records, wait_until, without_created, Stack,
    GATEWAY_KEY, PROVIDER_KEY,
};

const CHAT: &str = "/v1/chat/completions";
const VERTEX: &str = "/v1/projects/switchyard-test/locations/us-east5/publishers";

/// Tokens as the usage record and an OpenAI client count them: prompt (cache reads included),
/// completion, cache reads.
#[derive(Clone, Copy)]
struct Usage(u64, u64, u64);

/// A provider error and what an OpenAI client gets for it.
struct ErrorCase {
    /// The model (served by the mock to fail this way) and the request's messages.
    model: &'static str,
    messages: &'static str,
    status: u16,
    kind: &'static str,
    code: Option<&'static str>,
    message: Option<&'static str>,
    retry_after: Option<&'static str>,
    /// Whether the provider was asked at all (refusals by the gateway are not forwarded).
    forwarded: bool,
}

const HI: &str = r#"[{"role": "user", "content": "hi"}]"#;

/// One provider kind of the stack's config, reached through one of its models.
struct Kind {
    /// The provider's name in the config (the usage record's `provider`).
    provider: &'static str,
    model: &'static str,
    /// What it is asked at, plain and streamed (path and query).
    path: String,
    stream_path: String,
    /// Its credentials as it must receive them.
    auth: fn(&Recorded),
    /// The translator's golden fixtures (`tests/fixtures/<dir>/<case>/`), if the request is
    /// translated; `None`: passed through as OpenAI's.
    fixtures: Option<&'static str>,
    /// The answer's text when there are no fixtures to compare it with.
    text: &'static str,
    plain: Usage,
    /// Usage of a stream, `None` when the stream's record is not this kind's concern.
    stream: Option<Usage>,
    /// What else a streamed request carries for this kind, and a check of what it became.
    stream_extra: Value,
    stream_sent: fn(&Value),
    /// Text the streamed answer carries ("": no check beyond the fixtures').
    stream_text: &'static str,
    /// A model whose stream the mock holds after its first events until the gate opens.
    gated: Option<&'static str>,
    /// A check of the upstream turn that answers a tool call.
    tool_result_sent: fn(&Value, &str),
    /// A check of the upstream request carrying an image.
    image_sent: fn(&Value),
    errors: Vec<ErrorCase>,
}

fn nothing(_: &Value) {}

fn bearer(r: &Recorded) {
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
}

fn asks_for_usage(sent: &Value) {
    assert_eq!(
        sent["stream_options"],
        json!({"include_usage": true}),
        "the gateway always asks for usage: {sent}"
    );
}

fn openai_tool_result(sent: &Value, call_id: &str) {
    assert_eq!(sent["messages"][2]["role"], "tool", "{sent}");
    assert_eq!(sent["messages"][2]["tool_call_id"], call_id, "{sent}");
}

fn openai_image(sent: &Value) {
    assert_eq!(
        sent["messages"][0]["content"][1]["type"], "image_url",
        "{sent}"
    );
}

fn anthropic_tool_result(sent: &Value, call_id: &str) {
    let block = &sent["messages"][2]["content"][0];
    assert_eq!(block["type"], "tool_result", "{sent}");
    assert_eq!(block["tool_use_id"], call_id, "{sent}");
}

fn anthropic_image(sent: &Value) {
    assert_eq!(sent["messages"][0]["content"][1]["type"], "image", "{sent}");
}

fn gemini_tool_result(sent: &Value, _: &str) {
    // Gemini gets a function response by name, and the thought signature that rode in the
    // call id.
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"], "CiQBVKhc7sig",
        "{sent}"
    );
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"temperature": 22}})
    );
}

fn gemini_image(sent: &Value) {
    assert_eq!(
        sent["contents"][0]["parts"][1]["inlineData"]["mimeType"], "image/png",
        "{sent}"
    );
}

fn bedrock_tool_result(sent: &Value, call_id: &str) {
    let block = &sent["messages"][2]["content"][0]["toolResult"];
    assert_eq!(block["toolUseId"], call_id, "{sent}");
}

fn bedrock_image(sent: &Value) {
    assert_eq!(
        sent["messages"][0]["content"][1]["image"]["format"], "png",
        "{sent}"
    );
}

fn vertex_auth(r: &Recorded) {
    let auth = r.header("authorization").unwrap_or_default();
    assert!(auth.starts_with("Bearer ya29.mock-access-token-"), "{auth}");
    assert!(r.header("x-goog-api-key").is_none());
    for (name, value) in &r.headers {
        assert!(
            !value.contains("PRIVATE KEY"),
            "the service account key reached the data plane in {name}"
        );
    }
}

/// Every provider kind, as the default stack configures it.
fn kinds() -> Vec<Kind> {
    let error = |model, status, kind, code, message, retry_after| ErrorCase {
        model,
        messages: HI,
        status,
        kind,
        code,
        message,
        retry_after,
        forwarded: true,
    };
    vec![
        Kind {
            provider: "mock",
            model: "gpt-4o-mini",
            path: CHAT.into(),
            stream_path: CHAT.into(),
            auth: bearer,
            fixtures: None,
            text: "Hello! How can I assist you today?",
            plain: Usage(19, 10, 0),
            stream: Some(Usage(19, 2, 0)),
            stream_extra: json!({}),
            stream_sent: asks_for_usage,
            stream_text: "",
            gated: Some("mock-gated"),
            tool_result_sent: openai_tool_result,
            image_sent: openai_image,
            errors: vec![],
        },
        Kind {
            provider: "azure",
            model: "azure-gpt-4o",
            path: "/openai/deployments/azure-gpt-4o/chat/completions?api-version=2024-10-21".into(),
            stream_path: "/openai/deployments/azure-gpt-4o/chat/completions?api-version=2024-10-21"
                .into(),
            auth: |r| {
                assert_eq!(r.header("api-key"), Some(PROVIDER_KEY));
                assert_eq!(r.header("authorization"), None);
            },
            fixtures: None,
            text: "Hello! How can I help you today?",
            plain: Usage(12, 9, 0),
            stream: Some(Usage(19, 2, 0)),
            stream_extra: json!({}),
            // Streams go the same way, with usage asked for as on OpenAI.
            stream_sent: asks_for_usage,
            stream_text: "",
            gated: None,
            tool_result_sent: openai_tool_result,
            image_sent: openai_image,
            errors: vec![],
        },
        Kind {
            provider: "mistral",
            model: "mistral-small-latest",
            path: "/mistral/v1/chat/completions".into(),
            stream_path: "/mistral/v1/chat/completions".into(),
            auth: bearer,
            fixtures: None,
            text: "Hello! How can I assist you today?",
            plain: Usage(19, 10, 0),
            // Usage rides on Mistral's last chunk and is still accounted.
            stream: Some(Usage(10, 3, 0)),
            // Mistral refuses `seed`, `store`, `user` and `stream_options` (422): the gateway
            // sends `random_seed` and leaves the rest out.
            stream_extra: json!({"seed": 7, "store": true, "user": "u1"}),
            stream_sent: |sent| {
                assert_eq!(sent["random_seed"], 7);
                for gone in ["seed", "store", "user", "stream_options"] {
                    assert!(sent.get(gone).is_none(), "{gone} was sent: {sent}");
                }
            },
            stream_text: "Bonjour",
            gated: None,
            tool_result_sent: openai_tool_result,
            image_sent: openai_image,
            errors: vec![],
        },
        Kind {
            provider: "claude",
            model: "claude-sonnet-4-5",
            path: "/v1/messages".into(),
            stream_path: "/v1/messages".into(),
            auth: |r| {
                assert_eq!(r.header("x-api-key"), Some(PROVIDER_KEY));
                assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(
                    r.header("authorization"),
                    None,
                    "no bearer credential reaches Anthropic"
                );
            },
            fixtures: Some("openai_anthropic"),
            text: "",
            plain: Usage(3195, 503, 1000),
            stream: Some(Usage(25, 15, 0)),
            stream_extra: json!({}),
            stream_sent: |sent| assert_eq!(sent["stream"], true),
            stream_text: "",
            gated: Some("claude-gated"),
            tool_result_sent: anthropic_tool_result,
            image_sent: anthropic_image,
            errors: vec![
                // Anthropic's 529 becomes a status OpenAI clients retry.
                error(
                    "claude-overloaded",
                    503,
                    "server_error",
                    Some("overloaded"),
                    Some("Overloaded"),
                    None,
                ),
                // A rate limit keeps the provider's retry-after.
                error(
                    "claude-rate-limited",
                    429,
                    "rate_limit_error",
                    Some("rate_limit_exceeded"),
                    None,
                    Some("17"),
                ),
            ],
        },
        Kind {
            provider: "gem",
            model: "gemini-2.5-flash",
            path: "/v1beta/models/gemini-2.5-flash:generateContent".into(),
            stream_path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse".into(),
            auth: |r| {
                assert_eq!(r.header("x-goog-api-key"), Some(PROVIDER_KEY));
                assert_eq!(
                    r.header("authorization"),
                    None,
                    "no bearer credential reaches Google"
                );
            },
            fixtures: Some("openai_gemini"),
            text: "",
            plain: Usage(1200, 12, 1024),
            stream: Some(Usage(9, 7, 0)),
            stream_extra: json!({}),
            stream_sent: nothing,
            stream_text: "",
            gated: None,
            tool_result_sent: gemini_tool_result,
            image_sent: gemini_image,
            errors: vec![
                error(
                    "gemini-overloaded",
                    503,
                    "server_error",
                    Some("overloaded"),
                    None,
                    None,
                ),
                // Google's RetryInfo (in the body) reaches the client as retry-after.
                error(
                    "gemini-rate-limited",
                    429,
                    "rate_limit_error",
                    None,
                    None,
                    Some("37"),
                ),
                // Google refuses a bad key with 400 API_KEY_INVALID; OpenAI clients get a 401.
                error(
                    "gemini-with-a-wrong-key",
                    401,
                    "authentication_error",
                    Some("invalid_api_key"),
                    None,
                    None,
                ),
                // What Gemini cannot take is refused by the gateway, before anything is sent.
                ErrorCase {
                    model: "gemini-2.5-flash",
                    messages: r#"[{"role": "tool", "tool_call_id": "x", "content": "1"}]"#,
                    status: 400,
                    kind: "invalid_request_error",
                    code: None,
                    message: Some("no assistant message called"),
                    retry_after: None,
                    forwarded: false,
                },
            ],
        },
        Kind {
            provider: "bedrock",
            model: "anthropic.claude-3-5-sonnet-20240620-v1:0",
            path: "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse".into(),
            stream_path: "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
                .into(),
            // Signed with SigV4 in the filter (the mock recomputes the signature).
            auth: |r| {
                let auth = r.header("authorization").unwrap_or_default();
                assert!(
                    auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAMOCKEXAMPLE/"),
                    "{auth}"
                );
                assert!(auth.contains("/us-east-1/bedrock/aws4_request"));
                assert!(!auth.contains(PROVIDER_KEY), "the secret never travels");
            },
            fixtures: Some("openai_bedrock"),
            text: "",
            plain: Usage(150, 7, 100),
            stream: Some(Usage(12, 3, 0)),
            stream_extra: json!({}),
            stream_sent: nothing,
            stream_text: "",
            gated: None,
            tool_result_sent: bedrock_tool_result,
            image_sent: bedrock_image,
            errors: vec![error(
                "bedrock-throttled",
                429,
                "rate_limit_error",
                None,
                None,
                None,
            )],
        },
        // Vertex AI: the control plane mints access tokens from a service account key (the mock
        // token endpoint checks the signed JWT) and pushes only the tokens to Envoy; Gemini and
        // Claude are reached under Vertex's paths.
        Kind {
            provider: "vertex",
            model: "gemini-2.5-pro",
            path: format!("{VERTEX}/google/models/gemini-2.5-pro:generateContent"),
            stream_path: format!(
                "{VERTEX}/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
            ),
            auth: vertex_auth,
            fixtures: None,
            text: "In the heart of a bustling city, lived a girl named Lily.",
            plain: Usage(1200, 12, 1024),
            stream: Some(Usage(9, 7, 0)),
            stream_extra: json!({}),
            stream_sent: nothing,
            stream_text: "",
            gated: None,
            tool_result_sent: gemini_tool_result,
            image_sent: gemini_image,
            errors: vec![],
        },
        Kind {
            provider: "vertex",
            model: "claude-opus-4-1@20250805",
            path: format!("{VERTEX}/anthropic/models/claude-opus-4-1%4020250805:rawPredict"),
            stream_path: format!(
                "{VERTEX}/anthropic/models/claude-opus-4-1%4020250805:streamRawPredict"
            ),
            auth: vertex_auth,
            fixtures: None,
            text: "Hi! My name is Claude.",
            plain: Usage(3195, 503, 1000),
            stream: Some(Usage(25, 15, 0)),
            stream_extra: json!({}),
            stream_sent: |sent| {
                assert_eq!(sent["anthropic_version"], "vertex-2023-10-16");
                assert!(sent.get("model").is_none(), "{sent}");
            },
            stream_text: "",
            gated: None,
            tool_result_sent: anthropic_tool_result,
            image_sent: anthropic_image,
            errors: vec![],
        },
    ]
}

/// The default stack, with the Vertex models served (the first token minted and pushed).
async fn stack() -> Stack {
    let stack = Stack::start().await;
    stack.wait_ready("gemini-2.5-pro").await;
    stack
}

/// What the providers have been sent so far (token requests left out).
fn sent(stack: &Stack) -> Vec<Recorded> {
    stack
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path != "/token")
        .collect()
}

/// The one request the provider received since `before` requests.
fn sent_once(stack: &Stack, before: usize, kind: &Kind) -> Recorded {
    let sent = sent(stack);
    assert_eq!(
        sent.len(),
        before + 1,
        "{}: one request upstream",
        kind.model
    );
    let r = sent[before].clone();
    assert_eq!(r.header("host"), Some(stack.mock.addr.to_string().as_str()));
    for (name, value) in &r.headers {
        assert!(
            !value.contains(GATEWAY_KEY),
            "{}: gateway key leaked upstream in {name}",
            kind.model
        );
        assert!(
            !name.starts_with("x-switchyard"),
            "{}: internal header {name} leaked upstream",
            kind.model
        );
    }
    (kind.auth)(&r);
    r
}

/// The usage record of the next request for `model` after `before` of them.
async fn next_record(stack: &Stack, model: &str, before: usize) -> Value {
    let records = || {
        usage_records(&stack.envoy.proc.log_text())
            .into_iter()
            .filter(|r| r["model"] == model)
            .collect::<Vec<_>>()
    };
    wait_until(
        &format!("a usage record for {model}"),
        std::time::Duration::from_secs(10),
        || async { records().len() > before },
    )
    .await;
    records().swap_remove(before)
}

fn record_count(stack: &Stack, model: &str) -> usize {
    usage_records(&stack.envoy.proc.log_text())
        .iter()
        .filter(|r| r["model"] == model)
        .count()
}

fn check_usage(record: &Value, kind: &Kind, usage: Usage, stream: bool) {
    let Usage(prompt, completion, cached) = usage;
    assert_eq!(record["provider"], kind.provider, "{record}");
    assert_eq!(record["upstream_model"], kind.model, "{record}");
    assert_eq!(record["prompt_tokens"], prompt, "{}: {record}", kind.model);
    assert_eq!(
        record["completion_tokens"], completion,
        "{}: {record}",
        kind.model
    );
    assert_eq!(record["total_tokens"], prompt + completion, "{record}");
    assert_eq!(record["cached_tokens"], cached, "{}: {record}", kind.model);
    assert_eq!(record["stream"], stream, "{record}");
    assert_eq!(record["complete"], true, "{record}");
    assert_eq!(record["status"], 200, "{record}");
    assert_eq!(record["user"], "test", "{record}");
}

/// A fixture client request of `case` for this kind (its model replaced by the kind's).
fn client_request(dir: &str, case: &str, model: &str) -> Value {
    let mut request = fixture_json(&format!("{dir}/{case}/client_request.json"));
    request["model"] = json!(model);
    request
}

/// The answer compared with the fixture: `created` is the gateway's clock, and Bedrock's id
/// comes from Envoy's `x-request-id`.
fn matches_fixture(body: Value, mut expected: Value) {
    if body["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-"))
        && expected["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    {
        expected["id"] = body["id"].clone();
    }
    assert_eq!(without_created(body), without_created(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_request_reaches_every_kind_translated_and_comes_back_with_usage() {
    let stack = stack().await;
    for kind in &kinds() {
        let request = match kind.fixtures {
            Some(dir) => client_request(dir, "simple", kind.model),
            None => {
                json!({"model": kind.model, "messages": [{"role": "user", "content": "Hello"}]})
            }
        };
        let (before, records) = (sent(&stack).len(), record_count(&stack, kind.model));
        let resp = stack.post(CHAT, &request).await;
        assert_eq!(resp.status(), 200, "{}", kind.model);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let headers = format!("{:?}", resp.headers());
        let body: Value = resp.json().await.unwrap();
        assert!(!headers.contains(PROVIDER_KEY) && !body.to_string().contains(PROVIDER_KEY));

        let r = sent_once(&stack, before, kind);
        assert_eq!(r.path, kind.path);
        match kind.fixtures {
            Some(dir) => {
                matches_fixture(
                    body,
                    fixture_json(&format!("{dir}/simple/client_response.json")),
                );
                assert_eq!(
                    r.json(),
                    fixture_json(&format!("{dir}/simple/upstream_request.json")),
                    "{}",
                    kind.model
                );
            }
            None => {
                assert_eq!(body["object"], "chat.completion");
                assert_eq!(body["choices"][0]["message"]["content"], kind.text);
                let Usage(prompt, completion, _) = kind.plain;
                assert_eq!(body["usage"]["total_tokens"], prompt + completion, "{body}");
            }
        }
        let record = next_record(&stack, kind.model, records).await;
        check_usage(&record, kind, kind.plain, false);
    }
    // Passed through to an OpenAI-style provider: model and messages as the client sent them.
    let r = sent(&stack)
        .into_iter()
        .find(|r| r.path == CHAT)
        .expect("a request to the OpenAI-style mock");
    assert_eq!(r.json()["model"], "gpt-4o-mini");
    assert_eq!(r.json()["messages"][0]["content"], "Hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_every_kind_arrives_as_openai_chunks_with_its_usage() {
    let stack = stack().await;
    for kind in &kinds() {
        let mut request = json!({"model": kind.model, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Hello"}]});
        if let (Some(request), Some(extra)) =
            (request.as_object_mut(), kind.stream_extra.as_object())
        {
            request.extend(extra.clone());
        }
        let (before, records) = (sent(&stack).len(), record_count(&stack, kind.model));
        let resp = stack.post(CHAT, &request).await;
        assert_eq!(resp.status(), 200, "{}", kind.model);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let body = resp.text().await.unwrap();
        let r = sent_once(&stack, before, kind);
        assert_eq!(r.path, kind.stream_path);
        (kind.stream_sent)(&r.json());
        match kind.fixtures {
            Some(dir) => {
                // Events as the fixture has them (Bedrock's id comes from Envoy's request id).
                let id = sse_events(&body)[0]["id"].clone();
                let expected: Vec<Value> =
                    sse_events(&fixture(&format!("{dir}/stream/client_response.sse")))
                        .into_iter()
                        .map(|mut e| {
                            if e["id"].as_str().is_some_and(|i| i.starts_with("chatcmpl-")) {
                                e["id"] = id.clone();
                            }
                            e
                        })
                        .collect();
                assert_eq!(sse_events(&body), expected, "{}", kind.model);
            }
            None if kind.provider == "mock" => {
                // Byte for byte what the provider sent, the usage chunk the client asked for
                // included.
                assert_eq!(
                    body,
                    CHAT_STREAM.replace("gpt-4o-mini-2024-07-18", kind.model)
                );
            }
            None => assert!(body.ends_with("data: [DONE]\n\n"), "{}: {body}", kind.model),
        }
        assert!(body.contains(kind.stream_text), "{}: {body}", kind.model);
        let events: Vec<&str> = body
            .split("\n\n")
            .filter_map(|e| e.trim().strip_prefix("data: "))
            .collect();
        let usage: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
        if let Some(expected) = kind.stream {
            assert_eq!(
                usage["usage"]["total_tokens"],
                expected.0 + expected.1,
                "{}: {usage}",
                kind.model
            );
            let record = next_record(&stack, kind.model, records).await;
            check_usage(&record, kind, expected, true);
        }
        if let Some(model) = kind.gated {
            unbuffered(&stack, model).await;
        }
    }
}

/// A stream is not buffered: the mock holds everything after the first events of `model`'s
/// stream until the gate opens, so a gateway that buffered would never deliver the first chunk.
async fn unbuffered(stack: &Stack, model: &str) {
    use futures::StreamExt as _;
    let resp = stack
        .post(
            CHAT,
            &json!({"model": model, "stream": true,
                    "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200, "{model}");
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
        .await
        .expect("the first chunk arrives while the provider is still streaming")
        .expect("a chunk")
        .expect("no error");
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    stack.mock.open_gate();
    let mut rest = first.to_vec();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"),
        "{model}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_and_its_result_make_a_round_trip_with_every_kind() {
    let stack = stack().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let question = json!({"role": "user", "content": "What's the weather in Boston?"});
    for kind in &kinds() {
        // The translator's own case first, where it has one.
        if let Some(dir) = kind.fixtures {
            let before = sent(&stack).len();
            let resp = stack
                .post(CHAT, &client_request(dir, "tools", kind.model))
                .await;
            assert_eq!(resp.status(), 200, "{}", kind.model);
            let body: Value = resp.json().await.unwrap();
            matches_fixture(
                body,
                fixture_json(&format!("{dir}/tools/client_response.json")),
            );
            let r = sent_once(&stack, before, kind);
            assert_eq!(
                r.json(),
                fixture_json(&format!("{dir}/tools/upstream_request.json")),
                "{}",
                kind.model
            );
        }
        let resp = stack
            .post(
                CHAT,
                &json!({"model": kind.model, "messages": [question], "tools": tools}),
            )
            .await;
        assert_eq!(resp.status(), 200, "{}", kind.model);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["finish_reason"], "tool_calls",
            "{}: {body}",
            kind.model
        );
        let call = body["choices"][0]["message"]["tool_calls"][0].clone();
        assert_eq!(call["function"]["name"], "get_weather");

        // The client answers the call the OpenAI way; each provider gets it in its own.
        let before = sent(&stack).len();
        let resp = stack
            .post(
                CHAT,
                &json!({"model": kind.model, "tools": tools, "messages": [
                    question,
                    {"role": "assistant", "content": null, "tool_calls": [call.clone()]},
                    {"role": "tool", "tool_call_id": call["id"], "content": "{\"temperature\": 22}"},
                ]}),
            )
            .await;
        assert_eq!(resp.status(), 200, "{}", kind.model);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["finish_reason"], "stop",
            "{}",
            kind.model
        );
        let r = sent_once(&stack, before, kind);
        (kind.tool_result_sent)(&r.json(), call["id"].as_str().unwrap_or_default());
    }
}

/// A 1x1 PNG.
const PIXEL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_reaches_every_kind_in_its_own_shape() {
    let stack = stack().await;
    for kind in &kinds() {
        let before = sent(&stack).len();
        let resp = stack
            .post(
                CHAT,
                &json!({"model": kind.model, "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PIXEL}")}},
                ]}]}),
            )
            .await;
        assert_eq!(resp.status(), 200, "{}", kind.model);
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["choices"][0]["message"]["content"].is_string(),
            "{}: {body}",
            kind.model
        );
        let r = sent_once(&stack, before, kind);
        (kind.image_sent)(&r.json());
        // The translator's own case, where it has one: the request as the fixture has it.
        if let Some(dir) = kind.fixtures.filter(|dir| {
            switchyard_tests::workspace_root()
                .join(format!("tests/fixtures/{dir}/images"))
                .exists()
        }) {
            let before = sent(&stack).len();
            let resp = stack
                .post(CHAT, &client_request(dir, "images", kind.model))
                .await;
            assert_eq!(resp.status(), 200, "{}", kind.model);
            let r = sent_once(&stack, before, kind);
            assert_eq!(
                r.json(),
                fixture_json(&format!("{dir}/images/upstream_request.json")),
                "{}",
                kind.model
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kinds_errors_become_openai_errors() {
    let stack = stack().await;
    for kind in &kinds() {
        for case in &kind.errors {
            let before = sent(&stack).len();
            let messages: Value = serde_json::from_str(case.messages).unwrap();
            let resp = stack
                .post(CHAT, &json!({"model": case.model, "messages": messages}))
                .await;
            assert_eq!(resp.status(), case.status, "{}", case.model);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(retry_after.as_deref(), case.retry_after, "{}", case.model);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["type"], case.kind, "{}: {body}", case.model);
            if let Some(code) = case.code {
                assert_eq!(body["error"]["code"], code, "{}: {body}", case.model);
            }
            if let Some(message) = case.message {
                let text = body["error"]["message"].as_str().unwrap_or_default();
                assert!(text.contains(message), "{}: {body}", case.model);
            }
            let forwarded = sent(&stack).len() - before;
            assert_eq!(forwarded, usize::from(case.forwarded), "{}", case.model);
        }
    }
    // Anthropic has no embeddings: refused before anything is sent.
    let before = sent(&stack).len();
    let resp = stack
        .post(
            "/v1/embeddings",
            &json!({"model": "claude-sonnet-4-5", "input": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_not_supported");
    assert_eq!(sent(&stack).len(), before);
}
