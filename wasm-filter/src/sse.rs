//! Pure, incremental Server-Sent Events framing: bytes in, whole events out, the rest carried over.
//!
//! Events end at a blank line; lines end in LF, CRLF or CR (WHATWG HTML, "event stream
//! interpretation"). Nothing is interpreted beyond framing and the `data` field.

/// Splits a byte stream into whole events, carrying a partial event to the next chunk.
#[derive(Debug, Default)]
pub struct EventSplitter {
    pending: Vec<u8>,
}

impl EventSplitter {
    /// Whether bytes of an unfinished event are waiting for the next chunk.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the unfinished event (at end of stream).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Feeds one chunk; calls `on_event` with each whole event, raw bytes including its
    /// terminating blank line, in order. Returns whether the chunk was consumed exactly at an
    /// event boundary with nothing carried in or out (the caller may then forward it untouched).
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8])) -> bool {
        if self.pending.is_empty() {
            let used = split_events(chunk, &mut on_event);
            self.pending.extend_from_slice(&chunk[used..]);
            used == chunk.len()
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let used = split_events(&pending, &mut on_event);
            self.pending = pending;
            self.pending.drain(..used);
            false
        }
    }
}

/// Calls `on_event` for each whole event in `buf`; returns the bytes consumed.
fn split_events(buf: &[u8], on_event: &mut impl FnMut(&[u8])) -> usize {
    let mut start = 0; // start of the current event
    let mut line = 0; // start of the current line
    let mut i = 0;
    while let Some(off) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        let at = i + off;
        let end = if buf[at] == b'\r' {
            match buf.get(at + 1) {
                Some(b'\n') => at + 2,
                Some(_) => at + 1,
                // A CR at the very end may be the first half of CRLF: wait for more.
                None => return start,
            }
        } else {
            at + 1
        };
        if at == line {
            // Blank line: the event is complete.
            on_event(&buf[start..end]);
            start = end;
        }
        line = end;
        i = end;
    }
    start
}

/// The value of an event's `data` field (several `data:` lines joined with `\n`).
/// Borrowed when the event has a single `data` line, which is the common case.
pub fn event_data(event: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut result: Option<std::borrow::Cow<'_, [u8]>> = None;
    for line in lines(event) {
        let Some(rest) = line.strip_prefix(b"data") else {
            continue;
        };
        let value = match rest {
            [] => rest,
            [b':', b' ', v @ ..] | [b':', v @ ..] => v,
            _ => continue, // a field named e.g. "database"
        };
        result = Some(match result {
            None => std::borrow::Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                std::borrow::Cow::Owned(joined)
            }
        });
    }
    result
}

/// Lines of an event without their terminators.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event
        .split(|&b| b == b'\n')
        .flat_map(|l| l.split(|&b| b == b'\r'))
        .filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut s = EventSplitter::default();
        let mut events = Vec::new();
        for c in chunks {
            s.feed(c, |e| events.push(e.to_vec()));
        }
        (events, s.take_pending())
    }

    #[test]
    fn whole_events_pass_and_are_reported_as_aligned() {
        let mut s = EventSplitter::default();
        let mut n = 0;
        assert!(s.feed(b"data: a\n\ndata: b\n\n", |_| n += 1));
        assert_eq!(n, 2);
        assert!(!s.feed(b"data: c\n", |_| n += 1));
        assert_eq!(n, 2);
        assert!(!s.feed(b"\n", |_| n += 1));
        assert_eq!(n, 3);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] =
            b"event: x\r\ndata: one\r\n\r\ndata: two\n\n: comment\rdata: three\r\rdata: {\"a\":1}\n\n";
        let (whole, rest) = collect(&[stream]);
        assert!(rest.is_empty());
        assert_eq!(whole.len(), 4);
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let (split, rest) = collect(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(split, whole, "split at {i},{j}");
                assert!(rest.is_empty());
            }
        }
    }

    #[test]
    fn trailing_partial_event_is_kept_back() {
        let (events, rest) = collect(&[b"data: a\n\ndata: b"]);
        assert_eq!(events, vec![b"data: a\n\n".to_vec()]);
        assert_eq!(rest, b"data: b");
    }

    #[test]
    fn data_field_is_extracted() {
        assert_eq!(
            event_data(b"data: [DONE]\n\n").as_deref(),
            Some(&b"[DONE]"[..])
        );
        assert_eq!(event_data(b"data:x\r\n\r\n").as_deref(), Some(&b"x"[..]));
        assert_eq!(
            event_data(b"event: e\ndata: a\ndata: b\n\n").as_deref(),
            Some(&b"a\nb"[..])
        );
        assert_eq!(event_data(b": keepalive\n\n"), None);
        assert_eq!(event_data(b"database: 1\n\n"), None);
    }
}
