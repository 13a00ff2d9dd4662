//! Request records to the control plane: each request's record joins this worker's outbox
//! (see [`switchyard_core::outbox`]); the root context's tick sends the outbox in batches over the
//! configured cluster and keeps every batch until the control plane confirms it.

use std::cell::RefCell;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use switchyard_core::config::RecordSink;
use switchyard_core::outbox::{Ids, Outbox};

/// How long a batch may take before it counts as not stored (and is sent again).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::default();
    static IDS: RefCell<Option<Ids>> = const { RefCell::new(None) };
    /// The batch on its way: the call's token, the batch itself and when it left (Unix ms).
    static SENDING: RefCell<Option<(u32, Vec<u8>, u64)>> = const { RefCell::new(None) };
}

/// A new request id.
pub(crate) fn next_id(now_ns: u64) -> String {
    IDS.with(|ids| {
        ids.borrow_mut()
            .get_or_insert_with(|| Ids::new(now_ns))
            .next_id()
    })
}

/// Queues one record.
pub(crate) fn push(record: &[u8]) {
    let queued = OUTBOX.with(|o| o.borrow_mut().push(record));
    if !queued {
        super::metrics::count(|m| m.records_dropped += 1);
    }
}

/// Sends the next batch, if one may go now.
pub(crate) fn flush(sink: &RecordSink, now_ms: u64, key: Option<&[u8; 32]>) {
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
    // Signed with the data plane key: only Envoys holding it write records.
    let signature = key.map(|k| switchyard_core::sealed::sign_records(k, &batch));
    let mut headers = vec![
        (":method", "POST"),
        (":path", sink.path.as_str()),
        (":authority", sink.authority.as_str()),
        ("content-type", switchyard_contract::record::CONTENT_TYPE),
    ];
    if let Some(sig) = &signature {
        headers.push((switchyard_core::sealed::SIGNATURE_HEADER, sig.as_str()));
    }
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
