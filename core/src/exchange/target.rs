//! Target choice, in one place: the best target of a model that can serve the request and has a
//! provider key to spare (downstream role), or the target Envoy's failover chose (upstream role),
//! each with its provider key.

use crate::config::{Provider, ProviderKey};
use crate::cooldown::Cooldowns;
use crate::error::FilterError;
use crate::route::{Index, ModelEntry, ResolvedTarget};

use super::keys::{self, NoKey};
use super::shared::Shared;

/// A target and the provider key to send it.
pub struct Choice<'i> {
    /// Position in the model's targets.
    pub position: usize,
    pub target: &'i ResolvedTarget,
    pub provider: &'i Provider,
    pub key: &'i ProviderKey,
}

impl Choice<'_> {
    /// The key's position in its provider's keys.
    pub fn key_position(&self) -> Option<usize> {
        self.provider
            .keys
            .iter()
            .position(|k| std::ptr::eq(k, self.key))
    }
}

/// The target for a request for `model` that `needs` capabilities, at `now` (Unix seconds).
/// Targets that cannot serve what the request needs (tools, images) are out from the start;
/// then the best target whose provider has a key to spare this second (QPS limits): one whose
/// keys are all spent, or that has no usable key at all, is passed over for the next best.
pub fn choose<'i>(
    index: &'i Index,
    entry: &'i ModelEntry,
    model: &str,
    needs: u8,
    cooldowns: &Cooldowns,
    shared: &impl Shared,
    now: u64,
) -> Result<Choice<'i>, FilterError> {
    let mut spent: Vec<usize> = (0..entry.targets.len())
        .filter(|&i| entry.targets[i].capabilities & needs != needs)
        .collect();
    if spent.len() == entry.targets.len() {
        return Err(FilterError::not_capable(model, needs));
    }
    let mut no_key = None;
    loop {
        let position = index
            .choose_position_except(entry, now, cooldowns, &spent)
            .ok_or_else(|| FilterError::unknown_model(model))?;
        let target = &entry.targets[position];
        let provider = index.provider(target.provider);
        if spent.contains(&position) {
            return Err(match no_key {
                Some(NoKey::Missing) => NoKey::Missing.error(provider, model),
                _ => FilterError::keys_saturated(model),
            });
        }
        match keys::pick(index, provider, cooldowns, shared, now) {
            Ok(key) => {
                return Ok(Choice {
                    position,
                    target,
                    provider,
                    key,
                })
            }
            Err(e) => {
                spent.push(position);
                // A spent QPS limit is what the client hears of when nothing else works.
                if no_key != Some(NoKey::Saturated) {
                    no_key = Some(e);
                }
            }
        }
    }
}

/// The target at `position`, which Envoy's failover chose, with a key of its provider.
pub fn at<'i>(
    index: &'i Index,
    entry: &'i ModelEntry,
    position: usize,
    model: &str,
    cooldowns: &Cooldowns,
    shared: &impl Shared,
    now: u64,
) -> Result<Choice<'i>, FilterError> {
    let target = entry
        .targets
        .get(position)
        .ok_or_else(|| FilterError::unknown_model(model))?;
    let provider = index.provider(target.provider);
    let key = keys::pick(index, provider, cooldowns, shared, now)
        .map_err(|e| e.error(provider, model))?;
    Ok(Choice {
        position,
        target,
        provider,
        key,
    })
}
