//! The OpenAI -> Gemini translator on arbitrary requests and arbitrary provider answers.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_core::translate::openai_gemini::OpenAiToGemini;

fuzz_target!(|data: &[u8]| {
    common::drive(
        data,
        Box::new(OpenAiToGemini::new(0)),
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#,
        429,
    );
});
