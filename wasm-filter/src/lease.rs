//! The host side of leases (see [`switchyard_core::lease`]): asks leave for the control plane
//! over the records' cluster, signed with the data plane key; the tick gives back what expired
//! leases of this worker's keys left, and an answer that does not come puts their reports back.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use switchyard_contract::lease::{LeaseAsk, LeaseGrant};
use switchyard_core::lease::NoGrant;
use switchyard_core::route::Index;

use super::shared::Host;

/// Keys this worker watched at most (keys come from the configuration, each key once).
const MAX_KEYS: usize = 100_000;

thread_local! {
    /// Keys whose lease this worker asked for, and has not seen idle since: the tick looks at
    /// them.
    static KEYS: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
    /// Returns sent on the tick and not answered yet, by call token.
    static RETURNS: RefCell<HashMap<u32, LeaseAsk>> = RefCell::new(HashMap::new());
}

/// Sends `ask`, signed with `key`, to the control plane over the records' cluster, waiting at
/// most the configuration's lease timeout (then the request goes on: fail open): the call's
/// token, or `None` if it could not leave. Its key is watched by the tick from now on.
pub(crate) fn send(index: &Index, ask: &LeaseAsk, key: Option<&[u8; 32]>) -> Option<u32> {
    let sink = index.records.as_ref()?;
    KEYS.with(|k| {
        let mut keys = k.borrow_mut();
        if keys.len() < MAX_KEYS {
            keys.insert(ask.key.clone());
        }
    });
    let body = serde_json::to_vec(ask).unwrap_or_default();
    let signature = key.map(|k| switchyard_core::sealed::sign_lease(k, &body));
    let mut headers = vec![
        (":method", "POST"),
        (":path", switchyard_contract::lease::PATH),
        (":authority", sink.authority.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(sig) = &signature {
        headers.push((switchyard_core::sealed::SIGNATURE_HEADER, sig.as_str()));
    }
    let timeout = std::time::Duration::from_millis(u64::from(index.lease_timeout_ms));
    hostcalls::dispatch_http_call(&sink.cluster, headers, Some(&body), vec![], timeout).ok()
}

/// The answer to the call that just came back: the grant, if it is one (any status but 200, or
/// a body that does not read, is none).
pub(crate) fn grant(body_size: usize) -> Result<LeaseGrant, NoGrant> {
    // A call that got no answer (a reset, the timeout) has no headers.
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .ok_or(NoGrant::NoAnswer)?;
    if status != b"200" {
        return Err(NoGrant::Status);
    }
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(NoGrant::Unreadable)
}

/// On the tick: each watched key's lease gives back what it left once it expired; a key
/// whose lease is idle is no longer watched.
pub(crate) fn tick(index: &Index, key: Option<&[u8; 32]>, now_ms: u64) {
    let instance = switchyard_core::lease::instance(&Host);
    let keys: Vec<String> = KEYS.with(|k| k.borrow().iter().cloned().collect());
    for name in keys {
        match switchyard_core::lease::give_back(&Host, &instance, &name, now_ms) {
            switchyard_core::lease::Return::Later => {}
            switchyard_core::lease::Return::Idle => {
                KEYS.with(|k| k.borrow_mut().remove(&name));
            }
            switchyard_core::lease::Return::Ask(ask) => match send(index, &ask, key) {
                Some(token) => {
                    RETURNS.with(|r| r.borrow_mut().insert(token, ask));
                }
                None => switchyard_core::lease::put_back(&Host, &name, &ask, false),
            },
        }
    }
}

/// Whether `token` was a return sent on the tick (then its answer is handled here: without
/// one, what it reported waits for the next ask).
pub(crate) fn returned(token: u32, body_size: usize) -> bool {
    let Some(ask) = RETURNS.with(|r| r.borrow_mut().remove(&token)) else {
        return false;
    };
    if grant(body_size).is_err() {
        switchyard_core::lease::put_back(&Host, &ask.key, &ask, true);
    }
    true
}
