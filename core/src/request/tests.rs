//! The top-level parse, its bounds, splicing and endpoint classification, table-tested.

use super::*;
use serde_json::{json, Value};

fn rewrite(body: &str, model: &str, force: bool) -> Value {
    let top = TopLevel::parse(body.as_bytes()).expect("parses");
    serde_json::from_slice(&top.rewrite(model, force, &Quirks::default())).expect("valid json out")
}

#[test]
fn endpoints_from_paths() {
    assert_eq!(
        Endpoint::from_path("/v1/chat/completions"),
        Some(Endpoint::ChatCompletions)
    );
    assert_eq!(
        Endpoint::from_path("/v1/chat/completions?x=1"),
        Some(Endpoint::ChatCompletions)
    );
    assert_eq!(Endpoint::from_path("/v1/models/"), Some(Endpoint::Models));
    assert_eq!(
        Endpoint::from_path("/v1/models/anthropic/claude-x?x=1"),
        Some(Endpoint::Models)
    );
    assert_eq!(Endpoint::from_path("/v1/modelsx"), None);
    assert_eq!(
        Endpoint::from_path("/v1/embeddings"),
        Some(Endpoint::Embeddings)
    );
    assert_eq!(Endpoint::from_path("/v2/chat"), None);
}

#[test]
fn model_is_replaced_and_everything_else_kept_verbatim() {
    let body = r#"{"model":"smart","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"temperature":0.25}"#;
    let top = TopLevel::parse(body.as_bytes()).expect("parses");
    let out = String::from_utf8(top.rewrite("gpt-4o", false, &Quirks::default())).expect("utf8");
    assert_eq!(
        out,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"temperature":0.25}"#
    );
}

#[test]
fn stream_usage_is_forced_and_other_options_kept() {
    let v = rewrite(r#"{"model":"m","stream":true}"#, "u", true);
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    let v = rewrite(
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false}}"#,
        "u",
        true,
    );
    assert_eq!(
        v["stream_options"],
        json!({"include_usage": true, "include_obfuscation": false})
    );
    let v = rewrite(r#"{"model":"m","stream_options":null}"#, "u", true);
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
}

