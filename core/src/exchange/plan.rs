//! A failover plan: what a request sent to a failover cluster carries from the downstream role
//! to each of its upstream attempts, and what the attempts tell back.
//!
//! Data flows one way. The downstream role writes the plan once, when it forwards the request
//! ([`Plan::new`]); from then on every field but the attempts is read only. Each upstream attempt
//! writes only its own result, through [`Plan::begin`], [`Plan::prepared`] and
//! [`Plan::answered`]; the downstream role reads those results when the answer comes back
//! ([`Plan::take_switch`], [`Plan::attempts`]). Both roles run on one worker thread, so the
//! attempts sit in a `RefCell`, each borrow lasting one method.

use std::cell::{Ref, RefCell};
use std::sync::Arc;

use crate::attempt::Ask;
use crate::route::{Index, ModelEntry};
use crate::translate::Translator;

pub struct Plan {
    pub index: Arc<Index>,
    pub ask: Ask,
    /// The client's request body (every attempt starts from it).
    pub body: Vec<u8>,
    /// The target the downstream role prepared the request for (position in the model's
    /// targets); the body Envoy replays to each attempt is that target's.
    pub primary: usize,
    /// The provider key it chose (position in the provider's keys).
    pub primary_key: Option<usize>,
    attempts: RefCell<Attempts>,
}

struct Attempts {
    tried: Vec<Tried>,
    /// The target whose headers the request carries now (upstream header changes persist
    /// from one attempt to the next).
    headers_for: usize,
    /// Set by an attempt prepared for another target than `primary`: its translator, taken by
    /// the downstream role when the answer arrives.
    switched: Option<Option<Box<dyn Translator>>>,
}

/// One attempt: its target, the provider key it sent, the status it answered (0: none yet, or
/// never: connect failure, reset, timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tried {
    pub target: usize,
    pub key: Option<usize>,
    pub status: u32,
}

/// An attempt just begun: its position among the attempts, and whether the request already is
/// as it must be for its target (else it is prepared again from the client's body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begun {
    pub attempt: usize,
    pub ready: bool,
}

/// The answer came from an attempt prepared for another target than the primary: its target,
/// key and translator.
pub struct Switch {
    pub target: usize,
    pub key: Option<usize>,
    pub translator: Option<Box<dyn Translator>>,
}

impl Plan {
    pub fn new(
        index: Arc<Index>,
        ask: Ask,
        body: Vec<u8>,
        primary: usize,
        primary_key: Option<usize>,
    ) -> Plan {
        Plan {
            index,
            ask,
            body,
            primary,
            primary_key,
            attempts: RefCell::new(Attempts {
                tried: Vec::new(),
                headers_for: primary,
                switched: None,
            }),
        }
    }

    /// The model's targets.
    pub fn entry(&self) -> Option<&ModelEntry> {
        self.index.targets(&self.ask.model)
    }

    /// An attempt at the target at `position` begins (upstream role, request headers).
    pub fn begin(&self, position: usize) -> Begun {
        let mut a = self.attempts.borrow_mut();
        // Another try at a target this request already tried goes out afresh (with another
        // key, if its first one failed).
        let tried_before = a.tried.iter().any(|t| t.target == position);
        let ready = position == self.primary && a.headers_for == self.primary && !tried_before;
        a.tried.push(Tried {
            target: position,
            key: if ready { self.primary_key } else { None },
            status: 0,
        });
        if ready {
            // The request is as the downstream role prepared it; a previous attempt may have
            // switched, this one answers with the primary's translator.
            a.switched = None;
        }
        Begun {
            attempt: a.tried.len() - 1,
            ready,
        }
    }

    /// `attempt` was prepared for the target at `position` with the key at `key` (upstream
    /// role, request body).
    pub fn prepared(
        &self,
        attempt: usize,
        position: usize,
        key: Option<usize>,
        translator: Option<Box<dyn Translator>>,
    ) {
        let mut a = self.attempts.borrow_mut();
        if let Some(t) = a.tried.get_mut(attempt) {
            t.key = key;
        }
        a.headers_for = position;
        a.switched = Some(translator);
    }

    /// `attempt` was answered with `status` (upstream role, response headers).
    pub fn answered(&self, attempt: usize, status: u32) -> Option<Tried> {
        let mut a = self.attempts.borrow_mut();
        let t = a.tried.get_mut(attempt)?;
        t.status = status;
        Some(*t)
    }

    /// Whether the answer is from an attempt at another target than the primary, and then
    /// that attempt's (downstream role, response headers; taken once).
    pub fn take_switch(&self) -> Option<Switch> {
        let mut a = self.attempts.borrow_mut();
        let translator = a.switched.take()?;
        let last = *a.tried.last()?;
        Some(Switch {
            target: last.target,
            key: last.key,
            translator,
        })
    }

    /// Every attempt so far, in order.
    pub fn attempts(&self) -> Ref<'_, [Tried]> {
        Ref::map(self.attempts.borrow(), |a| a.tried.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Endpoint;

    fn plan() -> Plan {
        let index = Index::from_json(br#"{"version":"1","max_body_bytes":1,"models":[]}"#, None)
            .expect("config");
        let ask = Ask {
            endpoint: Endpoint::ChatCompletions,
            model: "m".into(),
            stream: false,
            request_id: String::new(),
        };
        Plan::new(Arc::new(index), ask, b"{}".to_vec(), 0, Some(1))
    }

    #[test]
    fn the_primary_goes_as_prepared_and_another_target_is_prepared_again() {
        let p = plan();
        assert_eq!(
            p.begin(0),
            Begun {
                attempt: 0,
                ready: true
            }
        );
        assert_eq!(p.answered(0, 503).map(|t| t.key), Some(Some(1)));
        assert!(p.take_switch().is_none(), "the primary answered");
        let second = p.begin(1);
        assert!(!second.ready);
        p.prepared(second.attempt, 1, Some(0), None);
        // Back at the primary: its headers were overwritten, and it was tried.
        assert!(!p.begin(0).ready);
        let switch = p.take_switch().expect("the last attempt was prepared here");
        assert_eq!((switch.target, switch.key), (0, None));
        assert_eq!(
            p.attempts().iter().map(|t| t.status).collect::<Vec<_>>(),
            [503, 0, 0]
        );
    }
}
