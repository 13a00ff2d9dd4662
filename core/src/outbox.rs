//! Pure bookkeeping for request records on their way to the control plane.
//!
//! Each worker keeps its records as JSON lines and sends them in batches; a batch is kept until
//! the control plane answers that it stored it, and sent again otherwise (the control plane
//! stores each request id once, so a batch sent twice counts once). While the control plane is
//! unreachable, records wait here, up to [`MAX_PENDING`] bytes per worker; beyond that new
//! records are dropped and counted.

use std::hash::{BuildHasher, Hasher};

/// Most bytes of records a worker keeps waiting (about 150,000 records).
pub const MAX_PENDING: usize = 64 << 20;
/// Most bytes sent in one request.
pub const MAX_BATCH: usize = 4 << 20;
/// First wait after a failed send; doubles up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: u64 = 250;
const MAX_BACKOFF_MS: u64 = 10_000;

#[derive(Debug, Default)]
pub struct Outbox {
    /// Records waiting, one JSON object per line.
    pending: Vec<u8>,
    /// A batch is on its way.
    sending: bool,
    failures: u32,
    /// No send before this time (Unix ms), after a failure.
    retry_at: u64,
    /// Records refused because the outbox was full.
    pub dropped: u64,
}

impl Outbox {
    /// Queues one record (a JSON object without newlines); false if the outbox is full.
    pub fn push(&mut self, record: &[u8]) -> bool {
        if self.pending.len() + record.len() + 1 > MAX_PENDING {
            self.dropped += 1;
            return false;
        }
        self.pending.extend_from_slice(record);
        self.pending.push(b'\n');
        true
    }

    /// Queues records handed over together: whole lines, each ending with a newline. All or
    /// none: returns how many were dropped (and counted) because they do not fit, 0 if queued.
    pub fn push_lines(&mut self, lines: &[u8]) -> u64 {
        if lines.is_empty() {
            return 0;
        }
        if self.pending.len() + lines.len() > MAX_PENDING || lines.last() != Some(&b'\n') {
            let dropped = memchr::memchr_iter(b'\n', lines).count().max(1) as u64;
            self.dropped += dropped;
            return dropped;
        }
        self.pending.extend_from_slice(lines);
        0
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The next batch to send, if one may go now: whole lines, at most [`MAX_BATCH`] bytes
    /// (or one longer line). The caller must report the outcome with [`Outbox::done`].
    pub fn take(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if self.sending || self.pending.is_empty() || now_ms < self.retry_at {
            return None;
        }
        self.sending = true;
        if self.pending.len() <= MAX_BATCH {
            return Some(std::mem::take(&mut self.pending));
        }
        let cut = self.pending[..MAX_BATCH]
            .iter()
            .rposition(|&b| b == b'\n')
            .or_else(|| self.pending.iter().position(|&b| b == b'\n'))
            .map_or(self.pending.len(), |i| i + 1);
        Some(self.pending.drain(..cut).collect())
    }

    /// The outcome of sending `batch`: stored, or to be sent again (first, before newer
    /// records) after a growing pause.
    pub fn done(&mut self, batch: Vec<u8>, stored: bool, now_ms: u64) {
        self.sending = false;
        if stored {
            self.failures = 0;
            self.retry_at = 0;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF_MS
            .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
            .min(MAX_BACKOFF_MS);
        self.retry_at = now_ms + backoff;
        let mut again = batch;
        again.extend_from_slice(&self.pending);
        self.pending = again;
    }
}

/// Request ids: 32 hex digits, the time in milliseconds (44 bits) then 84 bits unpredictable
/// and unique without coordination between workers or Envoys (SipHash under keys drawn from
/// the host's random source, over a counter). The seed (the clock at start, in ns) is mixed
/// in as well, in case the random source is weak. Time first so that ids made later sort
/// later: the control plane's indexes keyed by request id then grow at their right edge
/// instead of taking each insert at a random place (random ids made those inserts the most
/// costly part of storing a record).
#[derive(Debug)]
pub struct Ids {
    keys: [std::collections::hash_map::RandomState; 2],
    seed: u64,
    next: u64,
}

impl Ids {
    pub fn new(seed: u64) -> Ids {
        Ids {
            keys: [Default::default(), Default::default()],
            seed,
            next: 0,
        }
    }

    /// The next id as 32 lower-case hex digits, made at `now_ms` (Unix ms).
    pub fn next_id(&mut self, now_ms: u64) -> String {
        self.next += 1;
        let [a, b] = &self.keys;
        let half = |k: &std::collections::hash_map::RandomState| {
            let mut h = k.build_hasher();
            h.write_u64(self.seed);
            h.write_u64(self.next);
            h.finish()
        };
        // 44 bits of milliseconds last until the year 2527.
        let time = now_ms & ((1 << 44) - 1);
        // By hand (`format!` was most of making an id): 11 digits of time, 16 and 5 of hash.
        let mut id = String::with_capacity(32);
        push_hex(&mut id, time, 11);
        push_hex(&mut id, half(a), 16);
        push_hex(&mut id, half(b), 5);
        id
    }
}

/// Appends the low `digits` hex digits of `n`, lower case, zero-padded.
fn push_hex(out: &mut String, n: u64, digits: u32) {
    for shift in (0..digits).rev() {
        let nibble = (n >> (shift * 4)) & 0xf;
        out.push(char::from(b"0123456789abcdef"[nibble as usize]));
    }
}

thread_local! {
    /// This thread's id maker (a wasm VM's, or a native worker's).
    static THREAD_IDS: std::cell::RefCell<Option<Ids>> = const { std::cell::RefCell::new(None) };
}

/// A new request id from this thread's [`Ids`], seeded on first use from `now_ns` and the
/// thread (two threads started in the same nanosecond still differ).
pub fn next_request_id(now_ns: u64) -> String {
    THREAD_IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let ids = ids.get_or_insert_with(|| {
            let here = std::ptr::from_ref(&THREAD_IDS) as usize as u64;
            Ids::new(now_ns ^ here.rotate_left(32))
        });
        ids.next_id(now_ns / 1_000_000)
    })
}

