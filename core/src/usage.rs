//! Pure usage extraction: one normalised token record from OpenAI-style responses.

use serde::Deserialize;

use crate::needle::Needle;

pub use switchyard_contract::usage::Usage;

/// OpenAI's `usage` object (chat, completions and embeddings).
/// <https://platform.openai.com/docs/api-reference/chat/object#chat/object-usage>
#[derive(Debug, Deserialize)]
pub struct OpenAiUsage {
    /// `input_tokens` in image generation answers.
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    /// `output_tokens` in image generation answers.
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Usage {
        Usage {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
            total: u
                .total_tokens
                .unwrap_or(u.prompt_tokens + u.completion_tokens),
            cached: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write: 0,
            reasoning: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Usage from a whole OpenAI-style JSON response body.
///
/// Fast path: the top-level `usage` is the last `"usage"` key in the body (OpenAI writes it after
/// `choices`/`data`, and string contents cannot hold an unescaped quote), so only that object is
/// parsed; large bodies (embeddings) are not walked twice. Falls back to a full parse.
pub fn from_openai_body(body: &[u8]) -> Option<Usage> {
    static KEY: Needle = Needle::new(b"\"usage\"");
    if let Some(pos) = KEY.rfind(body) {
        let rest = &body[pos + KEY.len()..];
        let rest = trim_start(rest);
        if let Some(rest) = rest.strip_prefix(b":") {
            let mut de = serde_json::Deserializer::from_slice(trim_start(rest));
            if let Ok(Some(u)) = Option::<OpenAiUsage>::deserialize(&mut de) {
                return Some(u.into());
            }
        }
    }
    #[derive(Deserialize)]
    struct Body {
        usage: Option<OpenAiUsage>,
    }
    serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.usage)
        .map(Usage::from)
}

/// Finds the value of one top-level field of a JSON object fed chunk by chunk, keeping nothing
/// but that value: an answer passing through is read for its `usage` without being copied
/// (a provider chooses how big its answer is). Keys written with escapes are understood; the
/// last occurrence wins; a value over [`MAX_CAPTURE`] bytes is not kept.
#[derive(Debug)]
pub struct FieldScan {
    name: &'static str,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Whether the next string at depth 1 is a key.
    expect_key: bool,
    /// The key being read (at depth 1), up to a few bytes.
    key: Option<Vec<u8>>,
    /// The last key read matched `name`: its value is captured after the colon.
    armed: bool,
    /// The value being captured, and the last complete one.
    capture: Option<Vec<u8>>,
    found: Option<Vec<u8>>,
}

/// The most of one field's value [`FieldScan`] keeps.
pub const MAX_CAPTURE: usize = 64 << 10;
/// Longer keys cannot spell a field name (even fully escaped).
const MAX_KEY: usize = 96;

/// The first quote or bracket in `bytes`: what matters below the top level. Eight bytes at a
/// time (`[` and `]` are `{` and `}` with one bit less, so setting it finds both).
fn next_structural(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const CASE: u64 = u64::from_ne_bytes([0x20; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const OPEN: u64 = u64::from_ne_bytes([b'{'; 8]);
    const CLOSE: u64 = u64::from_ne_bytes([b'}'; 8]);
    // High bit set in each byte that is zero (and, after one, maybe in later ones: only the
    // first match is used).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let structural = |b: u8| matches!(b, b'"' | b'{' | b'}' | b'[' | b']');
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        let v = u64::from_le_bytes(le);
        let folded = v | CASE;
        let hits = zero(v ^ QUOTE) | zero(folded ^ OPEN) | zero(folded ^ CLOSE);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| structural(b))
        .map(|p| at + p)
}

impl FieldScan {
    pub fn new(name: &'static str) -> FieldScan {
        FieldScan {
            name,
            depth: 0,
            in_string: false,
            escaped: false,
            expect_key: false,
            key: None,
            armed: false,
            capture: None,
            found: None,
        }
    }

    /// Reads one chunk of the body. The bytes of the key or value being kept are found as one
    /// range per chunk and copied once; everything else is only looked at, and below the top
    /// level only quotes and brackets are.
    pub fn feed(&mut self, chunk: &[u8]) {
        // Where, in this chunk, the key or value being kept (if any) resumes.
        let mut from = 0;
        let mut i = 0;
        while i < chunk.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                // Inside a string only quotes and backslashes matter: jump to the next one.
                let Some(off) = memchr::memchr2(b'"', b'\\', &chunk[i..]) else {
                    break;
                };
                let at = i + off;
                i = at + 1;
                if chunk[at] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                    if self.key.is_some() {
                        self.keep(&chunk[from..i]);
                        self.key_done();
                    }
                }
                continue;
            }
            if self.depth >= 2 {
                // Below the top level only strings and nesting matter.
                match next_structural(&chunk[i..]) {
                    Some(off) => i += off,
                    None => break,
                }
            }
            let b = chunk[i];
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.expect_key {
                        self.expect_key = false;
                        self.key = Some(Vec::new());
                        from = i + 1;
                    } else if self.start_value_if_armed() {
                        from = i;
                    }
                }
                b'{' | b'[' => {
                    if self.start_value_if_armed() {
                        from = i;
                    }
                    self.depth = self.depth.saturating_add(1);
                    self.expect_key = b == b'{' && self.depth == 1;
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth <= 1 {
                        // A nested value's closing bracket is part of it; the top level's is not.
                        let end = if self.depth == 1 { i + 1 } else { i };
                        if self.capture.is_some() {
                            self.keep(&chunk[from..end]);
                        }
                        self.value_done();
                    }
                }
                b',' if self.depth == 1 => {
                    if self.capture.is_some() {
                        self.keep(&chunk[from..i]);
                    }
                    self.value_done();
                    self.expect_key = true;
                }
                b':' | b' ' | b'\n' | b'\r' | b'\t' => {}
                _ => {
                    if self.start_value_if_armed() {
                        from = i;
                    }
                }
            }
            i += 1;
        }
        if self.key.is_some() || self.capture.is_some() {
            self.keep(&chunk[from.min(chunk.len())..]);
        }
    }

    /// The field's last complete value, if the object had it.
    pub fn value(&self) -> Option<&[u8]> {
        self.found.as_deref()
    }

    /// Adds bytes to the key or value being kept, within their bounds.
    fn keep(&mut self, bytes: &[u8]) {
        if let Some(key) = &mut self.key {
            if key.len() + bytes.len() <= MAX_KEY {
                key.extend_from_slice(bytes);
            } else {
                key.clear();
                key.push(0); // cannot match any more
            }
        } else if let Some(capture) = &mut self.capture {
            if capture.len() + bytes.len() <= MAX_CAPTURE {
                capture.extend_from_slice(bytes);
            } else {
                self.capture = None;
                self.armed = false;
            }
        }
    }

    fn key_done(&mut self) {
        let Some(mut key) = self.key.take() else {
            return;
        };
        key.pop(); // the closing quote
        self.armed = key == self.name.as_bytes()
            || (key.contains(&b'\\')
                && serde_json::from_slice::<String>(&[b"\"", key.as_slice(), b"\""].concat())
                    .is_ok_and(|k| k == self.name));
    }

    /// Starts keeping the value that begins here if it is the field's; says whether it did.
    fn start_value_if_armed(&mut self) -> bool {
        if self.armed && self.depth == 1 && self.capture.is_none() {
            self.armed = false;
            self.capture = Some(Vec::new());
            return true;
        }
        false
    }

    fn value_done(&mut self) {
        if self.depth <= 1 {
            if let Some(v) = self.capture.take() {
                self.found = Some(v);
            }
        }
    }
}

