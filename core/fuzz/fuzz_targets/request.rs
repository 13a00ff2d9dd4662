//! Request parsing and splicing (with and without a preset's quirks), capability detection, and
//! usage extraction (whole, and scanned chunk by chunk at any cut) on arbitrary bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::config::Quirks;
use switchyard_core::request::TopLevel;
use switchyard_core::usage::{estimate_streamed_tokens, from_openai_body, FieldScan};

fuzz_target!(|data: &[u8]| {
    let _ = from_openai_body(data);
    let _ = estimate_streamed_tokens(data);
    // The scan finds the same value wherever the body is cut.
    let whole = {
        let mut s = FieldScan::new("usage");
        s.feed(data);
        s.value().map(<[u8]>::to_vec)
    };
    let cut = data.first().map_or(0, |&c| usize::from(c)).min(data.len());
    let mut split = FieldScan::new("usage");
    split.feed(&data[..cut]);
    split.feed(&data[cut..]);
    assert_eq!(split.value().map(<[u8]>::to_vec), whole, "scan depends on the cut");
    let Ok(top) = TopLevel::parse(data) else {
        return;
    };
    let _ = top.needs();
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
