//! Request parsing and splicing, and usage extraction, on arbitrary bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_filter::request::TopLevel;
use switchyard_filter::usage::from_openai_body;

fuzz_target!(|data: &[u8]| {
    let _ = from_openai_body(data);
    let Ok(top) = TopLevel::parse(data) else {
        return;
    };
    let Ok(model) = top.model() else { return };
    for force in [false, true] {
        if let Ok(Some(out)) = top.rewrite_if_needed(&model, "upstream-model", force) {
            // A spliced body is always valid JSON again.
            assert!(serde_json_valid(&out), "splice produced invalid JSON");
        }
    }
});

fn serde_json_valid(bytes: &[u8]) -> bool {
    TopLevel::parse(bytes).is_ok()
}
