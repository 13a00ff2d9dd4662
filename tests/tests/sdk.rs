//! The official OpenAI and Anthropic Python SDKs (`tests/sdk/requirements.txt`, installed into
//! `.venv` by `make`) hold a scripted conversation (`tests/sdk/conversation.py`: plain, streamed,
//! with tools, with a tool result turn, with an image) through the real Envoy with every kind
//! of mock provider. The usage each SDK sees equals the provider's, normalised to that API.

use serde_json::{json, Value};
use switchyard_tests::{workspace_root, Stack, GATEWAY_KEY};

fn converse(stack: &Stack, api: &str, model: &str) -> Value {
    let base_url = match api {
        "anthropic" | "models" => stack.envoy.url(""),
        _ => stack.envoy.url("/v1"),
    };
    let root = workspace_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/sdk/conversation.py"))
        .args([
            "--api",
            api,
            "--base-url",
            &base_url,
            "--key",
            GATEWAY_KEY,
            "--model",
            model,
        ])
        .output()
        .expect("python from .venv (run `make test`, which installs the SDKs)");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{api} SDK with {model}: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "{api} SDK with {model} failed: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// (model, plain (prompt, completion, cached, cache written), stream (the same)) as each
/// provider's fixture reports them, with OpenAI semantics (the prompt includes the cache).
const PROVIDERS: &[(&str, [u64; 4], [u64; 4])] = &[
    ("gpt-4o-mini", [19, 10, 0, 0], [19, 2, 0, 0]),
    ("claude-sonnet-4-5", [3195, 503, 1000, 100], [25, 15, 0, 0]),
    ("gemini-2.5-flash", [1200, 12, 1024, 0], [9, 7, 0, 0]),
    ("azure-gpt-4o", [12, 9, 0, 0], [19, 2, 0, 0]),
    ("mistral-small-latest", [19, 10, 0, 0], [10, 3, 0, 0]),
    (
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        [150, 7, 100, 30],
        [12, 3, 0, 0],
    ),
    // Vertex AI: the Gemini and Anthropic fixtures again, under Vertex's paths and tokens.
    ("gemini-2.5-pro", [1200, 12, 1024, 0], [9, 7, 0, 0]),
    (
        "claude-opus-4-1@20250805",
        [3195, 503, 1000, 100],
        [25, 15, 0, 0],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_converses_with_every_provider_kind() {
    let stack = Stack::start().await;
    stack.wait_ready("gemini-2.5-pro").await;
    for (model, plain, stream) in PROVIDERS {
        let report = tokio::task::block_in_place(|| converse(&stack, "openai", model));
        let usage = |p: &[u64; 4]| json!({"prompt": p[0], "completion": p[1], "cached": p[2]});
        assert_eq!(
            report["plain"]["usage"],
            usage(plain),
            "{model} plain: {report}"
        );
        assert_eq!(
            report["stream"]["usage"],
            usage(stream),
            "{model} stream: {report}"
        );
        assert_eq!(report["tools"]["tool"], "get_weather", "{model}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_converses_with_every_provider_kind() {
    let stack = Stack::start().await;
    stack.wait_ready("gemini-2.5-pro").await;
    for (model, plain, stream) in PROVIDERS {
        let report = tokio::task::block_in_place(|| converse(&stack, "anthropic", model));
        // Anthropic semantics: input leaves out cache reads and writes.
        let usage = |p: &[u64; 4]| json!({"input": p[0] - p[2] - p[3], "output": p[1], "cache_read": p[2], "cache_write": p[3]});
        assert_eq!(
            report["plain"]["usage"],
            usage(plain),
            "{model} plain: {report}"
        );
        assert_eq!(
            report["stream"]["usage"],
            usage(stream),
            "{model} stream: {report}"
        );
        assert_eq!(report["tools"]["tool"], "get_weather", "{model}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_embeds_and_draws_through_every_api() {
    let stack = Stack::start().await;
    // The SDK asks for base64 vectors and decodes them: the values must survive the trip.
    let gemini =
        tokio::task::block_in_place(|| converse(&stack, "embeddings", "gemini-embedding-001"));
    assert_eq!(
        gemini["vectors"],
        json!([[0.0, 0.1, 0.2], [1.0, 1.1, 1.2]].map(|v| v.map(|x: f64| x as f32 as f64)))
    );
    let titan = tokio::task::block_in_place(|| {
        converse(&stack, "embeddings", "amazon.titan-embed-text-v2:0")
    });
    assert_eq!(titan["vectors"], json!([[0.5, 0.5, 0.5, 0.5]]));
    assert_eq!(titan["usage"], json!({"prompt": 5, "total": 5}));
    let cohere =
        tokio::task::block_in_place(|| converse(&stack, "embeddings", "cohere.embed-english-v3"));
    assert_eq!(
        cohere["vectors"],
        json!([[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]])
    );
    let openai =
        tokio::task::block_in_place(|| converse(&stack, "embeddings", "text-embedding-3-small"));
    assert_eq!(openai["usage"], json!({"prompt": 8, "total": 8}));

    let imagen =
        tokio::task::block_in_place(|| converse(&stack, "images", "imagen-4.0-generate-001"));
    assert_eq!(imagen["images"], 1);
    let sent = stack
        .mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(":predict"))
        .expect("Imagen was asked");
    assert_eq!(
        sent.json(),
        json!({"instances": [{"prompt": "A lighthouse at dawn"}],
               "parameters": {"sampleCount": 1, "aspectRatio": "1:1"}})
    );
    let gpt_image = tokio::task::block_in_place(|| converse(&stack, "images", "gpt-image-1"));
    assert_eq!(gpt_image["images"], 1);
    let record = stack.usage_record("gpt-image-1").await;
    assert_eq!(record["prompt_tokens"], 50);
    assert_eq!(record["completion_tokens"], 50);
}

/// The OpenAI SDK streaming `model`: how the stream ended (`raised`: the exception's type).
fn stream_with_sdk(stack: &Stack, model: &str) -> Value {
    let root = workspace_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/sdk/stream_fault.py"))
        .args(["--base-url", &stack.envoy.url("/v1"), "--key", GATEWAY_KEY])
        .args(["--model", model])
        .output()
        .expect("python from .venv");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_raises_on_every_stream_that_breaks_after_its_first_bytes() {
    use switchyard_tests::mock::faulty::Fault;
    let stack = Stack::start().await;
    // A healthy stream ends normally.
    let fine = stream_with_sdk(&stack, "fickle");
    assert_eq!(fine["raised"], Value::Null, "{fine}");
    assert_eq!(fine["text"], "Hello!");
    // Cut by a reset, ended by the provider's error event, or ended cleanly but early: the
    // application gets an exception each time, after the chunks that did arrive.
    for (fault, model) in [
        (Some(Fault::CutStream), "fickle"),
        (Some(Fault::ErrorEvent), "fickle"),
        (None, "mock-truncated"),
    ] {
        if let Some(fault) = fault {
            stack.flaky.set(fault);
        }
        let report = stream_with_sdk(&stack, model);
        assert!(report["raised"].is_string(), "{model} {fault:?}: {report}");
        assert!(report["chunks"].as_u64() >= Some(1), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sdks_list_and_fetch_the_models_a_key_may_use() {
    let stack = Stack::start().await;
    let expected: Value = stack
        .client()
        .get(stack.envoy.url("/v1/models"))
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected: Vec<&str> = expected["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(expected.len() > 10, "{expected:?}");
    let report =
        tokio::task::block_in_place(|| converse(&stack, "models", "claude/claude-sonnet-4-5"));
    assert_eq!(report["openai"], json!(expected));
    assert_eq!(report["anthropic"], json!(expected), "every page, in order");
    assert_eq!(report["openai_one"]["owned_by"], "claude");
    assert_eq!(report["anthropic_one"]["id"], "claude/claude-sonnet-4-5");
}
