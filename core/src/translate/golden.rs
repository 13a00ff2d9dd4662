//! The golden-fixture runner every translator's tests share.
//!
//! A fixture folder (`tests/fixtures/<pair>/<case>/`) holds `client_request.json`,
//! `upstream_request.json`, optionally `upstream_path` (path and query the provider must get),
//! `status` (the provider's HTTP status, 200 when absent) and `client_status` (the status the
//! client must see when it differs), then either `upstream_response.json` and
//! `client_response.json`, or `upstream_response.sse` (or `upstream_response.events.json`, an
//! AWS event stream written as JSON) and `client_response.sse`. Every stream is also fed split
//! at every byte boundary.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ChunkOutcome;
use super::Translator;

pub const CREATED: u64 = 1_700_000_000;

pub fn fixtures(pair: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(pair)
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_opt(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The `data` of each event, parsed (`[DONE]` kept as a string). An event that names itself
/// (`event: x`, as Anthropic's do) must carry the same name as its data's `type`.
pub fn events(bytes: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let field = |name: &str| {
            event
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::to_owned))
        };
        let Some(data) = field("data: ") else {
            panic!("event without data: {event:?}");
        };
        let value = if data == "[DONE]" {
            Value::String(data)
        } else {
            json(data.as_bytes())
        };
        if let Some(name) = field("event: ") {
            assert_eq!(value["type"], name.as_str(), "event name and type differ");
        }
        out.push(value);
    }
    out
}

/// A translator that has seen the case's client request.
pub fn prepared<T: Translator>(case: &Path, make: &impl Fn() -> T, model: &str) -> T {
    let mut t = make();
    t.request_body(&read(&case.join("client_request.json")), model)
        .expect("request translates");
    t
}

/// Feeds `body` cut at `cuts`, returning what the client receives.
pub fn feed(t: &mut impl Translator, body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bounds = cuts.to_vec();
    bounds.push(body.len());
    let mut prev = 0;
    for (i, &b) in bounds.iter().enumerate() {
        let chunk = &body[prev..b];
        match t.response_body(chunk, i == bounds.len() - 1) {
            ChunkOutcome::Unchanged => out.extend_from_slice(chunk),
            ChunkOutcome::Replace(bytes) => out.extend_from_slice(&bytes),
        }
        prev = b;
    }
    out
}

/// The provider's stream: `upstream_response.sse` as it is, or `upstream_response.events.json`
/// (`[{"headers": {...}, "payload": {...}}]`) framed as an AWS event stream.
pub fn stream_body(case: &Path) -> Vec<u8> {
    let sse = case.join("upstream_response.sse");
    if sse.exists() {
        return read(&sse);
    }
    let events = json(&read(&case.join("upstream_response.events.json")));
    let mut out = Vec::new();
    for e in events.as_array().expect("an array of events") {
        let headers: Vec<(&str, &str)> = e["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().expect("string header")))
            .collect();
        let payload = serde_json::to_vec(&e["payload"]).expect("payload");
        out.extend(switchyard_aws::eventstream::encode(&headers, &payload));
    }
    out
}

/// Runs every case of `pair`; returns how many ran.
pub fn run<T: Translator>(pair: &str, model: &str, make: impl Fn() -> T) -> usize {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures(pair))
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let mut t = make();
        let upstream = t
            .request_body(&read(&case.join("client_request.json")), model)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            json(&upstream),
            json(&read(&case.join("upstream_request.json"))),
            "{name}: upstream request"
        );
        if let Some(path) = read_opt(&case.join("upstream_path")) {
            let mut got = String::new();
            t.upstream_path(&mut got);
            assert_eq!(got, path, "{name}: upstream path");
        }
        let status: u32 =
            read_opt(&case.join("status")).map_or(200, |s| s.parse().expect("status"));
        let client_status: Option<u32> =
            read_opt(&case.join("client_status")).map(|s| s.parse().expect("client_status"));
        let json_response = case.join("upstream_response.json");
        if json_response.exists() {
            assert_eq!(
                t.response_headers(status, false),
                client_status,
                "{name}: status"
            );
            let body = read(&json_response);
            let out = feed(&mut t, &body, &[body.len() / 2]);
            assert_eq!(
                json(&out),
                json(&read(&case.join("client_response.json"))),
                "{name}: client response"
            );
            assert!(t.completed(), "{name}: complete");
        } else {
            let body = stream_body(case);
            let expected = events(&read(&case.join("client_response.sse")));
            for cut in 0..=body.len() {
                let mut t = prepared(case, &make, model);
                assert_eq!(
                    t.response_headers(status, true),
                    client_status,
                    "{name}: status"
                );
                let out = feed(&mut t, &body, &[cut]);
                assert_eq!(events(&out), expected, "{name}: stream split at {cut}");
            }
        }
    }
    cases.len()
}