/// Usage from the value a [`FieldScan`] of `usage` found in an OpenAI-style answer.
pub fn from_openai_usage_value(value: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<Option<OpenAiUsage>>(value)
        .ok()
        .flatten()
        .map(Usage::from)
}

/// Tokens a stream has sent so far, estimated from the text in its events (about four bytes
/// of text a token, at least one per piece of text): what a client that leaves before the
/// provider's own count arrives is charged for. Reads the text-carrying fields of OpenAI's and
/// Anthropic's stream events as they reach the client.
pub fn estimate_streamed_tokens(events: &[u8]) -> u64 {
    static FIELDS: [Needle; 8] = [
        Needle::new(b"\"content\""),
        Needle::new(b"\"text\""),
        Needle::new(b"\"partial_json\""),
        Needle::new(b"\"thinking\""),
        Needle::new(b"\"arguments\""),
        Needle::new(b"\"reasoning_content\""),
        Needle::new(b"\"refusal\""),
        Needle::new(b"\"reasoning\""),
    ];
    let mut tokens = 0u64;
    for field in &FIELDS {
        for at in field.find_iter(events) {
            let rest = trim_start(&events[at + field.len()..]);
            let Some(rest) = rest.strip_prefix(b":") else {
                continue;
            };
            let Some(text) = trim_start(rest).strip_prefix(b"\"") else {
                continue;
            };
            let len = string_length(text);
            if len > 0 {
                tokens = tokens.saturating_add(len.div_ceil(4).max(1) as u64);
            }
        }
    }
    tokens
}

