//! The host side of leases (see [`switchyard_core::lease`]) for the native build: a request's
//! ask leaves as its stream's callout (the stream waits for the answer); on the main thread's
//! tick, what expired leases left goes back to the control plane as the configuration's
//! callouts, and an answer that does not come puts their reports back. Asks and returns are
//! signed with the data plane key and go over the records' cluster.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use switchyard_contract::lease::{LeaseAsk, LeaseGrant};
use switchyard_core::lease::NoGrant;
use switchyard_core::route::Index;

use crate::ffi::{self, Callouts as _, Config, Stream};
use crate::shared::Host;

/// Keys watched at most (keys come from the configuration, each key once).
const MAX_KEYS: usize = 100_000;

/// Keys whose lease a worker asked for and that have not been seen idle since (the tick looks
/// at them), and the returns sent on the tick and not answered yet, by configuration (its
/// address) and callout id (each configuration numbers its own callouts).
struct Watch {
    keys: BTreeSet<String>,
    returns: HashMap<(usize, u64), LeaseAsk>,
}

static WATCH: Mutex<Option<Watch>> = Mutex::new(None);

fn watch<R>(f: impl FnOnce(&mut Watch) -> R) -> R {
    let mut guard = WATCH.lock().unwrap_or_else(PoisonError::into_inner);
    f(guard.get_or_insert_with(|| Watch {
        keys: BTreeSet::new(),
        returns: HashMap::new(),
    }))
}

/// The HTTP call that carries an ask or a return to the control plane.
struct Call<'a> {
    cluster: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: Vec<u8>,
    timeout_ms: u64,
}

/// The call that carries `ask`: cluster, headers (with the body's signature) and body.
fn call<'a>(
    index: &'a Index,
    ask: &LeaseAsk,
    key: Option<&[u8; 32]>,
    signature: &'a mut Option<String>,
) -> Option<Call<'a>> {
    let sink = index.records.as_ref()?;
    let body = serde_json::to_vec(ask).ok()?;
    *signature = key.map(|k| switchyard_core::sealed::sign_lease(k, &body));
    let mut headers = vec![
        (":method", "POST"),
        (":path", switchyard_contract::lease::PATH),
        (":authority", sink.authority.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(sig) = signature.as_deref() {
        headers.push((switchyard_core::sealed::SIGNATURE_HEADER, sig));
    }
    Some(Call {
        cluster: sink.cluster.as_str(),
        headers,
        body,
        timeout_ms: u64::from(index.lease_timeout_ms),
    })
}

/// Sends a request's `ask` as its stream's callout (the answer comes to the stream's callout
/// hook); `false` if it could not leave. Its key is watched by the tick from now on.
pub(crate) fn ask(stream: Stream, index: &Index, ask: &LeaseAsk, key: Option<&[u8; 32]>) -> bool {
    watch(|w| {
        if w.keys.len() < MAX_KEYS {
            w.keys.insert(ask.key.clone());
        }
    });
    let mut signature = None;
    let Some(c) = call(index, ask, key, &mut signature) else {
        return false;
    };
    stream
        .callout(c.cluster, &c.headers, &c.body, c.timeout_ms)
        .is_some()
}

/// The grant in a callout's answer (any status but 200, or a body that does not read, is none).
pub(crate) fn grant(answered: bool, status_200: bool, body: &[u8]) -> Result<LeaseGrant, NoGrant> {
    if !answered {
        return Err(NoGrant::NoAnswer);
    }
    if !status_200 {
        return Err(NoGrant::Status);
    }
    serde_json::from_slice(body).map_err(|_| NoGrant::Unreadable)
}

/// On the main thread's tick: each watched key's lease gives back what it left once it
/// expired; a key whose lease is idle is no longer watched.
pub(crate) fn tick(config: Config, index: &Index, key: Option<&[u8; 32]>, now_ms: u64) {
    let instance = switchyard_core::lease::instance(&Host);
    let keys: Vec<String> = watch(|w| w.keys.iter().cloned().collect());
    for name in keys {
        match switchyard_core::lease::give_back(&Host, &instance, &name, now_ms) {
            switchyard_core::lease::Return::Later => {}
            switchyard_core::lease::Return::Idle => watch(|w| {
                w.keys.remove(&name);
            }),
            switchyard_core::lease::Return::Ask(ret) => {
                let mut signature = None;
                let sent = call(index, &ret, key, &mut signature)
                    .and_then(|c| config.callout(c.cluster, &c.headers, &c.body, c.timeout_ms));
                match sent {
                    Some(id) => watch(|w| {
                        w.returns.insert((config.0 as usize, id), ret);
                    }),
                    None => switchyard_core::lease::put_back(&Host, &name, &ret, false),
                }
            }
        }
    }
}

/// Whether callout `id` was a return sent on the tick (then its answer is handled here:
/// without a grant, what it reported waits for the next ask).
pub(crate) fn returned(config: usize, id: u64, grant: Option<LeaseGrant>) -> bool {
    let Some(ret) = watch(|w| w.returns.remove(&(config, id))) else {
        return false;
    };
    if grant.is_none() {
        ffi::log(
            ffi::LOG_INFO,
            "switchyard: a lease's return was not answered; kept",
        );
        switchyard_core::lease::put_back(&Host, &ret.key, &ret, true);
    }
    true
}

/// Configuration `config` is going: Envoy drops its callouts unanswered, so the returns it
/// carries are put back now (the next tick sends them again).
pub(crate) fn config_gone(config: usize) {
    let lost: Vec<LeaseAsk> = watch(|w| {
        w.returns
            .extract_if(|(c, _), _| *c == config)
            .map(|(_, ret)| ret)
            .collect()
    });
    for ret in lost {
        switchyard_core::lease::put_back(&Host, &ret.key, &ret, true);
    }
}
