//! OpenAI image generation (client) to Gemini's Imagen models (provider):
//! `POST /v1beta/models/{model}:predict` with `instances[].prompt` and `parameters`, answered
//! with base64 images. <https://ai.google.dev/gemini-api/docs/imagen>
//!
//! Imagen returns image bytes only, so clients get `b64_json`; a request for URLs is refused.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::driver::{ClientApi, Converter, ErrorHints, Event, Framed, Pass, Progress};
use super::openai_bedrock::UNREADABLE;
use super::openai_request::{invalid, parse_request};
use super::schema::openai::OpenAiErrorOut;
use crate::error::FilterError;
use crate::request::push_path_segment;
use crate::usage::Usage;

#[derive(Debug, Deserialize)]
pub struct OpenAiImageRequest {
    pub prompt: String,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
}

/// Imagen's aspect ratios, as (width, height).
const RATIOS: &[(u32, u32)] = &[(1, 1), (3, 4), (4, 3), (9, 16), (16, 9)];

/// The Imagen aspect ratio nearest to an OpenAI `size` (`1024x1536`, `auto`, ...).
pub fn aspect_ratio(size: &str) -> Result<Option<String>, FilterError> {
    if size == "auto" {
        return Ok(None);
    }
    let (w, h) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|(w, h)| *w > 0 && *h > 0)
        .ok_or_else(|| invalid(format!("size {size:?} must look like 1024x1024")))?;
    let want = f64::from(w) / f64::from(h);
    let nearest = RATIOS
        .iter()
        .min_by(|a, b| {
            let da = (f64::from(a.0) / f64::from(a.1) - want).abs();
            let db = (f64::from(b.0) / f64::from(b.1) - want).abs();
            da.total_cmp(&db)
        })
        .copied()
        .unwrap_or((1, 1));
    Ok(Some(format!("{}:{}", nearest.0, nearest.1)))
}

/// One image generation request from an OpenAI client to Imagen.
pub type Imagen = Framed<OpenAiImagen>;

/// The conversion of one image generation request from an OpenAI client to Imagen.
#[derive(Debug, Default)]
pub struct OpenAiImagen {
    created: u64,
    model: String,
}

impl Imagen {
    pub fn new(created: u64) -> Self {
        Framed::around(OpenAiImagen {
            created,
            model: String::new(),
        })
    }
}

pub fn request(req: OpenAiImageRequest) -> Result<Value, FilterError> {
    if req.prompt.trim().is_empty() {
        return Err(invalid("`prompt` must not be empty"));
    }
    match req.response_format.as_deref() {
        None | Some("b64_json") => {}
        Some(_) => {
            return Err(invalid(
                "this model returns images as b64_json only; set response_format to b64_json",
            ))
        }
    }
    let n = req.n.unwrap_or(1);
    if !(1..=4).contains(&n) {
        return Err(invalid("`n` must be between 1 and 4 for this model"));
    }
    let mut parameters = json!({ "sampleCount": n });
    if let Some(ratio) = req.size.as_deref().map(aspect_ratio).transpose()?.flatten() {
        parameters["aspectRatio"] = Value::String(ratio);
    }
    Ok(json!({"instances": [{"prompt": req.prompt}], "parameters": parameters}))
}

/// OpenAI's images response.
#[derive(Serialize)]
struct ImagesOut<'a> {
    created: u64,
    data: Vec<ImageOut<'a>>,
}

#[derive(Serialize)]
struct ImageOut<'a> {
    b64_json: &'a str,
}

/// Imagen's answer. <https://ai.google.dev/api/models#method:-models.predict>
#[derive(Deserialize)]
pub struct ImagenPredictions {
    #[serde(default)]
    predictions: Vec<ImagenPrediction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImagenPrediction {
    #[serde(default)]
    bytes_base64_encoded: Option<String>,
}

/// Appends OpenAI's images response for Imagen's predictions.
pub fn response(p: &ImagenPredictions, created: u64, out: &mut Vec<u8>) {
    let data = p
        .predictions
        .iter()
        .filter_map(|p| p.bytes_base64_encoded.as_deref())
        .map(|b64_json| ImageOut { b64_json })
        .collect();
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &ImagesOut { created, data });
}

impl Converter for OpenAiImagen {
    const CLIENT: ClientApi = ClientApi::OpenAi;
    const STREAMS: bool = false;

    fn request(&mut self, body: &[u8], upstream_model: &str) -> Result<Vec<u8>, FilterError> {
        let req: OpenAiImageRequest = parse_request(body)?;
        upstream_model.clone_into(&mut self.model);
        serde_json::to_vec(&request(req)?).map_err(|e| invalid(e.to_string()))
    }

    type Answer<'a> = ImagenPredictions;

    fn response(&mut self, answer: ImagenPredictions, out: &mut Vec<u8>) -> Option<Usage> {
        response(&answer, self.created, out);
        None
    }

    fn unreadable(&mut self, out: &mut Vec<u8>) {
        OpenAiErrorOut::new(UNREADABLE, "server_error", None).write(out);
    }

    fn error(&mut self, status: u32, body: &[u8], out: &mut Vec<u8>) -> ErrorHints {
        super::openai_gemini::error(status, body, out);
        ErrorHints::default()
    }

    /// Images are never streamed.
    fn event(&mut self, _event: Event<'_>, _out: &mut Vec<u8>, _p: &mut Progress) -> Pass {
        Pass::Replaced
    }

    fn upstream_path(&self, out: &mut String) {
        out.push_str("/v1beta/models/");
        push_path_segment(out, &self.model);
        out.push_str(":predict");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::driver::ChunkOutcome;
    use crate::translate::Translator;

    #[test]
    fn a_prompt_becomes_an_imagen_prediction_and_back() {
        let mut t = Imagen::new(7);
        let up = t
            .request_body(
                br#"{"model":"img","prompt":"a red fox","n":2,"size":"1792x1024"}"#,
                "imagen-4.0-generate-001",
            )
            .expect("translates");
        let up: Value = serde_json::from_slice(&up).expect("json");
        assert_eq!(
            up,
            json!({"instances": [{"prompt": "a red fox"}],
                   "parameters": {"sampleCount": 2, "aspectRatio": "16:9"}})
        );
        let mut path = String::new();
        t.upstream_path(&mut path);
        assert_eq!(path, "/v1beta/models/imagen-4.0-generate-001:predict");
        t.response_headers(200, false);
        let ChunkOutcome::Replace(out) = t.response_body(
            br#"{"predictions":[{"mimeType":"image/png","bytesBase64Encoded":"iVBO"},{"mimeType":"image/png","bytesBase64Encoded":"AAAA"}]}"#,
            true,
        ) else {
            panic!("replaced");
        };
        let out: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            out,
            json!({"created": 7, "data": [{"b64_json": "iVBO"}, {"b64_json": "AAAA"}]})
        );
    }

    #[test]
    fn sizes_map_to_the_nearest_ratio_and_urls_are_refused() {
        assert_eq!(
            aspect_ratio("1024x1024").expect("ok").as_deref(),
            Some("1:1")
        );
        assert_eq!(
            aspect_ratio("1024x1536").expect("ok").as_deref(),
            Some("3:4")
        );
        assert_eq!(aspect_ratio("auto").expect("ok"), None);
        assert!(aspect_ratio("big").is_err());
        let mut t = Imagen::new(0);
        assert!(t
            .request_body(br#"{"prompt":"x","response_format":"url"}"#, "m")
            .is_err());
        assert!(t.request_body(br#"{"prompt":"x","n":9}"#, "m").is_err());
    }
}