/// The headers of the call that carries a batch of records to `sink`, with the batch's
/// `signature` (by the data plane key: only Envoys holding it write records).
pub fn batch_headers<'a>(
    sink: &'a crate::config::RecordSink,
    signature: &'a Option<String>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        (":method", "POST"),
        (":path", sink.path.as_str()),
        (":authority", sink.authority.as_str()),
        ("content-type", switchyard_contract::record::CONTENT_TYPE),
    ];
    if let Some(sig) = signature {
        headers.push((crate::sealed::SIGNATURE_HEADER, sig.as_str()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(batch: &[u8]) -> Vec<&str> {
        std::str::from_utf8(batch).unwrap().lines().collect()
    }

    #[test]
    fn records_handed_over_together_join_whole_or_not_at_all() {
        let mut o = Outbox::default();
        o.push(b"{\"n\":1}");
        assert_eq!(o.push_lines(b"{\"n\":2}\n{\"n\":3}\n"), 0);
        assert_eq!(o.push_lines(b""), 0);
        assert_eq!(
            o.push_lines(b"{\"n\":4}\n{\"cut"),
            1,
            "a partial line is refused"
        );
        assert_eq!(o.dropped, 1);
        let batch = o.take(1_000).expect("a batch");
        assert_eq!(lines(&batch), ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        let mut full = Outbox {
            pending: vec![b'x'; MAX_PENDING - 4],
            ..Outbox::default()
        };
        assert_eq!(full.push_lines(b"a\nb\nc\n"), 3);
        assert_eq!(full.dropped, 3);
    }

    #[test]
    fn a_batch_is_kept_until_stored_and_sent_first_again() {
        let mut o = Outbox::default();
        o.push(b"{\"n\":1}");
        o.push(b"{\"n\":2}");
        let batch = o.take(1_000).expect("a batch");
        assert_eq!(lines(&batch), ["{\"n\":1}", "{\"n\":2}"]);
        assert_eq!(o.take(1_000), None, "one batch at a time");
        o.push(b"{\"n\":3}");
        o.done(batch, false, 1_000);
        assert_eq!(o.take(1_100), None, "waits after a failure");
        let again = o.take(1_250).expect("sent again");
        assert_eq!(lines(&again), ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        o.done(again, false, 1_250);
        assert_eq!(o.take(1_600), None, "the pause doubles");
        let third = o.take(1_750).expect("after 500 ms");
        o.done(third, true, 1_750);
        assert!(o.is_empty());
        o.push(b"{}");
        assert!(o.take(1_751).is_some(), "no pause after a success");
    }

    #[test]
    fn batches_are_whole_lines_of_bounded_size_and_a_full_outbox_drops() {
        let mut o = Outbox::default();
        let record = vec![b'x'; 1 << 20];
        for _ in 0..6 {
            assert!(o.push(&record));
        }
        let first = o.take(0).unwrap();
        assert_eq!(first.len(), 3 * ((1 << 20) + 1), "four would pass 4 MiB");
        assert_eq!(first.last(), Some(&b'\n'));
        o.done(first, true, 0);
        assert_eq!(o.take(0).unwrap().len(), 3 * ((1 << 20) + 1));

        let mut full = Outbox::default();
        while full.push(&record) {}
        assert_eq!(full.dropped, 1);
        assert!(full.len() <= MAX_PENDING);
    }

    #[test]
    fn ids_are_distinct_hex_in_time_order() {
        let mut ids = Ids::new(1);
        let mut other = Ids::new(1);
        let now = 1_790_000_000_000;
        let a = ids.next_id(now);
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(&a[..11], &format!("{now:011x}"), "the time comes first");
        assert_ne!(a, ids.next_id(now));
        assert_ne!(a, other.next_id(now), "another worker's ids differ");
        assert!(other.next_id(now + 1) > a, "a later id sorts later");
        assert!(ids.next_id(now + 1) > other.next_id(now));
        // The same time, the rest differs (84 bits of it are unpredictable).
        assert_ne!(ids.next_id(now)[11..], other.next_id(now)[11..]);
        let mut hex = String::new();
        super::push_hex(&mut hex, 0xabc, 5);
        super::push_hex(&mut hex, u64::MAX, 16);
        assert_eq!(hex, "00abcffffffffffffffff");
    }
}