/// Bytes of a JSON string's contents up to its closing quote (escapes counted as written).
fn string_length(text: &[u8]) -> usize {
    let mut i = 0;
    while let Some(off) = memchr::memchr2(b'"', b'\\', &text[i..]) {
        let at = i + off;
        if text[at] == b'"' {
            return at;
        }
        i = at + 2;
        if i >= text.len() {
            break;
        }
    }
    0
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        .count();
    &b[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_usage_with_details() {
        let body = br#"{"id":"c","choices":[{"message":{"content":"say \"usage\": {}"}}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}}"#;
        assert_eq!(
            from_openai_body(body),
            Some(Usage {
                prompt: 19,
                completion: 10,
                total: 29,
                cached: 4,
                cache_write: 0,
                reasoning: 2
            })
        );
    }

    #[test]
    fn embeddings_usage_has_no_completion() {
        let body = br#"{"object":"list","data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            from_openai_body(body),
            Some(Usage {
                prompt: 8,
                total: 8,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn usage_not_last_is_found_by_the_full_parse() {
        let body = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"choices":[{"x":{"usage":null}}]}"#;
        assert_eq!(from_openai_body(body).map(|u| u.total), Some(3));
    }

    /// Feeds `body` to a scan in pieces cut at `cut` and returns what it found.
    fn scan(body: &[u8], cut: usize) -> Option<Vec<u8>> {
        let mut s = FieldScan::new("usage");
        let (a, b) = body.split_at(cut.min(body.len()));
        s.feed(a);
        s.feed(b);
        s.value().map(<[u8]>::to_vec)
    }

    #[test]
    fn the_usage_field_is_found_at_every_split_without_keeping_the_body() {
        let body = br#"{"id":"c","choices":[{"message":{"content":"say \"usage\": {\"x\":1}, \\"}}],
            "usage" : {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},"n":[1,{"usage":2}]}"#;
        for cut in 0..=body.len() {
            let v = scan(body, cut).expect("found");
            let u = from_openai_usage_value(&v).expect("usage");
            assert_eq!(
                (u.prompt, u.completion, u.total),
                (19, 10, 29),
                "cut at {cut}"
            );
        }
        // Escaped key, value last, null, absent, not an object, nested only.
        let escaped = br#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert_eq!(
            from_openai_usage_value(&scan(escaped, 3).unwrap()).map(|u| u.total),
            Some(3)
        );
        assert_eq!(scan(br#"{"usage":null}"#, 5).as_deref(), Some(&b"null"[..]));
        assert_eq!(from_openai_usage_value(b"null"), None);
        assert_eq!(scan(br#"{"choices":[]}"#, 4), None);
        assert_eq!(scan(b"<html>usage</html>", 4), None);
        assert_eq!(scan(br#"{"a":{"usage":{"prompt_tokens":1}}}"#, 7), None);
        assert_eq!(
            scan(br#"{"usage":7,"usage":{"prompt_tokens":4}}"#, 9).as_deref(),
            Some(&br#"{"prompt_tokens":4}"#[..])
        );
    }

    /// Every JSON answer among the fixtures, cut anywhere into three pieces, gives the scan the
    /// same `usage` as a full parse of the answer.
    #[test]
    fn the_scan_agrees_with_a_full_parse_on_every_fixture_at_every_split() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "json") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(&crate::translate::golden::fixtures(""), &mut files);
        let mut checked = 0;
        for path in files {
            let body = std::fs::read(&path).unwrap();
            let Ok(serde_json::Value::Object(top)) = serde_json::from_slice(&body) else {
                continue;
            };
            let want = top.get("usage");
            for a in (0..=body.len()).step_by(11) {
                for b in (a..=body.len()).step_by(29) {
                    let mut s = FieldScan::new("usage");
                    s.feed(&body[..a]);
                    s.feed(&body[a..b]);
                    s.feed(&body[b..]);
                    let got = s
                        .value()
                        .map(|v| serde_json::from_slice::<serde_json::Value>(v).unwrap());
                    assert_eq!(got.as_ref(), want, "{} cut at {a}, {b}", path.display());
                }
            }
            checked += 1;
        }
        assert!(checked > 20, "only {checked} fixtures read");
    }

    #[test]
    fn the_next_quote_or_bracket_is_found_at_every_position() {
        for len in 0..20 {
            for at in 0..=len {
                for b in [b'"', b'{', b'}', b'[', b']'] {
                    let mut bytes = vec![b'a'; len];
                    // Bytes one bit away from the ones looked for must not count.
                    bytes.iter_mut().step_by(3).for_each(|x| *x = b'\x7f');
                    bytes
                        .iter_mut()
                        .skip(1)
                        .step_by(3)
                        .for_each(|x| *x = b'\x02');
                    if at < len {
                        bytes[at] = b;
                    }
                    let want = bytes
                        .iter()
                        .position(|c| matches!(c, b'"' | b'{' | b'}' | b'[' | b']'));
                    assert_eq!(next_structural(&bytes), want, "{len} {at} {b}");
                }
            }
        }
        let all: Vec<u8> = (0..=255).collect();
        for start in 0..all.len() {
            let want = all[start..]
                .iter()
                .position(|c| matches!(c, b'"' | b'{' | b'}' | b'[' | b']'));
            assert_eq!(next_structural(&all[start..]), want, "from {start}");
        }
    }

    #[test]
    fn an_oversized_usage_value_is_dropped() {
        let mut body = b"{\"usage\":\"".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_CAPTURE + 10));
        body.extend_from_slice(b"\"}");
        assert_eq!(scan(&body, 100), None);
    }

    #[test]
    fn streamed_text_is_estimated_at_about_four_bytes_a_token() {
        let openai = br#"data: {"choices":[{"delta":{"content":"Hello there"}}]}

data: {"choices":[{"delta":{"content": "!"}}]}

data: {"choices":[{"delta":{"content":""}}]}

"#;
        assert_eq!(estimate_streamed_tokens(openai), 3 + 1);
        let anthropic = br#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"abcdefgh \"q\""}}

"#;
        assert_eq!(estimate_streamed_tokens(anthropic), 4);
        assert_eq!(estimate_streamed_tokens(b"data: [DONE]\n\n"), 0);
    }

    #[test]
    fn no_usage_is_none() {
        assert_eq!(from_openai_body(br#"{"choices":[]}"#), None);
        assert_eq!(from_openai_body(br#"{"usage":null}"#), None);
        assert_eq!(from_openai_body(b"not json"), None);
    }
}
