//! OpenAI-style providers that differ from OpenAI, through the real Envoy: Azure OpenAI's
//! deployment URLs and `api-key`, and a preset's quirks (Mistral's field names and list).

use serde_json::{json, Value};
use switchyard_tests::{Stack, GATEWAY_KEY, PROVIDER_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_gets_its_deployment_path_version_and_key() {
    let stack = Stack::start().await;
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "azure-gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
    let r = &stack.mock.requests()[0];
    assert_eq!(
        r.path,
        "/openai/deployments/azure-gpt-4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(r.header("api-key"), Some(PROVIDER_KEY));
    assert_eq!(r.header("authorization"), None);
    for (name, value) in &r.headers {
        assert!(!value.contains(GATEWAY_KEY), "gateway key leaked in {name}");
    }
    let record = stack.usage_record("azure-gpt-4o").await;
    assert_eq!(record["provider"], "azure");
    assert_eq!(record["prompt_tokens"], 12);
    assert_eq!(record["completion_tokens"], 9);

    // Streams go the same way, with usage asked for as on OpenAI.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "azure-gpt-4o", "stream": true, "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(
        stack.mock.requests()[1].json()["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preset_renames_and_drops_what_the_provider_does_not_take() {
    let stack = Stack::start().await;
    // Mistral refuses `seed`, `store`, `user` and `stream_options` (422): the gateway sends
    // `random_seed` and leaves the rest out.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &json!({"model": "mistral-small-latest", "seed": 7, "store": true, "user": "u1",
                    "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "Salut"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Bonjour"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let sent = stack.mock.requests()[0].json();
    assert_eq!(sent["random_seed"], 7);
    for gone in ["seed", "store", "user", "stream_options"] {
        assert!(sent.get(gone).is_none(), "{gone} was sent: {sent}");
    }
    // Usage rides on Mistral's last chunk and is still accounted.
    let record = stack.usage_record("mistral-small-latest").await;
    assert_eq!(record["prompt_tokens"], 10);
    assert_eq!(record["completion_tokens"], 3);
    assert_eq!(record["complete"], true);
}
