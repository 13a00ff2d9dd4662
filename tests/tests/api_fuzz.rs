//! The admin API against its own OpenAPI document: schemathesis (from PyPI, in the test venv)
//! generates requests from the document (edge cases, then random ones, then sequences that
//! follow links) and checks that none gets a 5xx, as the admin token, as a signed-in user and
//! without credentials. Bounded by examples per operation.

use std::process::Command;

use serde_json::{json, Value};
use switchyard_tests::{default_config, workspace_root, ControlPlane, Ports, TempDir, ADMIN_TOKEN};

fn schemathesis(cp: &ControlPlane, token: Option<&str>, examples: u32) -> String {
    let bin = workspace_root().join(".venv/bin/schemathesis");
    assert!(
        bin.exists(),
        "schemathesis is not installed: run `make sdk`"
    );
    let base = format!("http://127.0.0.1:{}", cp.ports.admin);
    // Listing a provider's models asks the provider, which is unreachable here: that answer is
    // a documented 502 (the provider's fault, not the control plane's).
    let dir = cp.config.parent().expect("the test dir");
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        "[[operations]]\ninclude-path-regex = \"/discover$\"\n\
         checks.not_a_server_error.expected-statuses = [\"2xx\", \"3xx\", \"4xx\", 502]\n",
    )
    .expect("schemathesis config");
    let mut cmd = Command::new(bin);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/admin/v1/openapi.json"))
        .args(["--url", &base])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--request-timeout", "10"])
        .arg("--no-color")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // Its cache (`.schemathesis/`) goes with the control plane's files, not into the tree.
        .current_dir(dir);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.output().expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzing_the_admin_api_from_its_document_finds_no_5xx() {
    let dir = TempDir::new("fuzz");
    let ports = Ports::pick();
    let config = default_config(ports, &dir.0, "http://127.0.0.1:9/v1");
    let mut cp = ControlPlane::start(&dir.0, &config, ports).await;
    let http = reqwest::Client::new();

    // The document lists the routes under /admin/v1 and is valid JSON.
    let doc: Value = http
        .get(cp.admin_url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"].as_object().unwrap().len() >= 30);

    let admin = tokio::task::block_in_place(|| schemathesis(&cp, Some(ADMIN_TOKEN), 40));
    assert!(admin.contains("passed"), "{admin}");

    // A user's turn: created after the admin run (which may have made or broken others).
    let status = http
        .post(cp.admin_url("/users"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "fuzz-user", "password": "a long fuzz password"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    let tokens: Value = http
        .post(cp.admin_url("/auth/login"))
        .json(&json!({"login": "fuzz-user", "password": "a long fuzz password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"]
        .as_str()
        .expect("signed in")
        .to_owned();
    tokio::task::block_in_place(|| schemathesis(&cp, Some(&access), 25));
    tokio::task::block_in_place(|| schemathesis(&cp, None, 10));

    let log = cp.proc.log_text();
    assert!(
        !log.contains("panicked"),
        "the control plane panicked:\n{log}"
    );
    assert!(!log.contains("internal error"), "internal errors:\n{log}");
    cp.stop();
}
