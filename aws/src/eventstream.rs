//! Pure, incremental decoding of the AWS event-stream framing (`application/vnd.amazon.eventstream`),
//! which Bedrock's streaming APIs answer with: bytes in, whole messages out, a partial message
//! carried to the next chunk.
//!
//! A message is `total_len: u32be, headers_len: u32be, prelude_crc: u32be, headers, payload,
//! message_crc: u32be`, both CRCs CRC-32 (IEEE) over what precedes them. A header is
//! `name_len: u8, name, type: u8, value`; Bedrock's are strings (type 7: `len: u16be, bytes`).
//! <https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html> describes the
//! same framing.

/// One decoded message: its string headers and its payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a stream cannot be decoded any further.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A length field is impossible (smaller than the framing, or over [`MAX_MESSAGE`]).
    Length,
    /// A checksum does not match: the bytes were damaged.
    Checksum,
    /// A header is cut short or has an unknown value type.
    Header,
}

/// Bedrock's messages are small; anything bigger is taken as corruption, not buffered.
pub const MAX_MESSAGE: usize = 16 << 20;

const PRELUDE: usize = 12;

/// Splits a byte stream into messages, keeping an unfinished one for the next chunk.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
    failed: bool,
}

impl Decoder {
    /// Whether bytes of an unfinished message are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Feeds one chunk; calls `on_message` for each whole message. After an error the stream
    /// cannot be resynchronised, and every later call returns the same error.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_message: impl FnMut(Message),
    ) -> Result<(), FrameError> {
        if self.failed {
            return Err(FrameError::Length);
        }
        self.pending.extend_from_slice(chunk);
        let mut at = 0;
        let result = loop {
            match decode(&self.pending[at..]) {
                Ok(Some((message, used))) => {
                    at += used;
                    on_message(message);
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    self.failed = true;
                    break Err(e);
                }
            }
        };
        self.pending.drain(..at);
        result
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One message from the start of `buf`, with the bytes it took; `None` when incomplete.
fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, FrameError> {
    if buf.len() < PRELUDE {
        return Ok(None);
    }
    let total = u32_at(buf, 0) as usize;
    let headers_len = u32_at(buf, 4) as usize;
    if !(PRELUDE + 4..=MAX_MESSAGE).contains(&total) || headers_len > total - PRELUDE - 4 {
        return Err(FrameError::Length);
    }
    if crc32(&buf[..8]) != u32_at(buf, 8) {
        return Err(FrameError::Checksum);
    }
    if buf.len() < total {
        return Ok(None);
    }
    if crc32(&buf[..total - 4]) != u32_at(buf, total - 4) {
        return Err(FrameError::Checksum);
    }
    let headers = parse_headers(&buf[PRELUDE..PRELUDE + headers_len])?;
    let payload = buf[PRELUDE + headers_len..total - 4].to_vec();
    Ok(Some((Message { headers, payload }, total)))
}

fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, String)>, FrameError> {
    let mut out = Vec::with_capacity(3);
    while let Some((&name_len, rest)) = b.split_first() {
        let name_len = usize::from(name_len);
        if rest.len() < name_len + 1 {
            return Err(FrameError::Header);
        }
        let name = String::from_utf8_lossy(&rest[..name_len]).into_owned();
        let kind = rest[name_len];
        let rest = &rest[name_len + 1..];
        // Fixed-size value types are skipped; strings (and byte arrays) are kept as text.
        let (value, used) = match kind {
            0 | 1 => (None, 0),
            2 => (None, 1),
            3 => (None, 2),
            4 => (None, 4),
            5 | 8 => (None, 8),
            9 => (None, 16),
            6 | 7 => {
                if rest.len() < 2 {
                    return Err(FrameError::Header);
                }
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if rest.len() < 2 + len {
                    return Err(FrameError::Header);
                }
                (
                    Some(String::from_utf8_lossy(&rest[2..2 + len]).into_owned()),
                    2 + len,
                )
            }
            _ => return Err(FrameError::Header),
        };
        if rest.len() < used {
            return Err(FrameError::Header);
        }
        if let Some(value) = value {
            out.push((name, value));
        }
        b = &rest[used..];
    }
    Ok(out)
}

/// Encodes a message with string headers (for tests and mock providers).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn messages_round_trip_at_every_split() {
        let mut stream = encode(
            &[(":event-type", "messageStart"), (":message-type", "event")],
            br#"{"role":"assistant"}"#,
        );
        stream.extend(encode(
            &[(":event-type", "contentBlockDelta")],
            br#"{"delta":{"text":"Hi"}}"#,
        ));
        for cut in 0..=stream.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            d.feed(&stream[..cut], |m| got.push(m)).expect("valid");
            d.feed(&stream[cut..], |m| got.push(m)).expect("valid");
            assert_eq!(got.len(), 2, "split at {cut}");
            assert_eq!(got[0].header(":event-type"), Some("messageStart"));
            assert_eq!(got[1].payload, br#"{"delta":{"text":"Hi"}}"#);
            assert!(!d.has_pending());
        }
    }

    #[test]
    fn damage_is_detected_and_sticks() {
        let mut m = encode(&[(":event-type", "x")], b"{}");
        let last = m.len() - 5;
        m[last] ^= 1;
        let mut d = Decoder::default();
        assert_eq!(d.feed(&m, |_| {}), Err(FrameError::Checksum));
        assert!(d.feed(b"", |_| {}).is_err());
        let mut huge = encode(&[], b"");
        huge[..4].copy_from_slice(&(u32::MAX).to_be_bytes());
        assert_eq!(
            Decoder::default().feed(&huge, |_| {}),
            Err(FrameError::Length)
        );
    }
}
