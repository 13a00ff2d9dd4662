//! Anthropic clients: the Anthropic -> OpenAI translator, the same chained to Gemini, and the
//! Anthropic pass-through, on arbitrary requests and arbitrary provider answers.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_core::translate::anthropic_openai::AnthropicToOpenAi;
use switchyard_core::translate::anthropic_passthrough::AnthropicPassthrough;
use switchyard_core::translate::openai_gemini::OpenAiToGemini;
use switchyard_core::translate::{Chain, Translator};

const REQUEST: &[u8] =
    br#"{"model":"m","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"x"}]}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let t: Box<dyn Translator> = match which % 3 {
        0 => Box::new(AnthropicToOpenAi::new(true)),
        1 => Box::new(Chain {
            outer: Box::new(AnthropicToOpenAi::new(true)),
            inner: Box::new(OpenAiToGemini::new(0)),
        }),
        _ => Box::new(AnthropicPassthrough::default()),
    };
    common::drive(rest, t, REQUEST, 529);
});
