//! Model management end to end: the mock lists models in each provider's own format (paged for
//! Anthropic and Gemini), the control plane discovers them (on demand and on schedule), and
//! what admins decide (enable, disable, tags, aliases) reaches Envoy's `/v1/models` and its
//! routing within a second.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use switchyard_tests::config::{ApiKey, Discovery, Probes, Provider};
use switchyard_tests::mock::models::Format;
use switchyard_tests::mock::MockOpenAi;
use switchyard_tests::{
    wait_until, wasm_path, Config, ControlPlane, Envoy, Ports, TempDir, GATEWAY_KEY, LIMITED_KEY,
    PROVIDER_KEY,
};

const SECOND: Duration = Duration::from_secs(1);

struct Gateway {
    envoy: Envoy,
    cp: ControlPlane,
    mock: MockOpenAi,
    _dir: TempDir,
}

/// Providers of every kind with a model list, all on the mock; `interval` seconds between
/// scheduled discoveries (0: on demand only).
async fn start(interval: u64, prepare: impl FnOnce(&MockOpenAi)) -> Gateway {
    let dir = TempDir::new("models");
    let mock = MockOpenAi::start(
        PROVIDER_KEY,
        &["gpt-4o-mini", "gpt-4.1", "chat-prod"],
        &["text-embedding-3-small"],
    )
    .await;
    prepare(&mock);
    let ports = Ports::pick();
    let origin = format!("http://{}", mock.addr);
    let bedrock_key = format!(
        "{}:{PROVIDER_KEY}",
        switchyard_tests::mock::bedrock::ACCESS_KEY_ID
    );
    let mut config = Config::new(ports, &dir.0);
    config.gateway.wasm = wasm_path();
    config.probes = Some(Probes {
        interval_secs: 0,
        timeout_secs: None,
    });
    config.discovery = Some(Discovery {
        interval_secs: interval,
        timeout_secs: 5,
    });
    config.providers = vec![
        Provider::new(
            "oai",
            "openai_compatible",
            &format!("{origin}/v1"),
            PROVIDER_KEY,
        )
        .models(&["gpt-4o-mini"]),
        Provider {
            new_models: Some("disabled".into()),
            ..Provider::new("anth", "anthropic", &origin, PROVIDER_KEY)
        },
        Provider::new("anth-backup", "anthropic", &origin, PROVIDER_KEY),
        Provider::new("gem", "gemini", &origin, PROVIDER_KEY),
        Provider::new("az", "azure_openai", &origin, PROVIDER_KEY),
        Provider {
            region: Some("us-east-1".into()),
            ..Provider::new("bed", "bedrock", &origin, &bedrock_key)
        },
    ];
    config.api_keys = vec![
        ApiKey::new("test", GATEWAY_KEY, &["*"]),
        ApiKey::new("narrow", LIMITED_KEY, &["claude-*", "fast"]),
    ];
    let cp = ControlPlane::start(&dir.0, &config, ports).await;
    let envoy = Envoy::start(&dir.0, &cp).await;
    Gateway {
        envoy,
        cp,
        mock,
        _dir: dir,
    }
}