#[test]
fn unchanged_bodies_are_not_rewritten() {
    let top = TopLevel::parse(br#"{"model":"gpt-4o","messages":[]}"#).expect("parses");
    assert_eq!(
        top.rewrite_if_needed("gpt-4o", "gpt-4o", false, &Quirks::default())
            .expect("ok"),
        None
    );
    assert!(top
        .rewrite_if_needed("smart", "gpt-4o", false, &Quirks::default())
        .expect("ok")
        .is_some());
    assert!(top
        .rewrite_if_needed("gpt-4o", "gpt-4o", true, &Quirks::default())
        .expect("ok")
        .is_some());
    let asked = TopLevel::parse(
        br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .expect("parses");
    assert_eq!(
        asked
            .rewrite_if_needed("gpt-4o", "gpt-4o", true, &Quirks::default())
            .expect("ok"),
        None
    );
}

#[test]
fn upstream_paths_follow_the_provider_style() {
    let mut p: Provider = serde_json::from_value(json!({
        "name": "az", "kind": "azure_openai", "cluster": "c", "authority": "a",
        "path_prefix": "", "auth_header": "api-key",
        "path_style": "azure_deployment", "query": "api-version=2024-10-21"
    }))
    .expect("provider");
    let path = |p: &Provider, e: Endpoint, m: &str| {
        let mut out = String::new();
        e.upstream_path(p, m, &mut out);
        out
    };
    assert_eq!(
        path(&p, Endpoint::ChatCompletions, "my gpt/4o"),
        "/openai/deployments/my%20gpt%2F4o/chat/completions?api-version=2024-10-21"
    );
    p.path_style = PathStyle::Openai;
    p.query.clear();
    p.path_prefix = "/openai/v1".into();
    assert_eq!(path(&p, Endpoint::Embeddings, "m"), "/openai/v1/embeddings");
}

#[test]
fn quirks_drop_and_rename_fields() {
    let quirks = Quirks {
        drop: vec!["store".into(), "stream_options".into()],
        rename: vec![("seed".into(), "random_seed".into())],
        stream_usage: false,
    };
    let top = TopLevel::parse(
        br#"{"model":"m","seed":7,"store":true,"stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .expect("parses");
    let out = top
        .rewrite_if_needed("m", "m", false, &quirks)
        .expect("ok")
        .expect("rewritten: the quirks apply");
    assert_eq!(
        String::from_utf8(out).expect("utf8"),
        r#"{"model":"m","random_seed":7,"stream":true}"#
    );
    // The provider's own name, when the client already used it, wins over the renamed one.
    let both = TopLevel::parse(br#"{"model":"m","seed":1,"random_seed":2}"#).expect("parses");
    let v: Value =
        serde_json::from_slice(&both.rewrite("m", false, &quirks)).expect("valid json out");
    assert_eq!(v, json!({"model": "m", "random_seed": 2}));
    // A body the quirks do not touch is still sent as it came.
    let plain = TopLevel::parse(br#"{"model":"m","messages":[]}"#).expect("parses");
    assert_eq!(
        plain
            .rewrite_if_needed("m", "m", false, &quirks)
            .expect("ok"),
        None
    );
}

#[test]
fn fields_are_validated() {
    let err = |body: &str| match TopLevel::parse(body.as_bytes()) {
        Err(e) => e,
        Ok(top) => top
            .model()
            .and_then(|_| top.flag("stream"))
            .and_then(|_| top.stream_usage_requested())
            .map(|_| ())
            .expect_err("should fail"),
    };
    assert_eq!(err("").code, "invalid_json");
    assert_eq!(err("{").code, "invalid_json");
    assert_eq!(err("[1]").code, "invalid_json");
    assert_eq!(err(r#"{"model":"a","model":"b"}"#).code, "invalid_json");
    assert_eq!(err(r#"{"messages":[]}"#).code, "missing_model");
    assert_eq!(err(r#"{"model":5}"#).code, "invalid_model");
    assert_eq!(err(r#"{"model":"a\r\nb"}"#).code, "invalid_model");
    assert_eq!(
        err(r#"{"model":"ok","stream":"yes"}"#).code,
        "invalid_field"
    );
    assert_eq!(
        err(r#"{"model":"ok","stream_options":3}"#).code,
        "invalid_field"
    );
    let invalid_utf8 = b"{\"model\":\"\xff\"}";
    assert_eq!(
        TopLevel::parse(invalid_utf8).err().map(|e| e.code),
        Some("invalid_json")
    );
}

#[test]
fn escaped_keys_and_models_are_understood() {
    let top = TopLevel::parse(br#"{"mod\u0065l":"g\u0070t"}"#).expect("parses");
    assert_eq!(top.model().expect("model"), "gpt");
}

#[test]
fn needs_are_read_from_tools_and_image_parts() {
    let needs = |body: &str| TopLevel::parse(body.as_bytes()).unwrap().needs();
    assert_eq!(
        needs(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
        0
    );
    assert_eq!(
        needs(r#"{"model":"m","tools":[{"type":"function"}],"messages":[]}"#),
        Capability::FunctionCalling.bit()
    );
    assert_eq!(needs(r#"{"model":"m","tools":[],"messages":[]}"#), 0);
    assert_eq!(
        needs(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:"}}]}]}"#
        ),
        Capability::Vision.bit()
    );
    assert_eq!(
        needs(
            r#"{"model":"m","tools":[{}],"messages":[{"role":"user","content":[{"type": "image","source":{}}]}]}"#
        ),
        Capability::ALL
    );
    // Text that merely mentions images needs nothing.
    assert_eq!(
        needs(r#"{"model":"m","messages":[{"role":"user","content":"an \"image_url\" field"}]}"#),
        0
    );
    // Escapes and spacing do not hide a part (issue 16: capability detection fooled).
    for hidden in [
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"\u0069mage_url","image_url":{"url":"x"}}]}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type" :  "image","source":{}}]}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"t\u0079pe":"image_url"}]}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","content":[{"type":"image"}]}]}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]}"#,
    ] {
        assert_eq!(needs(hidden), Capability::Vision.bit(), "{hidden}");
    }
}

#[test]
fn objects_and_arrays_are_counted_outside_strings() {
    assert!(!containers_over(br#"{"a":[1,{"b":"[{[{"}]}"#, 3));
    assert!(containers_over(br#"{"a":[1,{"b":"x"},{}]}"#, 3));
    assert!(!containers_over(br#"{"a":"\"[[[[","b":"\\"}"#, 1));
    assert!(!containers_over(br#"{"a":"unterminated [[[["#, 1));
    let many = format!(
        r#"{{"model":"m","messages":[{}]}}"#,
        vec!["{}"; MAX_CONTAINERS].join(",")
    );
    assert_eq!(
        TopLevel::parse(many.as_bytes()).err().map(|e| e.code),
        Some("too_complex")
    );
    let fine = format!(
        r#"{{"model":"m","messages":[{}]}}"#,
        vec!["{}"; MAX_CONTAINERS - 2].join(",")
    );
    assert!(TopLevel::parse(fine.as_bytes()).is_ok());
}

#[test]
fn top_level_fields_are_bounded_and_checked_in_linear_time() {
    let mut body = String::from("{");
    for i in 0..MAX_FIELDS {
        body.push_str(&format!("\"k{i}\":{i},"));
    }
    body.push_str("\"model\":\"m\"}");
    let e = TopLevel::parse(body.as_bytes()).err().expect("refused");
    assert_eq!(e.code, "too_many_fields");
    let mut body = String::from("{");
    for i in 0..MAX_FIELDS - 1 {
        body.push_str(&format!("\"k{i}\":{i},"));
    }
    let fine = format!("{body}\"model\":\"m\"}}");
    assert_eq!(
        TopLevel::parse(fine.as_bytes())
            .expect("parses")
            .get("k7")
            .map(|v| v.get()),
        Some("7")
    );
    // A duplicate far beyond the linear scan, and one written with an escape.
    let late = format!("{body}\"k200\":1}}");
    assert!(TopLevel::parse(late.as_bytes())
        .err()
        .expect("refused")
        .message
        .contains("duplicate"));
    assert!(TopLevel::parse(br#"{"model":"a","mod\u0065l":"b"}"#).is_err());
}
