//! Where the things the tests run are: the workspace, the control plane binary, Envoy, the
//! filter's wasm build and the fixture files.

use std::path::{Path, PathBuf};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The control plane binary (built by `make test` before the tests run).
pub fn switchyard_bin() -> PathBuf {
    let p = std::env::var_os("SWITCHYARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/switchyard"));
    assert!(
        p.exists(),
        "{} missing: run `make test` (or `cargo build -p switchyard`)",
        p.display()
    );
    p
}

pub fn envoy_bin() -> PathBuf {
    let p = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    assert!(p.exists(), "{} missing: run `make envoy`", p.display());
    p
}

pub fn wasm_path() -> PathBuf {
    let p = wasm_path_unchecked();
    assert!(p.exists(), "{} missing: run `make wasm`", p.display());
    p
}

/// Where the filter's build lands, whether it is there or not: the native build (an Envoy
/// dynamic module), unless `SWITCHYARD_TEST_FILTER=wasm` asks for the proxy-wasm one.
pub fn wasm_path_unchecked() -> PathBuf {
    if std::env::var("SWITCHYARD_TEST_FILTER").as_deref() == Ok("wasm") {
        wasm_build_path()
    } else {
        native_path()
    }
}

/// Where the native filter's build lands (`make native`).
pub fn native_path() -> PathBuf {
    target_dir().join("release/libswitchyard_native.so")
}

/// Where the proxy-wasm filter's build lands (`make wasm`).
pub fn wasm_build_path() -> PathBuf {
    target_dir().join("wasm32-wasip1/release/switchyard_filter.wasm")
}

/// A fixture file, by its path below `tests/fixtures/`.
pub fn fixture(path: &str) -> String {
    let full = workspace_root().join("tests/fixtures").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A fixture file parsed as JSON.
pub fn fixture_json(path: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}
