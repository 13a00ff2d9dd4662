//! OpenAI embeddings (client) to providers with other embedding APIs:
//!
//! - Gemini `batchEmbedContents`: <https://ai.google.dev/api/embeddings#method:-models.batchembedcontents>
//! - Bedrock `InvokeModel` with Amazon Titan Text Embeddings (one input per request) or Cohere
//!   Embed (a batch): <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>,
//!   <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html>
//!
//! The answer is OpenAI's list, with each vector as floats or, when the client asks for
//! `encoding_format: "base64"` (the OpenAI Python SDK's default), as little-endian f32 in base64.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::driver::{ClientApi, Converter, ErrorHints, Event, Framed, Pass, Progress};
use super::openai_bedrock::UNREADABLE;
use super::openai_request::{invalid, parse_request};
use super::schema::openai::OpenAiErrorOut;
use crate::error::FilterError;
use crate::request::push_path_segment;
use crate::usage::Usage;

/// An OpenAI embeddings request.
#[derive(Debug, Deserialize)]
pub struct OpenAiEmbeddingRequest {
    pub input: EmbeddingInput,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub encoding_format: Option<String>,
}

/// Texts only: token-id inputs belong to OpenAI's tokenizer and mean nothing elsewhere.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

impl EmbeddingInput {
    fn texts(self) -> Vec<String> {
        match self {
            EmbeddingInput::One(s) => vec![s],
            EmbeddingInput::Many(v) => v,
        }
    }
}

/// Which embedding API the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingApi {
    Gemini,
    BedrockTitan,
    BedrockCohere,
}

impl EmbeddingApi {
    /// The Bedrock API for a model id, if it is an embedding model Switchyard knows.
    pub fn bedrock(model: &str) -> Option<EmbeddingApi> {
        // Cross-region inference profiles prefix the id with a geography (`us.`, `eu.`).
        let base = model.split_once('.').map_or(model, |(head, rest)| {
            if head.len() == 2 || head == "apac" {
                rest
            } else {
                model
            }
        });
        if base.starts_with("amazon.titan-embed") {
            Some(EmbeddingApi::BedrockTitan)
        } else if base.starts_with("cohere.embed") {
            Some(EmbeddingApi::BedrockCohere)
        } else {
            None
        }
    }
}

/// One embeddings request from an OpenAI client.
pub type Embeddings = Framed<OpenAiEmbeddings>;

/// The conversion of one embeddings request from an OpenAI client.
#[derive(Debug)]
pub struct OpenAiEmbeddings {
    api: EmbeddingApi,
    model: String,
    base64: bool,
}

impl Embeddings {
    pub fn new(api: EmbeddingApi) -> Self {
        Framed::around(OpenAiEmbeddings {
            api,
            model: String::new(),
            base64: false,
        })
    }
}

/// The provider's request body.
pub fn request(
    api: EmbeddingApi,
    req: OpenAiEmbeddingRequest,
    model: &str,
) -> Result<Value, FilterError> {
    let texts = req.input.texts();
    if texts.is_empty() {
        return Err(invalid("`input` must not be empty"));
    }
    Ok(match api {
        EmbeddingApi::Gemini => {
            let name = format!("models/{model}");
            let requests: Vec<Value> = texts
                .into_iter()
                .map(|text| {
                    let mut r = json!({"model": name, "content": {"parts": [{"text": text}]}});
                    if let Some(d) = req.dimensions {
                        r["outputDimensionality"] = json!(d);
                    }
                    r
                })
                .collect();
            json!({ "requests": requests })
        }
        EmbeddingApi::BedrockTitan => {
            let [text] = <[String; 1]>::try_from(texts).map_err(|_| {
                invalid("this model embeds one input per request; send `input` as one string")
            })?;
            let mut body = json!({ "inputText": text });
            if let Some(d) = req.dimensions {
                body["dimensions"] = json!(d);
            }
            body
        }
        EmbeddingApi::BedrockCohere => {
            if req.dimensions.is_some() {
                return Err(invalid("`dimensions` is not supported by this model"));
            }
            json!({"texts": texts, "input_type": "search_document", "embedding_types": ["float"]})
        }
    })
}

