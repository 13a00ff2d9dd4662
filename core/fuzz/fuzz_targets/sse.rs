//! The SSE splitter and the OpenAI pass-through converter on arbitrary bytes cut at arbitrary points.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::sse::EventSplitter;
use switchyard_core::translate::openai_passthrough::OpenAiPassthrough;
use switchyard_core::translate::{ChunkOutcome, Translator};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(body.len());
    let (a, b) = body.split_at(cut);

    // Whole events plus what is pending is exactly the input, whatever the cut.
    let mut splitter = EventSplitter::default();
    let mut seen = Vec::new();
    splitter.feed(a, |e| seen.extend_from_slice(e));
    splitter.feed(b, |e| seen.extend_from_slice(e));
    seen.extend_from_slice(&splitter.take_pending());
    assert_eq!(seen, body);

    for wants_usage in [false, true] {
        let mut stream = OpenAiPassthrough::new(wants_usage);
        stream.response_headers(200, true);
        for (chunk, last) in [(a, false), (b, true)] {
            if let ChunkOutcome::Replace(out) = stream.response_body(chunk, last) {
                let _ = out.len();
            }
        }
        let _ = stream.usage();
    }
});
