//! Where failover plans (see [`switchyard_core::exchange::plan`]) wait for the upstream role.
//! Envoy runs both roles of a request on one worker thread, so a thread-local map keyed by a
//! token the downstream role hands over in filter state is enough.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use switchyard_core::exchange::Plan;

use crate::Settings;

/// Filter state naming the request's plan, set by the downstream role.
pub(crate) const PLAN_STATE: &str = "switchyard_plan";

type Entry = (Rc<Plan>, Arc<Settings>);

thread_local! {
    static PLANS: RefCell<HashMap<u64, Entry>> = RefCell::default();
    static NEXT: Cell<u64> = const { Cell::new(1) };
}

/// Keeps a plan (and its configuration's settings) until [`remove`]; returns its token.
pub(crate) fn insert(plan: Rc<Plan>, settings: Arc<Settings>) -> u64 {
    let token = NEXT.get();
    NEXT.set(token.wrapping_add(1).max(1));
    PLANS.with(|p| p.borrow_mut().insert(token, (plan, settings)));
    token
}

pub(crate) fn get(token: u64) -> Option<Entry> {
    PLANS.with(|p| p.borrow().get(&token).cloned())
}

pub(crate) fn remove(token: u64) {
    PLANS.with(|p| p.borrow_mut().remove(&token));
}
