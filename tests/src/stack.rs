//! A whole stack wired in order: the mock providers (the strict mock, the fault-injecting
//! `flaky`, an egress proxy), the control plane on [`config_with_flaky`], then Envoy; and what
//! tests do with it (requests with the gateway key, usage records, admin calls).

use std::time::Duration;

use crate::config::{config_with_flaky, Config, Ports};
use crate::control_plane::ControlPlane;
use crate::envoy::{usage_records, Envoy};
use crate::mock::{self, MockOpenAi};
use crate::process::{wait_until, TempDir};
use crate::{GATEWAY_KEY, PROVIDER_KEY};

/// Mock, control plane and Envoy, configured with [`config_with_flaky`].
pub struct Stack {
    pub envoy: Envoy,
    pub cp: ControlPlane,
    pub mock: MockOpenAi,
    /// The fault-injecting provider `flaky` (healthy until told otherwise).
    pub flaky: mock::faulty::Faulty,
    /// The egress proxy provider `proxied` is reached through.
    pub proxy: mock::connect_proxy::ConnectProxy,
    pub dir: TempDir,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    /// Like [`Stack::start`], with the mock set up by `prepare` before anything talks to it.
    pub async fn start_with(prepare: impl FnOnce(&MockOpenAi)) -> Stack {
        Self::start_workers(1, prepare).await
    }

    /// Like [`Stack::start_with`], with Envoy running `workers` worker threads.
    pub async fn start_workers(workers: u32, prepare: impl FnOnce(&MockOpenAi)) -> Stack {
        Self::start_edited(workers, prepare, |_| {}).await
    }

    /// Like [`Stack::start_workers`], with the control plane's config changed by `edit` first.
    pub async fn start_edited(
        workers: u32,
        prepare: impl FnOnce(&MockOpenAi),
        edit: impl FnOnce(&mut Config),
    ) -> Stack {
        let dir = TempDir::new("e2e");
        let flaky = mock::faulty::Faulty::start(PROVIDER_KEY).await;
        let proxy = mock::connect_proxy::ConnectProxy::start().await;
        let mock = MockOpenAi::start(
            PROVIDER_KEY,
            &[
                "gpt-4o-mini",
                "mock-gated",
                "mock-cut",
                "mock-truncated",
                "azure-gpt-4o",
                "mistral-small-latest",
                "mock-metered",
                "mock-keys",
                "mock-slow",
                "mock-held",
                "mock-gzip",
                "mock-proxied",
                "mock-private",
            ],
            &["text-embedding-3-small"],
        )
        .await;
        prepare(&mock);
        let ports = Ports::pick();
        let mut config = config_with_flaky(
            ports,
            &dir.0,
            &mock.base_url(),
            &flaky.base_url(),
            &proxy.addr.to_string(),
        );
        edit(&mut config);
        let cp = ControlPlane::start(&dir.0, &config, ports).await;
        let envoy = Envoy::start_workers(&dir.0, &cp, workers).await;
        Stack {
            envoy,
            cp,
            mock,
            flaky,
            proxy,
            dir,
        }
    }

    /// Waits until `model` is served (a Vertex provider is not until its first token is minted
    /// and has reached Envoy).
    pub async fn wait_ready(&self, model: &str) {
        let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "ready?"}]});
        wait_until(
            &format!("{model} to be served"),
            Duration::from_secs(10),
            || async { self.post("/v1/chat/completions", &body).await.status() != 503 },
        )
        .await;
    }

    /// Waits until the control plane's request log holds every one of `ids`, once each.
    pub async fn wait_logged_once(&self, ids: &std::collections::HashSet<String>) {
        self.wait_logged_once_within(ids, Duration::from_secs(20))
            .await;
    }

    /// [`Stack::wait_logged_once`] within `limit`.
    pub async fn wait_logged_once_within(
        &self,
        ids: &std::collections::HashSet<String>,
        limit: Duration,
    ) {
        wait_until("every record stored", limit, || async {
            let (status, page) = self
                .admin(reqwest::Method::GET, "/requests?limit=1000", None)
                .await;
            assert_eq!(status, 200, "{page}");
            let rows = page["data"].as_array().cloned().unwrap_or_default();
            let logged: Vec<String> = rows
                .iter()
                .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
                .filter(|id| ids.contains(id))
                .collect();
            let unique: std::collections::HashSet<&String> = logged.iter().collect();
            assert_eq!(unique.len(), logged.len(), "a record stored twice");
            logged.len() == ids.len()
        })
        .await;
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// `POST path` with the default gateway key and a JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client()
            .post(self.envoy.url(path))
            .bearer_auth(GATEWAY_KEY)
            .json(body)
            .send()
            .await
            .expect("request through Envoy")
    }

    /// The first usage record the access log shows for requests naming `model`.
    pub async fn usage_record(&self, model: &str) -> serde_json::Value {
        let find = || {
            usage_records(&self.envoy.proc.log_text())
                .into_iter()
                .find(|r| r["model"] == model)
        };
        wait_until(
            "a usage record in Envoy's access log",
            Duration::from_secs(10),
            || async { find().is_some() },
        )
        .await;
        find().unwrap_or_default()
    }

    /// Adds `micros` to `user`'s credit account through the admin API (opening it if needed).
    pub async fn top_up(&self, user: &str, micros: i64) {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/credits/{user}/entries"),
                Some(serde_json::json!({"amount_micros": micros, "kind": "topup"})),
            )
            .await;
        assert_eq!(status, 201, "top-up refused: {body}");
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.cp.admin(method, path, body).await
    }
}
