//! Failover plans: what the upstream filter needs for each attempt of a request that the
//! downstream filter sent to a failover cluster. Both filters run in one VM per worker thread and
//! all of a request's callbacks run on that thread, so a thread-local map keyed by a token the
//! downstream filter hands over in filter state is enough.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::attempt::Ask;
use crate::route::Index;
use crate::translate::Translator;

pub(crate) struct Plan {
    pub index: Rc<Index>,
    pub ask: Ask,
    /// The client's request body (every attempt starts from it).
    pub body: Vec<u8>,
    /// The target the downstream filter prepared the request for (position in the model's
    /// targets); the body Envoy replays to each attempt is that target's.
    pub primary: usize,
    /// The provider key it chose (position in the provider's keys).
    pub primary_key: Option<usize>,
    /// The target whose headers the request carries now (upstream header changes persist
    /// from one attempt to the next).
    pub headers_for: usize,
    /// Set by an attempt prepared for another target than `primary`: its translator, taken by
    /// the downstream filter when the answer arrives.
    pub switched: Option<Option<Box<dyn Translator>>>,
    /// The target of the latest attempt.
    pub current: usize,
    /// Every attempt in order.
    pub attempts: Vec<Tried>,
}

/// One attempt: its target, the provider key it sent, the status it answered (0: none yet, or
/// never: connect failure, reset, timeout).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tried {
    pub target: usize,
    pub key: Option<usize>,
    pub status: u32,
}

pub(crate) type Shared = Rc<RefCell<Plan>>;

thread_local! {
    static PLANS: RefCell<HashMap<u64, Shared>> = RefCell::default();
    static NEXT: Cell<u64> = const { Cell::new(1) };
}

/// Keeps a plan until [`remove`]; returns its token.
pub(crate) fn insert(plan: Plan) -> (u64, Shared) {
    let token = NEXT.get();
    NEXT.set(token.wrapping_add(1).max(1));
    let shared = Rc::new(RefCell::new(plan));
    PLANS.with(|p| p.borrow_mut().insert(token, shared.clone()));
    (token, shared)
}

pub(crate) fn get(token: u64) -> Option<Shared> {
    PLANS.with(|p| p.borrow().get(&token).cloned())
}

pub(crate) fn remove(token: u64) {
    PLANS.with(|p| p.borrow_mut().remove(&token));
}
