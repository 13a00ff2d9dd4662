//! Where failover plans (see [`switchyard_core::exchange::plan`]) wait for the upstream role. Both roles
//! run in one VM per worker thread and all of a request's callbacks run on that thread, so a
//! thread-local map keyed by a token the downstream role hands over in filter state is enough.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use switchyard_core::exchange::Plan;

/// Filter state naming the request's plan, set by the downstream role.
pub(crate) const PLAN_STATE: &str = "switchyard_plan";

thread_local! {
    static PLANS: RefCell<HashMap<u64, Rc<Plan>>> = RefCell::default();
    static NEXT: Cell<u64> = const { Cell::new(1) };
}

/// Keeps a plan until [`remove`]; returns its token.
pub(crate) fn insert(plan: Rc<Plan>) -> u64 {
    let token = NEXT.get();
    NEXT.set(token.wrapping_add(1).max(1));
    PLANS.with(|p| p.borrow_mut().insert(token, plan));
    token
}

pub(crate) fn get(token: u64) -> Option<Rc<Plan>> {
    PLANS.with(|p| p.borrow().get(&token).cloned())
}

pub(crate) fn remove(token: u64) {
    PLANS.with(|p| p.borrow_mut().remove(&token));
}
