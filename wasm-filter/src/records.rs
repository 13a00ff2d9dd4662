//! Request records to the control plane. A worker hands its requests' records to the records
//! service, a singleton on Envoy's main thread ([`Service`]), through a shared queue, a few
//! records at a time; the service keeps them in its outbox (see [`switchyard_core::outbox`]),
//! sends them in batches over the configured cluster and keeps every batch until the control
//! plane confirms it. What is proportional to a batch (signing it, the call) so never runs on a
//! worker thread, where it would hold up that worker's requests. A worker that finds no records
//! service (Envoy started from a bootstrap without it) keeps and sends its records itself.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use super::abi;
use switchyard_core::config::{RecordSink, RECORDS_ROOT_ID};
use switchyard_core::outbox::Outbox;

/// How long a batch may take before it counts as not stored (and is sent again).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The records service's queue.
const QUEUE: &str = "records";
/// Bytes of records a worker gathers before handing them over at once (a copy of at most this
/// much, well under the 100 µs a worker may spend at once); the tick hands over the rest.
const HANDOVER_BYTES: usize = 16 << 10;

thread_local! {
    /// Records this VM keeps and sends: the service's; a worker's only without a service.
    static OUTBOX: RefCell<Outbox> = RefCell::default();
    /// A worker's records not yet handed over (after the line naming their sink), the
    /// service's queue once found, and that line (shared data is not shared between VMs).
    static STAGED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static SINK_LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static QUEUE_ID: Cell<Option<u32>> = const { Cell::new(None) };
    /// The batch on its way: the call's token, the batch itself and when it left (Unix ms).
    static SENDING: RefCell<Option<(u32, Vec<u8>, u64)>> = const { RefCell::new(None) };
}

/// Queues one record (a worker's).
pub(crate) fn push(record: &[u8]) {
    if let Some(queue) = QUEUE_ID.get() {
        let full = STAGED.with(|s| {
            let mut s = s.borrow_mut();
            if s.is_empty() {
                SINK_LINE.with(|l| s.extend_from_slice(&l.borrow()));
            }
            s.extend_from_slice(record);
            s.push(b'\n');
            s.len() >= HANDOVER_BYTES
        });
        if full {
            hand_over(queue);
        }
        return;
    }
    let queued = OUTBOX.with(|o| o.borrow_mut().push(record));
    if !queued {
        super::metrics::count(|m| m.records_dropped += 1);
    }
}

/// Hands the worker's gathered records to the service; if it is gone, the worker keeps them.
fn hand_over(queue: u32) {
    STAGED.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_empty() {
            return;
        }
        if abi::enqueue(queue, &s).is_err() {
            QUEUE_ID.set(None);
            keep(records_of(&s).1);
        }
        s.clear();
    });
}

/// Records (whole lines) for this VM's own outbox.
fn keep(lines: &[u8]) {
    let dropped = OUTBOX.with(|o| o.borrow_mut().push_lines(lines));
    if dropped > 0 {
        super::metrics::count(|m| m.records_dropped += dropped);
    }
}

/// A worker's tick: finds the records service once it has started, hands it what was
/// gathered, and sends what the worker still keeps itself (nothing, with a service).
pub(crate) fn worker_tick(sink: &RecordSink, now_ms: u64, key: Option<&[u8; 32]>) {
    if QUEUE_ID.get().is_none() {
        QUEUE_ID.set(abi::resolve_queue(RECORDS_ROOT_ID, QUEUE));
    }
    if let Some(queue) = QUEUE_ID.get() {
        hand_over(queue);
    }
    flush(sink, now_ms, key);
}

/// The record sink of a worker's configuration, which its records handed over name first.
pub(crate) fn set_sink(sink: Option<&RecordSink>) {
    let mut line = sink
        .and_then(|s| serde_json::to_vec(s).ok())
        .unwrap_or_default();
    line.push(b'\n');
    SINK_LINE.with(|l| *l.borrow_mut() = line);
}

/// A handed-over message: the sink line, then the records.
fn records_of(message: &[u8]) -> (&[u8], &[u8]) {
    match message.iter().position(|&b| b == b'\n') {
        Some(at) => (&message[..at], &message[at + 1..]),
        None => (message, &[]),
    }
}

/// The records service: the root context of the singleton on Envoy's main thread.
#[derive(Default)]
pub(crate) struct Service {
    /// The sink the workers' configuration names (as last read, and its bytes).
    sink: Option<RecordSink>,
    sink_bytes: Vec<u8>,
}

impl Service {
    /// Registers the queue the workers hand their records to.
    pub(crate) fn start() -> Option<Service> {
        let queue = abi::register_queue(QUEUE)?;
        log::info!("switchyard: records service started (queue {queue})");
        Some(Service::default())
    }

    /// Takes every batch of records the workers handed over, and the sink they name.
    pub(crate) fn queue_ready(&mut self, queue: u32) {
        while let Some(message) = abi::dequeue(queue) {
            let (sink, records) = records_of(&message);
            if sink != self.sink_bytes.as_slice() {
                self.sink = serde_json::from_slice(sink).ok();
                self.sink_bytes = sink.to_vec();
            }
            keep(records);
        }
    }

    /// Sends the next batch to the sink the workers' configuration names.
    pub(crate) fn tick(&mut self, now_ms: u64, key: Option<&[u8; 32]>) {
        if let Some(sink) = &self.sink {
            flush(sink, now_ms, key);
        }
    }
}

/// Sends the next batch, if one may go now.
fn flush(sink: &RecordSink, now_ms: u64, key: Option<&[u8; 32]>) {
    // A call whose answer never came (its root context went away with a configuration
    // change) counts as failed.
    let lost = SENDING.with(|s| {
        let mut s = s.borrow_mut();
        let stale = s.as_ref().is_some_and(|(_, _, at)| {
            now_ms > at + 2 * u64::try_from(SEND_TIMEOUT.as_millis()).unwrap_or(u64::MAX)
        });
        if stale {
            s.take()
        } else {
            None
        }
    });
    if let Some((_, batch, _)) = lost {
        OUTBOX.with(|o| o.borrow_mut().done(batch, false, now_ms));
    }
    let Some(batch) = OUTBOX.with(|o| o.borrow_mut().take(now_ms)) else {
        return;
    };
    let signature = key.map(|k| switchyard_core::sealed::sign_records(k, &batch));
    let headers = switchyard_core::outbox::batch_headers(sink, &signature);
    match hostcalls::dispatch_http_call(&sink.cluster, headers, Some(&batch), vec![], SEND_TIMEOUT)
    {
        Ok(token) => SENDING.with(|s| *s.borrow_mut() = Some((token, batch, now_ms))),
        Err(e) => {
            log::warn!("switchyard: request records not sent: {e:?}");
            OUTBOX.with(|o| o.borrow_mut().done(batch, false, now_ms));
        }
    }
}

/// The control plane's answer to a batch (any status but 200, or none, means not stored).
pub(crate) fn answered(token: u32, now_ms: u64) {
    let Some(batch) = SENDING.with(|s| {
        let mut s = s.borrow_mut();
        match s.take() {
            Some((t, batch, _)) if t == token => Some(batch),
            other => {
                *s = other;
                None
            }
        }
    }) else {
        return;
    };
    let stored = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .is_some_and(|s| s == b"200");
    if !stored {
        log::warn!("switchyard: request records not stored by the control plane; sending again");
    }
    OUTBOX.with(|o| o.borrow_mut().done(batch, stored, now_ms));
}
