//! The OpenAI -> Anthropic translator on arbitrary requests and arbitrary provider answers
//! (JSON and event streams, any status), cut at arbitrary points.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::translate::openai_anthropic::OpenAiToAnthropic;
use switchyard_core::translate::Translator;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut t = OpenAiToAnthropic::new(0);
    if mode & 1 == 0 {
        let _ = t.request_body(rest, "claude-sonnet-4-5");
        return;
    }
    let _ = t.request_body(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#, "m");
    let status = if mode & 2 == 0 { 200 } else { 529 };
    let _ = t.response_headers(status, mode & 4 == 0);
    let cut = usize::from(mode >> 3).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let _ = t.response_body(a, false);
    let _ = t.response_body(b, true);
    let _ = (t.usage(), t.completed());
});