/// The vectors (and input tokens, where the provider counts them) of a provider's answer.
fn vectors(api: EmbeddingApi, body: &[u8]) -> Option<(Vec<Vec<f32>>, u64)> {
    #[derive(Deserialize)]
    struct GeminiValues {
        values: Vec<f32>,
    }
    #[derive(Deserialize)]
    struct Gemini {
        embeddings: Vec<GeminiValues>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Titan {
        embedding: Vec<f32>,
        #[serde(default)]
        input_text_token_count: u64,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum CohereEmbeddings {
        /// `embedding_types` given: by type.
        ByType {
            float: Vec<Vec<f32>>,
        },
        Floats(Vec<Vec<f32>>),
    }
    #[derive(Deserialize)]
    struct Cohere {
        embeddings: CohereEmbeddings,
    }
    match api {
        EmbeddingApi::Gemini => serde_json::from_slice::<Gemini>(body)
            .ok()
            .map(|g| (g.embeddings.into_iter().map(|e| e.values).collect(), 0)),
        EmbeddingApi::BedrockTitan => serde_json::from_slice::<Titan>(body)
            .ok()
            .map(|t| (vec![t.embedding], t.input_text_token_count)),
        EmbeddingApi::BedrockCohere => serde_json::from_slice::<Cohere>(body).ok().map(|c| {
            let v = match c.embeddings {
                CohereEmbeddings::ByType { float } => float,
                CohereEmbeddings::Floats(v) => v,
            };
            (v, 0)
        }),
    }
}

/// Little-endian f32 bytes in base64, as OpenAI sends `encoding_format: "base64"`.
fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// OpenAI's embedding list.
#[derive(Serialize)]
struct EmbeddingListOut<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut<'a>>,
    model: &'a str,
    usage: EmbeddingUsageOut,
}

#[derive(Serialize)]
struct EmbeddingOut<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

/// One vector: floats (written as OpenAI's, in double precision), or base64.
enum Vector<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

impl Serialize for Vector<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Vector::Floats(v) => s.collect_seq(v.iter().map(|&f| f64::from(f))),
            Vector::Base64(b) => s.serialize_str(b),
        }
    }
}

#[derive(Serialize)]
struct EmbeddingUsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// Appends OpenAI's embedding list.
pub fn response(vectors: &[Vec<f32>], model: &str, tokens: u64, base64: bool, out: &mut Vec<u8>) {
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| EmbeddingOut {
            object: "embedding",
            index,
            embedding: if base64 {
                Vector::Base64(base64_f32(v))
            } else {
                Vector::Floats(v)
            },
        })
        .collect();
    let list = EmbeddingListOut {
        object: "list",
        data,
        model,
        usage: EmbeddingUsageOut {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &list);
}

impl Converter for OpenAiEmbeddings {
    const CLIENT: ClientApi = ClientApi::OpenAi;
    const STREAMS: bool = false;

