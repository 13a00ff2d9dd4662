//! Envoy's own validation (`envoy --mode validate`) of the bootstrap and of everything the
//! control plane pushes, rendered as one static config.

use std::process::Command;

use switchyard_tests::config::Provider;
use switchyard_tests::{
    bootstrap_text, dataplane_key, default_config, envoy_bin, switchyard_bin, workspace_root,
    Ports, TempDir,
};

/// Envoy's verdict on a config: `Ok`, or what it printed.
fn envoy_validate(path: &std::path::Path, dataplane_key: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(envoy_bin());
    // From the checkout's root, as `make run` starts Envoy: the committed bootstrap names the
    // filter by a path relative to it (and Envoy loads a native filter while validating).
    cmd.current_dir(workspace_root());
    cmd.env_remove("SWITCHYARD_DATAPLANE_KEY");
    if let Some(k) = dataplane_key {
        cmd.env("SWITCHYARD_DATAPLANE_KEY", k);
    }
    let out = cmd
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
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn validate(path: &std::path::Path, dataplane_key: Option<&str>) {
    if let Err(e) = envoy_validate(path, dataplane_key) {
        panic!("envoy rejected {}:\n{e}", path.display());
    }
}

/// Runs the control plane binary with `args` (in `dir` when given) and returns its stdout.
fn switchyard(args: &[&std::ffi::OsStr], dir: Option<&std::path::Path>) -> Vec<u8> {
    let mut cmd = Command::new(switchyard_bin());
    cmd.args(args).env("SWITCHYARD_ADMIN_TOKEN", "validate");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.output().expect("switchyard runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn bootstrap_and_pushed_config_pass_envoy_validation() {
    let dir = TempDir::new("validate");
    let mut config = default_config(Ports::pick(), &dir.0, "http://127.0.0.1:9/v1");
    // An https provider too, so the TLS (SNI, CA bundle) cluster shape is validated.
    config.providers.push(
        Provider::new("tls", "openai", "https://api.openai.com/v1", "sk-not-real")
            .models(&["gpt-4o"]),
    );
    let config_path = dir.0.join("switchyard.yaml");
    config.write(&config_path);

    // Over TCP: mutual TLS, the node's certificate files (SDS) written beside it; without a
    // directory for them there is no bootstrap.
    let refused = Command::new(switchyard_bin())
        .args(["bootstrap", "--config"])
        .arg(&config_path)
        .output()
        .expect("switchyard runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--certs-dir"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let bootstrap = dir.0.join("bootstrap.yaml");
    let yaml = bootstrap_text(&config_path, "validate", &dir.0.join("certs"));
    std::fs::write(&bootstrap, yaml).unwrap();
    validate(&bootstrap, None);

    let rendered = dir.0.join("gateway.pb");
    switchyard(
        &[
            "render-static".as_ref(),
            "--config".as_ref(),
            config_path.as_os_str(),
            "--out".as_ref(),
            rendered.as_os_str(),
        ],
        None,
    );
    // Provider keys are sealed: the filter opens them with the data plane key from Envoy's
    // environment, and without it the configuration is refused.
    let key = dataplane_key(&config_path);
    validate(&rendered, Some(&key));
    let refused = envoy_validate(&rendered, None).expect_err("refused without the key");
    assert!(refused.contains("SWITCHYARD_DATAPLANE_KEY"), "{refused}");
    let wrong = "00".repeat(32);
    let refused = envoy_validate(&rendered, Some(&wrong)).expect_err("refused with another key");
    assert!(refused.contains("does not open"), "{refused}");
}

#[test]
fn committed_bootstrap_matches_the_example_config() {
    let root = workspace_root();
    let generated = switchyard(
        &[
            "bootstrap".as_ref(),
            "--config".as_ref(),
            "switchyard.example.yaml".as_ref(),
        ],
        Some(&root),
    );
    let committed = std::fs::read_to_string(root.join("envoy/bootstrap-xds.yaml")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&generated),
        committed,
        "regenerate with `make bootstrap`"
    );
    validate(&root.join("envoy/bootstrap-xds.yaml"), None);
}
