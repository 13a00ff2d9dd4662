//! Pure ranking of a model's targets for one request: cooldowns first, then priority tiers, then
//! the model's strategy over the figures the control plane measured, with load shared by weight
//! among the targets the strategy cannot tell apart.
//!
//! Each figure becomes an *excess* over the best target of the tier: latency and cost relative to
//! the best (0.1 = 10 % slower or dearer), failures absolute and scaled (0.1 = one percentage
//! point more failures). `balanced` adds the three with its weights. Every target within
//! [`BAND`] of the best score is a candidate, and candidates share the load by weight, so that
//! near-equal targets are not starved and a target that has no figures yet (scored as the best)
//! gets measured.

pub use crate::config::{BalanceWeights, Strategy, TargetStats};

/// Targets within this score of the best are candidates.
pub const BAND: f64 = 0.1;

/// One target as the ranking sees it.
pub trait Rankable {
    fn weight(&self) -> u32;
    fn priority(&self) -> u32;
    fn stats(&self) -> &TargetStats;
}

/// The figure's excess over the tier's best, for every target (unknown figures score 0).
fn excess(values: &[Option<f64>], relative: bool) -> Vec<f64> {
    let best = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    values
        .iter()
        .map(|v| match v {
            Some(v) if v.is_finite() && best.is_finite() => {
                if relative {
                    (v - best) / best.max(1e-9)
                } else {
                    v - best
                }
            }
            _ => 0.0,
        })
        .collect()
}

/// The strategy's score of each target of a tier (lower is better; the best is 0 or close).
pub fn scores<T: Rankable>(tier: &[&T], strategy: Strategy, w: BalanceWeights) -> Vec<f64> {
    let latency = || {
        excess(
            &tier
                .iter()
                .map(|t| t.stats().latency_ms)
                .collect::<Vec<_>>(),
            true,
        )
    };
    let cost = || {
        excess(
            &tier
                .iter()
                .map(|t| t.stats().cost_per_mtok)
                .collect::<Vec<_>>(),
            true,
        )
    };
    // One percentage point more failures weighs as much as being 10 % slower.
    let failures = || {
        let f: Vec<Option<f64>> = tier
            .iter()
            .map(|t| t.stats().success_rate.map(|s| (1.0 - s) * 10.0))
            .collect();
        excess(&f, false)
    };
    match strategy {
        Strategy::Weighted => vec![0.0; tier.len()],
        Strategy::Latency => latency(),
        Strategy::Cost => cost(),
        Strategy::Reliability => failures(),
        Strategy::Balanced => {
            let total = (w.latency + w.cost + w.reliability).max(1e-9);
            let (l, c, f) = (latency(), cost(), failures());
            (0..tier.len())
                .map(|i| (w.latency * l[i] + w.cost * c[i] + w.reliability * f[i]) / total)
                .collect()
        }
    }
}