impl Gateway {
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.cp.admin(method, path, body).await
    }

    /// Creates an alias; the status and answer.
    async fn alias(&self, name: &str, target: &str) -> (u16, Value) {
        self.admin(
            Method::POST,
            "/aliases",
            Some(json!({"name": name, "target": target})),
        )
        .await
    }

    async fn discover(&self, provider: &str) -> Value {
        let (status, v) = self
            .admin(
                Method::POST,
                &format!("/providers/{provider}/discover"),
                None,
            )
            .await;
        assert_eq!(status, 200, "discovery of {provider}: {v}");
        v
    }

    /// `/v1/models` with `key`, OpenAI's shape.
    async fn models(&self, key: &str) -> Value {
        reqwest::Client::new()
            .get(self.envoy.url("/v1/models"))
            .bearer_auth(key)
            .send()
            .await
            .expect("models")
            .json()
            .await
            .expect("JSON")
    }

    async fn ids(&self, key: &str) -> Vec<String> {
        ids(&self.models(key).await)
    }

    /// Waits (at most a second) until `/v1/models` satisfies `check`; returns how long it took.
    async fn within_a_second(&self, what: &str, check: impl Fn(&[String]) -> bool) -> Duration {
        wait_until(what, SECOND, || async {
            check(&self.ids(GATEWAY_KEY).await)
        })
        .await
    }

    async fn chat(&self, key: &str, model: &str, tools: bool) -> (u16, Value) {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        if tools {
            body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        }
        let resp = reqwest::Client::new()
            .post(self.envoy.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("chat");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// `GET url` as an Anthropic client sends it.
async fn anthropic_get(url: String) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("x-api-key", GATEWAY_KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("models")
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|m| m == name)
}

fn list_all(mock: &MockOpenAi) {
    mock.list_models(
        Format::OpenAi,
        &["gpt-4o-mini", "gpt-4.1", "text-embedding-3-small"],
    );
    mock.list_models(
        Format::Anthropic,
        &["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"],
    );
    mock.list_models(
        Format::Gemini,
        &["gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001"],
    );
    mock.list_models(Format::Azure, &["chat-prod=gpt-4o"]);
    mock.list_models(
        Format::Bedrock,
        &[
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "amazon.titan-embed-text-v2:0",
        ],
    );
    mock.list_models(
        Format::BedrockProfiles,
        &[
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0=anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0=anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.amazon.titan-embed-text-v2:0=amazon.titan-embed-text-v2:0",
        ],
    );
    mock.set_model_page_size(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_enable_tags_and_aliases_reach_envoy_within_a_second() {
    let gw = start(0, list_all).await;
    wait_until("the static models", Duration::from_secs(10), || async {
        let m = gw.ids(GATEWAY_KEY).await;
        has(&m, "gpt-4o-mini") && has(&m, "oai/gpt-4o-mini")
    })
    .await;
    assert!(!has(&gw.ids(GATEWAY_KEY).await, "gpt-4.1"));

    // Not paged (OpenAI): new models added, the static one now also discovered.
    let change = gw.discover("oai").await;
    assert_eq!(
        change["added"],
        json!(["gpt-4.1", "text-embedding-3-small"])
    );
    assert_eq!(change["updated"], json!(["gpt-4o-mini"]));
    let took = gw
        .within_a_second("discovered OpenAI models", |m| {
            has(m, "gpt-4.1") && has(m, "oai/text-embedding-3-small")
        })
        .await;
    eprintln!("discovery to /v1/models: {took:?}");
    let (status, v) = gw.chat(GATEWAY_KEY, "gpt-4.1", false).await;
    assert_eq!(status, 200, "{v}");

    // Paged (Anthropic, two models a page): all three found, and held back by the provider's
    // policy (new models disabled).
    let change = gw.discover("anth").await;
    assert_eq!(change["listed"], 3);
    let pages: Vec<String> = gw
        .mock
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/v1/models?"))
        .filter(|r| r.header("anthropic-version").is_some())
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        pages,
        [
            "/v1/models?limit=100",
            "/v1/models?limit=100&after_id=claude-opus-4-1"
        ]
    );
    let (_, catalog) = gw.admin(Method::GET, "/providers/anth/models", None).await;
    let anth = catalog["data"].as_array().unwrap();
    assert_eq!(anth.len(), 3);
    assert!(anth
        .iter()
        .all(|m| m["enabled"] == false && m["served"] == false));
    assert_eq!(anth[0]["display_name"], "Claude Haiku 4 5");
    assert_eq!(catalog["discovery"]["ok"], true);

    // The backup lists the same models, enabled: they are served as `anth-backup/...`, and as
    // plain names (only one provider serves them).
    gw.discover("anth-backup").await;
    gw.within_a_second("the backup's models", |m| {
        has(m, "anth-backup/claude-sonnet-4-5") && has(m, "claude-sonnet-4-5")
    })
    .await;

    // Enabling one of anth's: now two providers serve `claude-sonnet-4-5`, so the plain name is
    // ambiguous and goes; `anth/claude-sonnet-4-5` comes.
    let (status, v) = gw
        .admin(
            Method::PATCH,
            "/providers/anth/models/claude-sonnet-4-5",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!((status, &v["served"]), (200, &json!(true)), "{v}");
    gw.within_a_second("anth's enabled model", |m| {
        has(m, "anth/claude-sonnet-4-5") && !has(m, "claude-sonnet-4-5")
    })
    .await;

    // A glob alias gives the plain names to anth.
    let (status, v) = gw.alias("claude-*", "anth").await;
    assert_eq!(status, 201, "{v}");
    gw.within_a_second("the glob alias", |m| has(m, "claude-sonnet-4-5"))
        .await;
    let (status, v) = gw.chat(GATEWAY_KEY, "claude-sonnet-4-5", false).await;
    assert_eq!(status, 200, "{v}");
    let last = gw.mock.requests().last().cloned().expect("a request");
    assert_eq!(last.path, "/v1/messages", "anth (Anthropic) served it");

    // An exact alias, and a key scoped to `claude-*` and `fast` sees just those.
    let (status, v) = gw.alias("fast", "oai/gpt-4o-mini").await;
    assert_eq!(status, 201, "{v}");
    gw.within_a_second("the alias", |m| has(m, "fast")).await;
    let (status, v) = gw.chat(GATEWAY_KEY, "fast", false).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        gw.mock.requests().last().expect("a request").json()["model"],
        "gpt-4o-mini"
    );
    assert_eq!(
        gw.ids(LIMITED_KEY).await,
        [
            "claude-haiku-4-5",
            "claude-opus-4-1",
            "claude-sonnet-4-5",
            "fast"
        ],
        "a key lists exactly what it may use (anth's other models, disabled, still come from \
         the backup)"
    );
    // Aliases that would hide a mistake are refused.
    for (name, target) in [
        ("typo", "oai/gpt-5-nonexistent"),
        ("gpt-*", "no-such-provider"),
        ("*", "oai"),
        ("fast", "gpt-4.1"),
    ] {
        let (status, v) = gw.alias(name, target).await;
        assert!(
            status == 400 || status == 409,
            "{name} -> {target}: {status} {v}"
        );
        assert!(v["error"]["message"].is_string());
    }

    // Disabling: gone from the list and from routing.
    gw.admin(
        Method::PATCH,
        "/providers/oai/models/gpt-4.1",
        Some(json!({"enabled": false})),
    )
    .await;
    gw.within_a_second("gpt-4.1 disabled", |m| {
        !has(m, "gpt-4.1") && !has(m, "oai/gpt-4.1")
    })
    .await;
    let (status, v) = gw.chat(GATEWAY_KEY, "gpt-4.1", false).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("model_not_found"))
    );

    // Paged (Gemini): tags from the provider's metadata, then an admin's override, which also
    // steers routing (a request with tools is refused when the model takes none).
    let change = gw.discover("gem").await;
    assert_eq!(change["listed"], 3);
    let gemini_pages = gw
        .mock
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1beta/models?"))
        .count();
    assert_eq!(gemini_pages, 2);
    gw.within_a_second("Gemini's models", |m| has(m, "gemini-2.5-flash"))
        .await;
    let card = |list: &Value, id: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let flash = card(&gw.models(GATEWAY_KEY).await, "gemini-2.5-flash");
    assert_eq!(flash["owned_by"], "gem");
    assert_eq!(flash["object"], "model");
    assert_eq!(flash["context_window"], 1_048_576);
    assert_eq!(
        flash["capabilities"],
        json!(["chat", "vision", "function_calling", "reasoning"])
    );
    assert_eq!(
        card(&gw.models(GATEWAY_KEY).await, "gemini-embedding-001")["capabilities"],
        json!(["embeddings"])
    );
    let (status, v) = gw
        .admin(
            Method::PATCH,
            "/providers/gem/models/gemini-2.5-flash",
            Some(json!({"tags": ["chat", "reasoning"], "context_window": 32000})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["tags_overridden"], true);
    wait_until("the tag override in /v1/models", SECOND, || async {
        card(&gw.models(GATEWAY_KEY).await, "gemini-2.5-flash")["capabilities"]
            == json!(["chat", "reasoning"])
    })
    .await;
    assert_eq!(
        card(&gw.models(GATEWAY_KEY).await, "gemini-2.5-flash")["context_window"],
        32000
    );
    let (status, v) = gw.chat(GATEWAY_KEY, "gemini-2.5-flash", true).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("model_not_capable")),
        "{v}"
    );
    let (status, v) = gw.chat(GATEWAY_KEY, "gemini-2.5-flash", false).await;
    assert_eq!(status, 200, "{v}");

    // Azure deployments and Bedrock's lists (signed with SigV4): the foundation models invoked
    // by their own id, and the inference profiles (two pages), which carry their model's tags.
    assert_eq!(gw.discover("az").await["added"], json!(["chat-prod"]));
    let (_, az) = gw.admin(Method::GET, "/providers/az/models", None).await;
    assert_eq!(az["data"][0]["base_model"], "gpt-4o");
    assert_eq!(gw.discover("bed").await["listed"], 4);
    let profile_pages: Vec<String> = gw
        .mock
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/inference-profiles"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(profile_pages.len(), 2, "{profile_pages:?}");
    assert!(
        profile_pages[1].contains("&nextToken=") && profile_pages[1].contains("%2B"),
        "the token, encoded as SigV4 signs it: {profile_pages:?}"
    );
    gw.within_a_second("deployments and Bedrock models", |m| {
        has(m, "chat-prod")
            && has(m, "bed/amazon.titan-embed-text-v2:0")
            && has(m, "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
            && !has(m, "anthropic.claude-sonnet-4-5-20250929-v1:0")
    })
    .await;
    let profile = card(
        &gw.models(GATEWAY_KEY).await,
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    );
    assert_eq!(
        profile["capabilities"],
        json!(["chat", "vision", "function_calling", "reasoning"])
    );
    let (status, v) = gw.chat(GATEWAY_KEY, "chat-prod", false).await;
    assert_eq!(status, 200, "{v}");

    // Anthropic clients get Anthropic's shape and paging, with the same models.
    let all = gw.ids(GATEWAY_KEY).await;
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = gw.envoy.url("/v1/models?limit=4");
        if let Some(a) = &after {
            url.push_str(&format!("&after_id={a}"));
        }
        let page: Value = anthropic_get(url).await.json().await.unwrap();
        assert!(page["data"].as_array().unwrap().len() <= 4);
        assert!(page["data"][0]["type"] == "model", "{page}");
        paged.extend(ids(&page));
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().map(str::to_owned);
    }
    assert_eq!(paged, all);
    let one: Value = anthropic_get(gw.envoy.url("/v1/models/anth%2Fclaude-sonnet-4-5"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&one["type"], &one["id"], &one["display_name"]),
        (
            &json!("model"),
            &json!("anth/claude-sonnet-4-5"),
            &json!("Claude Sonnet 4 5")
        )
    );
    let missing = anthropic_get(gw.envoy.url("/v1/models/gpt-4.1")).await;
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(
        missing["type"], "error",
        "Anthropic's error shape: {missing}"
    );
    assert_eq!(missing["error"]["type"], "not_found_error");

    // Vanished: no longer listed, marked (not deleted) and no longer served.
    gw.mock
        .list_models(Format::OpenAi, &["gpt-4o-mini", "gpt-4.1"]);
    let change = gw.discover("oai").await;
    assert_eq!(change["vanished"], json!(["text-embedding-3-small"]));
    gw.within_a_second("the vanished model gone", |m| {
        !has(m, "oai/text-embedding-3-small")
    })
    .await;
    let (_, catalog) = gw.admin(Method::GET, "/providers/oai/models", None).await;
    let gone = catalog["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "text-embedding-3-small")
        .cloned()
        .expect("kept");
    assert!(gone["vanished_at"].is_i64() && gone["served"] == false);
    // And gpt-4.1, still listed, stays disabled as the admin left it.
    assert!(!has(&gw.ids(GATEWAY_KEY).await, "gpt-4.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_discovery_finds_new_models_and_a_failing_list_changes_nothing() {
    let gw = start(1, |mock| {
        mock.list_models(Format::OpenAi, &["gpt-4o-mini"]);
    })
    .await;
    // A new model appears at the provider: the next scheduled listing serves it.
    gw.mock
        .list_models(Format::OpenAi, &["gpt-4o-mini", "gpt-4.1"]);
    wait_until(
        "the scheduled discovery",
        Duration::from_secs(5),
        || async { has(&gw.ids(GATEWAY_KEY).await, "gpt-4.1") },
    )
    .await;
    // The provider's list fails: nothing is marked vanished, everything stays served.
    gw.mock.fail_model_lists(true);
    wait_until("a failed listing", Duration::from_secs(5), || async {
        let (_, v) = gw.admin(Method::GET, "/providers/oai/models", None).await;
        v["discovery"]["ok"] == false
    })
    .await;
    let (status, v) = gw
        .admin(Method::POST, "/providers/oai/discover", None)
        .await;
    assert_eq!(status, 502, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("500"),
        "{v}"
    );
    assert!(
        !v.to_string().contains(PROVIDER_KEY),
        "no provider key in errors"
    );
    let (_, v) = gw.admin(Method::GET, "/providers/oai/models", None).await;
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["vanished_at"].is_null()));
    assert!(has(&gw.ids(GATEWAY_KEY).await, "gpt-4.1"));
    let failed = gw
        .cp
        .metric("switchyard_cp_model_discoveries_total{outcome=\"failed\"}")
        .await
        .unwrap_or(0);
    assert!(failed >= 1);
    assert!(!gw.cp.proc.log_text().contains(PROVIDER_KEY));
}
