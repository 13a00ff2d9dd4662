//! The request record: one JSON object per request, written by the filter (as it ends) and read
//! by the control plane's ingest. Batches of records travel as JSON lines: `POST` to [`PATH`],
//! signed (see `crate::sealed`), kept by the filter until answered 200. The same record is
//! the filter state [`USAGE_FILTER_STATE`] for Envoy's own access log.
//!
//! The writer is by hand (one string, no intermediate value: it runs for every request); the
//! reader is serde. Fields the writer leaves out when empty read back as their defaults.

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::json::{push_display, push_string};

/// Where the filter sends batches of records (on the control plane's xDS port).
pub const PATH: &str = "/switchyard.v1/records";

/// The content type of a batch.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// Filter-state key (`wasm.<key>`) holding the request's record for the access log.
pub const USAGE_FILTER_STATE: &str = "switchyard_usage";

/// One request as it ended. Strings are `S` (`&str` when writing, `String` when reading); the
/// targets of failed attempts are `F`, anything that displays as `provider/model` (a
/// [`crate::names::TargetName`] when writing, `String` when reading).
///
/// Counts are at most `i64::MAX` (what the control plane stores); negative ones read as 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RequestRecord<S = String, F = S> {
    /// The request id (at most 64 letters, digits, `_`, `-`; see [`crate::ids`]).
    pub id: S,
    /// When the request started, Unix milliseconds.
    pub at: u64,
    /// The client API (`chat.completions`, `messages`...); empty before it was known.
    #[serde(default)]
    pub api: S,
    /// The status the client got (0: none).
    #[serde(default)]
    pub status: u32,
    /// The gateway's error code; empty when the gateway raised none.
    #[serde(default)]
    pub error: S,
    /// The gateway key's id and its owner (empty: no key).
    #[serde(default)]
    pub key: S,
    #[serde(default)]
    pub user: S,
    /// The model the client asked for.
    #[serde(default)]
    pub model: S,
    /// The provider and model of the last attempt (empty: none was made).
    #[serde(default)]
    pub provider: S,
    #[serde(default)]
    pub upstream_model: S,
    /// The targets of the attempts before the last one, which failed (and were retried).
    #[serde(default = "Vec::new")]
    pub failed: Vec<F>,
    /// Token counts were estimated from what the client received (a stream that ended early).
    #[serde(default)]
    pub estimated: bool,
    #[serde(default, deserialize_with = "count")]
    pub attempts: u64,
    #[serde(default)]
    pub stream: bool,
    /// The provider's answer ended as it should (a stream with its last event).
    #[serde(default)]
    pub complete: bool,
    #[serde(default, deserialize_with = "count")]
    pub prompt_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub completion_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub total_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub cached_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub cache_write_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub reasoning_tokens: u64,
    /// The cost at the model's price, micro-USD (`None`: no price known).
    #[serde(default, deserialize_with = "optional_count")]
    pub cost_micros: Option<u64>,
    /// Milliseconds from the request's start to its end, to the provider's first byte, to the
    /// first token (`None`: never happened).
    #[serde(default, deserialize_with = "optional_count")]
    pub duration_ms: Option<u64>,
    #[serde(default, deserialize_with = "optional_count")]
    pub upstream_ms: Option<u64>,
    #[serde(default, deserialize_with = "optional_count")]
    pub ttft_ms: Option<u64>,
}