/// The position (in `targets`) of the target to use: targets cooling down (by the pushed figures
/// or by `local`, this Envoy's own cooldowns) are skipped unless all are; the lowest priority
/// tier left; the strategy's candidates within [`BAND`] of the best; one of them by weight, in
/// turn with `tick`.
pub fn choose<T: Rankable>(
    targets: &[T],
    strategy: Strategy,
    weights: BalanceWeights,
    now: u64,
    tick: u64,
    local: impl Fn(&T) -> Option<u64>,
) -> Option<usize> {
    let cooling = |t: &T| {
        t.stats().cooldown_until.is_some_and(|u| u > now) || local(t).is_some_and(|u| u > now)
    };
    let all_cooling = targets.iter().all(cooling);
    let usable: Vec<usize> = (0..targets.len())
        .filter(|&i| all_cooling || !cooling(&targets[i]))
        .collect();
    let tier_priority = usable.iter().map(|&i| targets[i].priority()).min()?;
    let tier: Vec<usize> = usable
        .into_iter()
        .filter(|&i| targets[i].priority() == tier_priority)
        .collect();
    let refs: Vec<&T> = tier.iter().map(|&i| &targets[i]).collect();
    let s = scores(&refs, strategy, weights);
    let best = s.iter().copied().fold(f64::INFINITY, f64::min);
    let candidates: Vec<usize> = tier
        .iter()
        .zip(&s)
        .filter(|(_, score)| **score <= best + BAND + 1e-9)
        .map(|(&i, _)| i)
        .collect();
    let total: u64 = candidates
        .iter()
        .map(|&i| u64::from(targets[i].weight()))
        .sum();
    if total == 0 {
        return None;
    }
    let mut slot = tick % total;
    for i in candidates {
        let w = u64::from(targets[i].weight());
        if slot < w {
            return Some(i);
        }
        slot -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        weight: u32,
        priority: u32,
        stats: TargetStats,
    }

    impl Rankable for T {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn priority(&self) -> u32 {
            self.priority
        }
        fn stats(&self) -> &TargetStats {
            &self.stats
        }
    }

    fn t(latency: Option<f64>, success: Option<f64>, cost: Option<f64>) -> T {
        T {
            weight: 1,
            priority: 0,
            stats: TargetStats {
                latency_ms: latency,
                success_rate: success,
                cost_per_mtok: cost,
                cooldown_until: None,
                recovered_at: None,
            },
        }
    }

    /// How often each target is chosen over `n` ticks.
    fn shares(targets: &[T], strategy: Strategy, now: u64) -> Vec<usize> {
        let mut counts = vec![0; targets.len()];
        for tick in 0..120 {
            if let Some(i) = choose(
                targets,
                strategy,
                BalanceWeights::default(),
                now,
                tick,
                |_| None,
            ) {
                counts[i] += 1;
            }
        }
        counts
    }

    #[test]
    fn each_strategy_picks_its_best() {
        // fast but dear and flaky / slow, cheap and reliable / middling
        let targets = [
            t(Some(200.0), Some(0.90), Some(10.0)),
            t(Some(900.0), Some(1.00), Some(0.5)),
            t(Some(450.0), Some(0.97), Some(3.0)),
        ];
        assert_eq!(shares(&targets, Strategy::Latency, 0), [120, 0, 0]);
        assert_eq!(shares(&targets, Strategy::Cost, 0), [0, 120, 0]);
        assert_eq!(shares(&targets, Strategy::Reliability, 0), [0, 120, 0]);
        assert_eq!(shares(&targets, Strategy::Weighted, 0), [40, 40, 40]);
        // Balanced: latency excess 0/3.5/1.25, cost 19/0/5, failures 1/0/0.3 -> the cheap,
        // reliable one wins on the sum despite being slowest.
        assert_eq!(shares(&targets, Strategy::Balanced, 0), [0, 120, 0]);
    }

    #[test]
    fn one_point_of_reliability_is_within_the_band() {
        let targets = [
            t(None, Some(1.0), None),
            t(None, Some(0.99), None),
            t(None, Some(0.95), None),
        ];
        assert_eq!(shares(&targets, Strategy::Reliability, 0), [60, 60, 0]);
    }

    #[test]
    fn near_equals_share_the_load_by_weight() {
        let mut targets = [
            t(Some(100.0), None, None),
            t(Some(105.0), None, None),
            t(Some(300.0), None, None),
        ];
        targets[1].weight = 2;
        assert_eq!(shares(&targets, Strategy::Latency, 0), [40, 80, 0]);
    }

    #[test]
    fn unknown_figures_count_as_the_best_so_they_get_measured() {
        let targets = [t(Some(100.0), None, None), t(None, None, None)];
        assert_eq!(shares(&targets, Strategy::Latency, 0), [60, 60]);
    }

    #[test]
    fn cooldowns_and_tiers() {
        let mut targets = [
            t(Some(100.0), None, None),
            t(Some(500.0), None, None),
            t(Some(50.0), None, None),
        ];
        targets[2].priority = 1; // a fallback tier, faster but not first
        assert_eq!(shares(&targets, Strategy::Latency, 0), [120, 0, 0]);
        // The best cools down until t=10: the next of its tier, then back.
        targets[0].stats.cooldown_until = Some(10);
        assert_eq!(shares(&targets, Strategy::Latency, 5), [0, 120, 0]);
        assert_eq!(shares(&targets, Strategy::Latency, 10), [120, 0, 0]);
        // The whole first tier cools down: the fallback tier.
        targets[1].stats.cooldown_until = Some(10);
        assert_eq!(shares(&targets, Strategy::Latency, 5), [0, 0, 120]);
        // Everything cools down: better to try than to refuse.
        targets[2].stats.cooldown_until = Some(10);
        assert_eq!(shares(&targets, Strategy::Latency, 5), [120, 0, 0]);
    }

    #[test]
    fn zero_weights_and_empty_lists_choose_nothing() {
        let mut targets = [t(None, None, None)];
        targets[0].weight = 0;
        let w = BalanceWeights::default();
        assert_eq!(
            choose(&targets, Strategy::Weighted, w, 0, 0, |_| None),
            None
        );
        let none: [T; 0] = [];
        assert_eq!(choose(&none, Strategy::Latency, w, 0, 0, |_| None), None);
    }

    #[test]
    fn local_cooldowns_count_like_pushed_ones() {
        let targets = [t(Some(100.0), None, None), t(Some(500.0), None, None)];
        let first: *const T = &targets[0];
        let local = |x: &T| std::ptr::eq(x, first).then_some(20);
        let w = BalanceWeights::default();
        assert_eq!(
            choose(&targets, Strategy::Latency, w, 10, 0, local),
            Some(1)
        );
        assert_eq!(
            choose(&targets, Strategy::Latency, w, 20, 0, local),
            Some(0)
        );
    }
}
