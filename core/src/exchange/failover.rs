//! One failover attempt (the upstream filter role): Envoy runs it once per attempt, after it
//! has chosen the attempt's endpoint. An attempt at another target than the one the downstream
//! role prepared the request for is prepared here again, from the client's body in the
//! [`Plan`], for that target's provider; every attempt's answer counts towards its target's
//! health. The attempt writes to the plan only its own result.

use std::rc::Rc;

use crate::cooldown::Cooldowns;
use crate::error::FilterError;
use crate::headers::HeaderBlock;
use crate::request::TopLevel;

use super::health::{self, Observation};
use super::plan::Plan;
use super::{forward, target, Outgoing, Reply, Shared, Step};

pub struct FailoverAttempt {
    plan: Rc<Plan>,
    /// This attempt's position in the plan's attempts.
    attempt: usize,
    /// The target (position in the model's targets) to prepare the request for, when the
    /// request does not already carry its headers and body.
    prepare_for: Option<usize>,
}

impl FailoverAttempt {
    /// The attempt's request headers: `target` is the name in its endpoint's metadata. `None`
    /// when the plan's model or that target is unknown (the request goes on untouched).
    pub fn start(plan: Rc<Plan>, target: &[u8]) -> Option<(FailoverAttempt, Step)> {
        let position = plan.index.find_target(plan.entry()?, target)?;
        let begun = plan.begin(position);
        let attempt = FailoverAttempt {
            plan,
            attempt: begun.attempt,
            prepare_for: (!begun.ready).then_some(position),
        };
        let step = if begun.ready {
            Step::Continue
        } else {
            Step::Pause
        };
        Some((attempt, step))
    }

    /// The request body (Envoy's replay of the primary's); `headers` reads the request's headers
    /// now. The request is rewritten for this attempt's target when it must be.
    pub fn request_body(
        &mut self,
        end_of_stream: bool,
        headers: impl FnOnce() -> HeaderBlock,
        cooldowns: &Cooldowns,
        shared: &impl Shared,
        out: &mut impl Outgoing,
    ) -> Result<Step, FilterError> {
        let Some(position) = self.prepare_for else {
            return Ok(Step::Continue);
        };
        if !end_of_stream {
            return Ok(Step::Pause);
        }
        self.prepare_for = None;
        self.prepare(position, headers, cooldowns, shared, out)?;
        Ok(Step::Continue)
    }

    /// Rewrites the request for the target at `position`.
    fn prepare(
        &self,
        position: usize,
        headers: impl FnOnce() -> HeaderBlock,
        cooldowns: &Cooldowns,
        shared: &impl Shared,
        out: &mut impl Outgoing,
    ) -> Result<(), FilterError> {
        let p = &*self.plan;
        let index = &*p.index;
        let model = &p.ask.model;
        let entry = p.entry().ok_or_else(|| FilterError::unknown_model(model))?;
        let now = shared.now_secs();
        let choice = target::at(index, entry, position, model, cooldowns, shared, now)?;
        let top = TopLevel::parse(&p.body)?;
        let current = headers();
        let authority = [(":authority", choice.provider.authority.as_bytes())];
        // What an earlier attempt set for another provider goes.
        let extra = forward::Extra {
            headers: &authority,
            stale: index.provider_headers(),
        };
        let translator = forward::send(
            index, &p.ask, &p.body, &top, &choice, now, &current, extra, out,
        )?;
        p.prepared(self.attempt, position, choice.key_position(), translator);
        Ok(())
    }

    /// A reply in the client's API shape, in place of this attempt.
    pub fn reply(&self, error: &FilterError) -> Reply {
        Reply::error(error, self.plan.ask.endpoint.anthropic())
    }

    /// Request trailers arrived: an attempt that still had to be prepared is not sent on
    /// unprepared (the downstream role refuses requests with trailers anyway).
    pub fn request_trailers(&mut self) -> Option<Reply> {
        self.prepare_for
            .take()
            .map(|_| self.reply(&super::trailers_not_allowed()))
    }

    /// The attempt's answer arrived with `status`: what it tells of its target and key.
    pub fn answered(&self, status: u32) -> Vec<Observation> {
        let Some(tried) = self.plan.answered(self.attempt, status) else {
            return Vec::new();
        };
        let target = self.plan.entry().and_then(|e| e.targets.get(tried.target));
        target.map_or_else(Vec::new, |t| {
            health::attribute(&self.plan.index, t.provider, &t.model, tried.key, status).collect()
        })
    }

    /// The plan's index (for applying observations).
    pub fn index(&self) -> &crate::route::Index {
        &self.plan.index
    }
}