impl<S: AsRef<str>, F: fmt::Display> RequestRecord<S, F> {
    /// Appends the record as one JSON object, without a newline.
    pub fn write(&self, out: &mut String) {
        out.push_str("{\"id\":");
        push_string(out, self.id.as_ref());
        out.push_str(",\"at\":");
        push_number(out, self.at);
        out.push_str(",\"api\":");
        push_string(out, self.api.as_ref());
        out.push_str(",\"status\":");
        push_number(out, self.status);
        if !self.error.as_ref().is_empty() {
            out.push_str(",\"error\":");
            push_string(out, self.error.as_ref());
        }
        for (name, value) in [
            ("key", &self.key),
            ("user", &self.user),
            ("model", &self.model),
            ("provider", &self.provider),
            ("upstream_model", &self.upstream_model),
        ] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            push_string(out, value.as_ref());
        }
        for (i, target) in self.failed.iter().enumerate() {
            out.push_str(if i == 0 { ",\"failed\":[" } else { "," });
            push_display(out, target);
        }
        if !self.failed.is_empty() {
            out.push(']');
        }
        if self.estimated {
            out.push_str(",\"estimated\":true");
        }
        out.push_str(",\"attempts\":");
        push_number(out, self.attempts);
        out.push_str(",\"stream\":");
        out.push_str(if self.stream { "true" } else { "false" });
        out.push_str(",\"complete\":");
        out.push_str(if self.complete { "true" } else { "false" });
        for (name, value) in [
            ("prompt_tokens", self.prompt_tokens),
            ("completion_tokens", self.completion_tokens),
            ("total_tokens", self.total_tokens),
            ("cached_tokens", self.cached_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
        ] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            push_number(out, value);
        }
        for (name, value) in [
            ("cost_micros", self.cost_micros),
            ("duration_ms", self.duration_ms),
            ("upstream_ms", self.upstream_ms),
            ("ttft_ms", self.ttft_ms),
        ] {
            if let Some(value) = value {
                out.push_str(",\"");
                out.push_str(name);
                out.push_str("\":");
                push_number(out, value);
            }
        }
        out.push('}');
    }
}

impl RequestRecord {
    /// Reads one record (one line of a batch).
    pub fn read(line: &[u8]) -> Result<RequestRecord, serde_json::Error> {
        serde_json::from_slice(line)
    }
}

/// The records of a batch, one per line that is not blank, each read or not.
pub fn read_batch(
    body: &[u8],
) -> impl Iterator<Item = Result<RequestRecord, serde_json::Error>> + '_ {
    let mut rest = body;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(end) => (&rest[..end], &rest[end + 1..]),
                None => (rest, &[][..]),
            };
            rest = next;
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(line);
            }
        }
        None
    })
    .map(RequestRecord::read)
}

/// How many records a batch holds at most (its lines), to make room for them at once.
pub fn batch_lines(body: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', body).count() + 1
}

/// Appends a number in decimal (no allocation).
fn push_number(out: &mut String, n: impl Into<u64>) {
    // By hand: a dozen numbers a record went through `fmt`'s machinery, a tenth of writing one.
    let mut n = n.into();
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = digits.get(start..).unwrap_or_default();
    out.push_str(std::str::from_utf8(digits).unwrap_or_default());
}

/// A count: negative ones (which the filter never writes) read as 0.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    i64::deserialize(d).map(|n| n.max(0).unsigned_abs())
}

