//! The SSE splitter and the OpenAI stream handler on arbitrary bytes cut at arbitrary points.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_filter::sse::EventSplitter;
use switchyard_filter::stream::{ChunkOutcome, OpenAiStream};

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
        let mut stream = OpenAiStream::new(wants_usage);
        for (chunk, last) in [(a, false), (b, true)] {
            if let ChunkOutcome::Replace(out) = stream.on_chunk(chunk, last) {
                let _ = out.len();
            }
        }
        let _ = stream.usage();
    }
});
