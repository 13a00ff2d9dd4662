//! Request records to the control plane. Workers append each record to one process-wide
//! queue (a copy under a lock, nothing proportional to a batch); on Envoy's main thread, the
//! configuration's tick moves the queue into the outbox (see [`switchyard_core::outbox`]),
//! signs the next batch and sends it over the configured cluster, keeping every batch until
//! the control plane confirms it. So no batch work runs on a worker thread.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use switchyard_core::config::RecordSink;
use switchyard_core::outbox::Outbox;

use crate::ffi::{self, Callouts as _, Config};

/// How long a batch may take before it counts as not stored (and is sent again).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of records waiting for the main thread beyond which new ones are dropped (and
/// counted): the control plane has been away for long.
const QUEUE_LIMIT: usize = 64 << 20;

/// Records the workers queued (one per line) and how many were dropped, not yet taken.
static QUEUE: Mutex<(Vec<u8>, u64)> = Mutex::new((Vec::new(), 0));

/// A batch on its way to the control plane.
struct InFlight {
    /// The configuration whose callout carries it (its address) and the callout's id.
    config: usize,
    id: u64,
    batch: Vec<u8>,
    /// When it left, Unix ms.
    at: u64,
}

/// The main thread's side: the outbox and the batch on its way. Only the main thread touches
/// it; the lock is for the compiler.
struct Sending {
    outbox: Outbox,
    batch: Option<InFlight>,
}

impl Sending {
    /// The batch on its way, if `which` says it is the one meant, is done: stored, or to be
    /// sent again. Whether there was one.
    fn settle(
        &mut self,
        which: impl FnOnce(&mut InFlight) -> bool,
        stored: bool,
        now_ms: u64,
    ) -> bool {
        let Some(sent) = self.batch.take_if(which) else {
            return false;
        };
        self.outbox.done(sent.batch, stored, now_ms);
        true
    }
}

static SENDING: Mutex<Option<Sending>> = Mutex::new(None);

/// Queues one record (a worker's).
pub(crate) fn push(record: &[u8]) {
    let mut queue = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
    if queue.0.len() + record.len() > QUEUE_LIMIT {
        queue.1 += 1;
        return;
    }
    queue.0.extend_from_slice(record);
    queue.0.push(b'\n');
}

/// The main thread's tick: takes what the workers queued, then sends the next batch to
/// `sink` through `config`'s callouts. Returns the records dropped since the last tick.
pub(crate) fn tick(config: Config, sink: &RecordSink, now_ms: u64, key: Option<&[u8; 32]>) -> u64 {
    let (lines, mut dropped) = {
        let mut queue = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut queue.0), std::mem::take(&mut queue.1))
    };
    let mut guard = SENDING.lock().unwrap_or_else(PoisonError::into_inner);
    let sending = guard.get_or_insert_with(|| Sending {
        outbox: Outbox::default(),
        batch: None,
    });
    if !lines.is_empty() {
        dropped += sending.outbox.push_lines(&lines);
    }
    // A call whose answer never came (its configuration went away) counts as failed.
    let timeout_ms = u64::try_from(SEND_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    sending.settle(|b| now_ms > b.at + 2 * timeout_ms, false, now_ms);
    if sending.batch.is_some() {
        return dropped;
    }
    let Some(batch) = sending.outbox.take(now_ms) else {
        return dropped;
    };
    let signature = key.map(|k| switchyard_core::sealed::sign_records(k, &batch));
    let headers = switchyard_core::outbox::batch_headers(sink, &signature);
    match config.callout(&sink.cluster, &headers, &batch, timeout_ms) {
        Some(id) => {
            sending.batch = Some(InFlight {
                config: config.0 as usize,
                id,
                batch,
                at: now_ms,
            });
        }
        None => {
            ffi::log(ffi::LOG_WARN, "switchyard: request records not sent");
            sending.outbox.done(batch, false, now_ms);
        }
    }
    dropped
}

/// The control plane's answer to callout `id` of configuration `config` (`stored`: it
/// answered 200).
pub(crate) fn answered(config: usize, id: u64, stored: bool, now_ms: u64) {
    let mut guard = SENDING.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(sending) = guard.as_mut() else {
        return;
    };
    let ours = |b: &mut InFlight| b.config == config && b.id == id;
    if sending.settle(ours, stored, now_ms) && !stored {
        ffi::log(
            ffi::LOG_WARN,
            "switchyard: request records not stored by the control plane; sending again",
        );
    }
}

/// Configuration `config` is going: Envoy drops its callouts unanswered, so a batch it carries
/// counts as not stored now (the next tick sends it again through the newest configuration;
/// the control plane stores each record once), not after the timeout.
pub(crate) fn config_gone(config: usize, now_ms: u64) {
    let mut guard = SENDING.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(sending) = guard.as_mut() else {
        return;
    };
    sending.settle(|b| b.config == config, false, now_ms);
}