fn optional_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<i64>::deserialize(d).map(|n| n.map(|n| n.max(0).unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::TargetName;

    fn full() -> RequestRecord {
        RequestRecord {
            id: "0123456789abcdef0123456789abcdef".into(),
            at: 1_700_000_000_000,
            api: "chat.completions".into(),
            status: 200,
            error: "provider_error".into(),
            key: "key_1".into(),
            user: "alice".into(),
            model: "smart".into(),
            provider: "p".into(),
            upstream_model: "m".into(),
            failed: vec!["q/n".into(), "r/meta/llama".into()],
            estimated: true,
            attempts: 3,
            stream: true,
            complete: true,
            prompt_tokens: 12,
            completion_tokens: 5,
            total_tokens: 17,
            cached_tokens: 2,
            cache_write_tokens: 1,
            reasoning_tokens: 4,
            cost_micros: Some(42),
            duration_ms: Some(30),
            upstream_ms: Some(20),
            ttft_ms: Some(25),
        }
    }

    fn written<S: AsRef<str>, F: fmt::Display>(r: &RequestRecord<S, F>) -> String {
        let mut out = String::new();
        r.write(&mut out);
        out
    }

    #[test]
    fn every_field_round_trips() {
        let r = full();
        assert_eq!(RequestRecord::read(written(&r).as_bytes()).unwrap(), r);
    }

    #[test]
    fn escapes_round_trip() {
        let odd = "q\"uote\\ \n\r\t \u{1} \u{7f} ünï 😀";
        let r = RequestRecord {
            error: odd.into(),
            key: odd.into(),
            user: odd.into(),
            model: odd.into(),
            provider: odd.into(),
            upstream_model: odd.into(),
            failed: vec![format!("{odd}/{odd}")],
            ..full()
        };
        let line = written(&r);
        assert!(!line.contains('\n'), "one line: {line}");
        assert_eq!(RequestRecord::read(line.as_bytes()).unwrap(), r);
    }

    #[test]
    fn missing_optionals_are_left_out_and_read_back_as_defaults() {
        let r = RequestRecord {
            id: "a1".into(),
            at: 1,
            ..RequestRecord::default()
        };
        let line = written(&r);
        assert_eq!(
            line,
            r#"{"id":"a1","at":1,"api":"","status":0,"key":"","user":"","model":"","provider":"","upstream_model":"","attempts":0,"stream":false,"complete":false,"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"cached_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0}"#
        );
        assert_eq!(RequestRecord::read(line.as_bytes()).unwrap(), r);
        let bare = RequestRecord::read(br#"{"id":"a1","at":1}"#).unwrap();
        assert_eq!(bare, r);
    }

    /// The bytes the filter has always written: control planes of either age read them.
    #[test]
    fn the_wire_format_is_unchanged() {
        let r = RequestRecord::<&str, TargetName<'_>> {
            id: "0123abcd",
            at: 1_700_000_000_000,
            api: "chat.completions",
            status: 502,
            error: "provider_error",
            key: "key_1",
            user: "alice",
            model: "smart",
            provider: "p",
            upstream_model: "m",
            failed: vec![TargetName {
                provider: "q",
                model: "n",
            }],
            estimated: true,
            attempts: 2,
            stream: true,
            complete: false,
            prompt_tokens: 12,
            completion_tokens: 5,
            total_tokens: 17,
            cached_tokens: 2,
            cache_write_tokens: 0,
            reasoning_tokens: 1,
            cost_micros: Some(42),
            duration_ms: Some(30),
            upstream_ms: None,
            ttft_ms: Some(25),
        };
        assert_eq!(
            written(&r),
            r#"{"id":"0123abcd","at":1700000000000,"api":"chat.completions","status":502,"error":"provider_error","key":"key_1","user":"alice","model":"smart","provider":"p","upstream_model":"m","failed":["q/n"],"estimated":true,"attempts":2,"stream":true,"complete":false,"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"cached_tokens":2,"cache_write_tokens":0,"reasoning_tokens":1,"cost_micros":42,"duration_ms":30,"ttft_ms":25}"#
        );
        let read = RequestRecord::read(written(&r).as_bytes()).unwrap();
        assert_eq!(read.failed, ["q/n"]);
        assert_eq!((read.upstream_ms, read.ttft_ms), (None, Some(25)));
    }

    #[test]
    fn negative_counts_read_as_zero_and_bad_lines_do_not_read() {
        let r = RequestRecord::read(
            br#"{"id":"a","at":1,"attempts":-1,"prompt_tokens":-5,"cost_micros":-3,"ttft_ms":null,"future":1}"#,
        )
        .unwrap();
        assert_eq!(
            (r.attempts, r.prompt_tokens, r.cost_micros, r.ttft_ms),
            (0, 0, Some(0), None)
        );
        for bad in [
            &br#"{"at":1}"#[..],
            br#"{"id":"a","at":-1}"#,
            br#"{"id":"a","at":1,"prompt_tokens":1.5}"#,
            br#"{"id":"a","at":1,"status":-1}"#,
            b"not json",
        ] {
            assert!(
                RequestRecord::read(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 100, 1_790_000_000_123, u64::MAX] {
            let mut out = String::from("x");
            push_number(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
    }

    #[test]
    fn batches_skip_blank_lines() {
        let mut body = String::new();
        full().write(&mut body);
        body.push_str("\n\n  \nnot json\n");
        full().write(&mut body);
        body.push('\n');
        let read: Vec<_> = read_batch(body.as_bytes()).collect();
        assert_eq!(read.len(), 3);
        assert!(read[0].is_ok() && read[1].is_err() && read[2].is_ok());
        assert_eq!(batch_lines(body.as_bytes()), 6);
        // The last line needs no newline; a line may end in CR LF.
        let mut body = String::new();
        full().write(&mut body);
        body.push_str("\r\n");
        full().write(&mut body);
        let read: Vec<_> = read_batch(body.as_bytes()).collect();
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(Result::is_ok));
        assert_eq!(read_batch(b"").count(), 0);
        assert_eq!(read_batch(b"\n\n").count(), 0);
    }
}
