//! Pure, incremental Server-Sent Events framing: bytes in, whole events out, the rest carried
//! over; and the writing of events.
//!
//! Events end at a blank line; lines end in LF, CRLF or CR (WHATWG HTML, "event stream
//! interpretation"). Nothing is interpreted beyond framing and the `data` field.

use serde::Serialize;

/// The longest event kept while it is incomplete: a provider chooses how long its events are,
/// and one without an end must not grow the filter's memory without bound. Longer events are
/// skipped (up to their end) and counted (see [`EventSplitter::skipped`]).
pub const MAX_EVENT_BYTES: usize = 8 << 20;

/// Splits a byte stream into whole events, carrying a partial event to the next chunk.
#[derive(Debug, Default)]
pub struct EventSplitter {
    pending: Vec<u8>,
    /// Inside an event over [`MAX_EVENT_BYTES`]: its bytes are dropped until it ends; the last
    /// bytes seen are kept to find an end split across chunks.
    skipping: Option<Vec<u8>>,
    skipped: u32,
}

impl EventSplitter {
    /// How many events were too long and were skipped.
    pub fn skipped(&self) -> u32 {
        self.skipped
    }

    /// Whether bytes of an unfinished event are waiting for the next chunk.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether bytes from earlier chunks (an unfinished event, or the tail of one being skipped)
    /// wait: the next chunk's events do not start at its first byte.
    pub fn carries(&self) -> bool {
        !self.pending.is_empty() || self.skipping.is_some()
    }

    /// Takes the unfinished event (at end of stream).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Feeds one chunk; calls `on_event` with each whole event, raw bytes including its
    /// terminating blank line, in order. Returns whether the chunk was consumed exactly at an
    /// event boundary with nothing carried in or out (the caller may then forward it untouched).
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8])) -> bool {
        if let Some(tail) = self.skipping.take() {
            // Find where the oversized event ends (its tail joined to this chunk), then go on
            // with what follows it.
            let joined = [tail.as_slice(), chunk].concat();
            // The first event found starts where the skipped one did: its end is ours.
            let mut end = None;
            split_events(&joined, &mut |e| {
                end.get_or_insert(e.len());
            });
            let Some(end) = end else {
                let keep = joined.len().saturating_sub(3);
                self.skipping = Some(joined[keep..].to_vec());
                return false;
            };
            let rest = &joined[end..];
            let used = split_events(rest, &mut on_event);
            self.keep_pending(&rest[used..]);
            return false;
        }
        if self.pending.is_empty() {
            let used = split_events(chunk, &mut on_event);
            self.keep_pending(&chunk[used..]);
            used == chunk.len()
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let used = split_events(&pending, &mut on_event);
            self.pending = pending;
            self.pending.drain(..used);
            if self.pending.len() > MAX_EVENT_BYTES {
                let tail = std::mem::take(&mut self.pending);
                self.skip(&tail);
            }
            false
        }
    }

    /// Keeps an unfinished event's bytes, or starts skipping it when it is too long already.
    fn keep_pending(&mut self, rest: &[u8]) {
        if rest.len() > MAX_EVENT_BYTES {
            self.skip(rest);
        } else {
            self.pending.extend_from_slice(rest);
        }
    }

    fn skip(&mut self, event_so_far: &[u8]) {
        self.skipped = self.skipped.saturating_add(1);
        self.pending = Vec::new();
        let keep = event_so_far.len().saturating_sub(3);
        self.skipping = Some(event_so_far[keep..].to_vec());
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

/// Appends one `data:` event holding `value` as JSON.
pub fn write_data(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// Appends one event named `name` (`event: name`) holding `value` as JSON.
pub fn write_event(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_data(out, value);
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
    fn an_event_without_end_is_skipped_not_kept() {
        let mut s = EventSplitter::default();
        let mut events = Vec::new();
        s.feed(b"data: a\n\ndata: ", |e| events.push(e.to_vec()));
        let big = vec![b'x'; MAX_EVENT_BYTES / 4 + 1];
        for _ in 0..5 {
            s.feed(&big, |e| events.push(e.to_vec()));
            assert!(s.pending.len() <= MAX_EVENT_BYTES, "bounded");
        }
        assert_eq!(s.skipped(), 1);
        // Its end, split across chunks, then a normal event.
        s.feed(b"xx\r\n", |e| events.push(e.to_vec()));
        s.feed(b"\r\ndata: b\n\n", |e| events.push(e.to_vec()));
        assert_eq!(
            events,
            vec![b"data: a\n\n".to_vec(), b"data: b\n\n".to_vec()]
        );
        assert!(!s.has_pending());
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
    fn written_events_are_data_lines() {
        let mut out = Vec::new();
        write_data(&mut out, &[1, 2]);
        write_event(&mut out, "e", &"x");
        assert_eq!(out, b"data: [1,2]\n\nevent: e\ndata: \"x\"\n\n");
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
