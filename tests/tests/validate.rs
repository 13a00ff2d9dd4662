//! Envoy's own validation (`envoy --mode validate`) of the bootstrap and of everything the
//! control plane pushes, rendered as one static config.

use std::process::Command;

use switchyard_tests::{default_config, envoy_bin, switchyard_bin, workspace_root, Ports, TempDir};

fn validate(path: &std::path::Path) {
    let out = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "error",
            "-c",
        ])
        .arg(path)
        .output()
        .expect("envoy runs");
    assert!(
        out.status.success(),
        "envoy rejected {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bootstrap_and_pushed_config_pass_envoy_validation() {
    let dir = TempDir::new("validate");
    let mut config = default_config(Ports::pick(), &dir.0, "http://127.0.0.1:9/v1");
    // An https provider too, so the TLS (SNI, CA bundle) cluster shape is validated.
    config = config.replace(
        "models:\n  - name: smart",
        "  - name: tls\n    kind: openai\n    base_url: \"https://api.openai.com/v1\"\n    keys: [{secret: \"sk-not-real\"}]\n    models: [gpt-4o]\nmodels:\n  - name: smart",
    );
    let config_path = dir.0.join("switchyard.yaml");
    std::fs::write(&config_path, config).unwrap();

    let out = Command::new(switchyard_bin())
        .args(["bootstrap", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let bootstrap = dir.0.join("bootstrap.yaml");
    std::fs::write(&bootstrap, &out.stdout).unwrap();
    validate(&bootstrap);

    let rendered = dir.0.join("gateway.pb");
    let out = Command::new(switchyard_bin())
        .args(["render-static", "--config"])
        .arg(&config_path)
        .arg("--out")
        .arg(&rendered)
        .env("SWITCHYARD_ADMIN_TOKEN", "validate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    validate(&rendered);
}

#[test]
fn committed_bootstrap_matches_the_example_config() {
    let root = workspace_root();
    let out = Command::new(switchyard_bin())
        .current_dir(&root)
        .args(["bootstrap", "--config", "switchyard.example.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(root.join("envoy/bootstrap-xds.yaml")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        committed,
        "regenerate with `make bootstrap`"
    );
    validate(&root.join("envoy/bootstrap-xds.yaml"));
}
