//! The AWS event-stream decoder on arbitrary bytes cut at an arbitrary point (it must never
//! panic, and a stream that decodes whole decodes the same cut), and the OpenAI -> Bedrock
//! translator on arbitrary requests and provider answers.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_aws::eventstream::Decoder;
use switchyard_core::translate::openai_bedrock::OpenAiToBedrock;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 0x80 == 0 {
        let mut whole = Vec::new();
        let whole_ok = Decoder::default().feed(rest, |m| whole.push(m)).is_ok();
        let cut = usize::from(mode).min(rest.len());
        let mut parts = Vec::new();
        let mut d = Decoder::default();
        let ok = d.feed(&rest[..cut], |m| parts.push(m)).is_ok()
            && d.feed(&rest[cut..], |m| parts.push(m)).is_ok();
        if whole_ok {
            assert!(ok);
            assert_eq!(whole, parts);
        }
        return;
    }
    common::drive(
        rest,
        Box::new(OpenAiToBedrock::new(0, "fuzz")),
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#,
        429,
    );
});
