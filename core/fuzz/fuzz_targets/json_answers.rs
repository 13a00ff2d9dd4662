//! The translators whose answers are whole JSON bodies: embeddings (Gemini, Titan, Cohere) and
//! Imagen, on arbitrary requests and arbitrary provider answers.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_core::translate::embeddings::{EmbeddingApi, Embeddings};
use switchyard_core::translate::images::Imagen;
use switchyard_core::translate::Translator;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (t, request): (Box<dyn Translator>, &[u8]) = match which % 4 {
        0 => (
            Box::new(Embeddings::new(EmbeddingApi::Gemini)),
            br#"{"model":"m","input":["a","b"],"encoding_format":"base64"}"#,
        ),
        1 => (
            Box::new(Embeddings::new(EmbeddingApi::BedrockTitan)),
            br#"{"model":"m","input":"a"}"#,
        ),
        2 => (
            Box::new(Embeddings::new(EmbeddingApi::BedrockCohere)),
            br#"{"model":"m","input":["a"]}"#,
        ),
        _ => (
            Box::new(Imagen::new(0)),
            br#"{"model":"m","prompt":"p","size":"1024x1536"}"#,
        ),
    };
    common::drive(rest, t, request, 429);
});
