//! Request parsing and splicing (with and without a preset's quirks), and usage extraction, on
//! arbitrary bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_filter::config::Quirks;
use switchyard_filter::request::TopLevel;
use switchyard_filter::usage::from_openai_body;

fuzz_target!(|data: &[u8]| {
    let _ = from_openai_body(data);
    let Ok(top) = TopLevel::parse(data) else {
        return;
    };
    let Ok(model) = top.model() else { return };
    // As for OpenAI itself, and with a preset's quirks (fields dropped and renamed).
    let quirky = Quirks {
        drop: vec!["store".into(), "stream_options".into()],
        rename: vec![("seed".into(), "random_seed".into())],
        stream_usage: false,
    };
    for quirks in [Quirks::default(), quirky] {
        for force in [false, true] {
            if let Ok(Some(out)) = top.rewrite_if_needed(&model, "upstream-model", force, &quirks) {
                // A spliced body is always valid JSON again.
                assert!(serde_json_valid(&out), "splice produced invalid JSON");
            }
        }
    }
});

fn serde_json_valid(bytes: &[u8]) -> bool {
    TopLevel::parse(bytes).is_ok()
}