    fn request(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let req: OpenAiEmbeddingRequest = parse_request(body)?;
        self.base64 = match req.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => return Err(invalid(format!("unknown encoding_format {other:?}"))),
        };
        upstream_model.clone_into(&mut self.model);
        let out = request(self.api, req, upstream_model)?;
        serde_json::to_vec(&out).map_err(|e| invalid(e.to_string()))
    }

    /// Each API answers in its own shape: read by [`vectors`].
    type Answer<'a> = &'a RawValue;

    fn response(&mut self, answer: &RawValue, out: &mut Vec<u8>) -> Option<Usage> {
        let Some((v, tokens)) = vectors(self.api, answer.get().as_bytes()) else {
            self.unreadable(out);
            return None;
        };
        response(&v, &self.model, tokens, self.base64, out);
        Some(Usage {
            prompt: tokens,
            total: tokens,
            ..Usage::default()
        })
    }

    fn unreadable(&mut self, out: &mut Vec<u8>) {
        OpenAiErrorOut::new(UNREADABLE, "server_error", None).write(out);
    }

    fn error(&mut self, status: u32, body: &[u8], out: &mut Vec<u8>) -> ErrorHints {
        match self.api {
            EmbeddingApi::Gemini => {
                super::openai_gemini::error(status, body, out);
            }
            _ => {
                let message = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("The provider answered {status}."));
                super::openai_bedrock::error(status, None, &message).write(out);
            }
        }
        ErrorHints::default()
    }

    /// Embeddings are never streamed.
    fn event(&mut self, _event: Event<'_>, _out: &mut Vec<u8>, _p: &mut Progress) -> Pass {
        Pass::Replaced
    }

    fn upstream_path(&self, out: &mut String) {
        match self.api {
            EmbeddingApi::Gemini => {
                out.push_str("/v1beta/models/");
                push_path_segment(out, &self.model);
                out.push_str(":batchEmbedContents");
            }
            EmbeddingApi::BedrockTitan | EmbeddingApi::BedrockCohere => {
                out.push_str("/model/");
                push_path_segment(out, &self.model);
                out.push_str("/invoke");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::driver::ChunkOutcome;
    use crate::translate::Translator;

    fn run(api: EmbeddingApi, model: &str, req: &str, answer: &str) -> (Value, Value, String) {
        let mut t = Embeddings::new(api);
        let upstream = t.request_body(req.as_bytes(), model).expect("translates");
        let mut path = String::new();
        t.upstream_path(&mut path);
        t.response_headers(200, false);
        let ChunkOutcome::Replace(out) = t.response_body(answer.as_bytes(), true) else {
            panic!("replaced");
        };
        (
            serde_json::from_slice(&upstream).expect("json"),
            serde_json::from_slice(&out).expect("json"),
            path,
        )
    }

    #[test]
    fn gemini_batches_every_input() {
        let (up, out, path) = run(
            EmbeddingApi::Gemini,
            "gemini-embedding-001",
            r#"{"model":"e","input":["a","b"],"dimensions":3}"#,
            r#"{"embeddings":[{"values":[0.1,0.2,0.3]},{"values":[0.4,0.5,0.6]}]}"#,
        );
        assert_eq!(
            path,
            "/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        assert_eq!(
            up["requests"][1],
            json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]},
                   "outputDimensionality": 3})
        );
        assert_eq!(out["data"][1]["index"], 1);
        assert_eq!(out["data"][0]["embedding"], json!([0.1f32, 0.2f32, 0.3f32]));
        assert_eq!(out["object"], "list");
    }

    #[test]
    fn titan_takes_one_input_and_counts_tokens() {
        let (up, out, path) = run(
            EmbeddingApi::BedrockTitan,
            "amazon.titan-embed-text-v2:0",
            r#"{"model":"e","input":"hello","encoding_format":"base64"}"#,
            r#"{"embedding":[1.0,-2.0],"inputTextTokenCount":3}"#,
        );
        assert_eq!(path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
        assert_eq!(up, json!({"inputText": "hello"}));
        // 1.0f32 = 00 00 80 3f, -2.0f32 = 00 00 00 c0.
        assert_eq!(out["data"][0]["embedding"], "AACAPwAAAMA=");
        assert_eq!(out["usage"]["prompt_tokens"], 3);
        let mut t = Embeddings::new(EmbeddingApi::BedrockTitan);
        assert!(t
            .request_body(
                br#"{"model":"e","input":["a","b"]}"#,
                "amazon.titan-embed-text-v2:0"
            )
            .is_err());
    }

    #[test]
    fn cohere_embeds_a_batch() {
        let (up, out, _) = run(
            EmbeddingApi::BedrockCohere,
            "cohere.embed-english-v3",
            r#"{"model":"e","input":["a","b"]}"#,
            r#"{"id":"x","embeddings":{"float":[[0.5],[0.25]]},"texts":["a","b"],"response_type":"embeddings_by_type"}"#,
        );
        assert_eq!(up["texts"], json!(["a", "b"]));
        assert_eq!(out["data"][1]["embedding"], json!([0.25]));
    }

    #[test]
    fn bedrock_models_are_recognised() {
        assert_eq!(
            EmbeddingApi::bedrock("us.cohere.embed-v4:0"),
            Some(EmbeddingApi::BedrockCohere)
        );
        assert_eq!(
            EmbeddingApi::bedrock("amazon.titan-embed-text-v2:0"),
            Some(EmbeddingApi::BedrockTitan)
        );
        assert_eq!(EmbeddingApi::bedrock("anthropic.claude-3"), None);
    }
}
