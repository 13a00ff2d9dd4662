//! The official OpenAI and Anthropic Python SDKs (`tests/sdk/requirements.txt`, installed into
//! `.venv` by `make`) hold a scripted conversation (`tests/sdk/conversation.py`: plain, streamed,
//! with tools, with a tool result turn, with an image) through the real Envoy with every kind
//! of mock provider. The usage each SDK sees equals the provider's, normalised to that API.

use serde_json::{json, Value};
use switchyard_tests::{workspace_root, Stack, GATEWAY_KEY};

fn converse(stack: &Stack, api: &str, model: &str) -> Value {
    let base_url = match api {
        "openai" => stack.envoy.url("/v1"),
        _ => stack.envoy.url(""),
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
