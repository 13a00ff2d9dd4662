//! Target health, measured from traffic: every request's record (see [`crate::usage`]) adds
//! each attempt (the final one, and those that failed before it) to its target's row for the
//! minute; rows are written to the store as a time series. The recent window becomes each
//! target's figures (time to first byte, success rate, price for the model's token mix), which
//! the filter ranks by.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use crate::pricing::default_price;
use switchyard_contract::config::{ModelRoute, Target, TargetStats};
use switchyard_contract::names::TargetName as Named;
use switchyard_contract::pricing::Price;

use crate::store::{HealthRow, PriceRow, RequestRow};

mod reports;
pub use reports::{prune_old_rows, Reports};

/// How far back figures look.
pub const WINDOW_MINUTES: i64 = 5;
/// Fewer attempts than this in the window say nothing yet (the target counts as unknown).
pub const MIN_ATTEMPTS: i64 = 3;
/// The token mix assumed for a model nothing was measured for: prompt share.
const DEFAULT_PROMPT_SHARE: f64 = 0.75;

/// Figures waiting to be written, by (provider, model, minute); and each target's latest
/// outcomes (Unix seconds, failed), so that a target failing on one Envoy cools down on all.
#[derive(Default)]
pub struct Health {
    pending: Mutex<HashMap<(String, String, i64), HealthRow>>,
    recent: Mutex<HashMap<TargetName, VecDeque<(i64, bool)>>>,
}

/// (provider, upstream model).
pub type TargetName = (String, String);

/// Outcomes older than this say nothing about a target's present.
pub const RECENT_SECS: i64 = 15;
/// At least this many recent attempts, at least half of them failed: the target cools down on
/// every Envoy.
pub const RECENT_FAILURES: usize = 3;
/// Outcomes kept per target.
const RECENT_KEPT: usize = 256;

impl Health {
    /// Targets failing right now (see [`RECENT_FAILURES`]), each with the time until which it
    /// should cool down (a few seconds past now, in steps of 5 s so that the configuration
    /// does not change with every update) and the time of its latest failure.
    pub fn failing(&self, now: i64) -> BTreeMap<TargetName, (u64, u64)> {
        let Ok(mut recent) = self.recent.lock() else {
            return BTreeMap::new();
        };
        recent.retain(|_, outcomes| {
            while outcomes
                .front()
                .is_some_and(|(at, _)| *at < now - RECENT_SECS)
            {
                outcomes.pop_front();
            }
            !outcomes.is_empty()
        });
        recent
            .iter()
            .filter(|(_, o)| {
                let failed = o.iter().filter(|(_, f)| *f).count();
                o.len() >= RECENT_FAILURES && failed * 2 >= o.len()
            })
            .map(|(target, o)| {
                let until = u64::try_from((now / 5 + 2) * 5).unwrap_or(0);
                let last = o.iter().filter(|(_, f)| *f).map(|(at, _)| *at).max();
                let last = last.map_or(0, |t| u64::try_from(t).unwrap_or(0));
                (target.clone(), (until, last))
            })
            .collect()
    }

    /// Adds one request's attempts; requests without a target (refused by the gateway) add
    /// nothing.
    pub fn record(&self, r: &RequestRow, now: i64) {
        self.record_all([r], now);
    }

    /// Adds the attempts of several requests, as [`Health::record`] each: summed per target
    /// first (a batch names few targets), then each target's row and outcomes taken under the
    /// locks once, instead of two locks and four copied names per request.
    pub fn record_all<'a>(&self, rows: impl IntoIterator<Item = &'a RequestRow>, now: i64) {
        let minute = now / 60;
        // A fast seeded hash: one lookup per stored record (SipHash was a fiftieth of ingest).
        let mut index: HashMap<(&'a str, &'a str), usize, foldhash::fast::RandomState> =
            HashMap::default();
        // Per target: what its row gains, and its outcomes (failed) in order.
        let mut targets: Vec<((&'a str, &'a str), HealthRow, Vec<bool>)> = Vec::new();
        let mut slot = |provider: &'a str, model: &'a str| {
            *index.entry((provider, model)).or_insert_with(|| {
                targets.push(((provider, model), HealthRow::default(), Vec::new()));
                targets.len() - 1
            })
        };
        let mut order: Vec<(usize, bool)> = Vec::new();
        let mut gains: Vec<(usize, &'a RequestRow, bool)> = Vec::new();
        for r in rows {
            if r.provider.is_empty() {
                continue;
            }
            for name in &r.failed {
                if let Some(Named { provider, model }) = Named::parse(name) {
                    order.push((slot(provider, model), true));
                }
            }
            let status = r.status;
            let failed = status == 0 || status >= 500 || status == 429;
            let at = slot(&r.provider, &r.upstream_model);
            order.push((at, failed));
            gains.push((at, r, failed));
        }
        for (at, failed) in order {
            let (_, row, outcomes) = &mut targets[at];
            outcomes.push(failed);
            if failed {
                // A failed attempt before the final one, or the final one failing.
                row.failures += 1;
            }
            row.attempts += 1;
        }
        for (at, r, failed) in gains {
            let row = &mut targets[at].1;
            if r.status == 429 {
                row.rate_limited += 1;
            }
            if let (Some(ms), false) = (r.upstream_ms, failed) {
                row.latency_ms_sum += ms;
                row.latency_count += 1;
            }
            row.prompt_tokens += r.prompt_tokens;
            row.completion_tokens += r.completion_tokens;
        }
        if targets.is_empty() {
            return;
        }
        if let Ok(mut pending) = self.pending.lock() {
            for ((provider, model), add, _) in &targets {
                pending_row(&mut pending, provider, model, minute).absorb(add);
            }
        }
        if let Ok(mut recent) = self.recent.lock() {
            for ((provider, model), _, failed) in &targets {
                let outcomes = recent
                    .entry(((*provider).to_owned(), (*model).to_owned()))
                    .or_default();
                for failed in failed {
                    if outcomes.len() == RECENT_KEPT {
                        outcomes.pop_front();
                    }
                    outcomes.push_back((now, *failed));
                }
            }
        }
    }

    /// Takes what is waiting to be written.
    pub fn take(&self) -> Vec<HealthRow> {
        self.pending
            .lock()
            .map(|mut p| p.drain().map(|(_, row)| row).collect())
            .unwrap_or_default()
    }

    /// Puts rows back after a failed write (added to anything recorded meanwhile).
    pub fn restore(&self, rows: Vec<HealthRow>) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        for row in rows {
            pending_row(&mut pending, &row.provider, &row.model, row.minute).absorb(&row);
        }
    }
}

/// The row waiting to be written for a target's minute, made when there is none.
fn pending_row<'m>(
    pending: &'m mut HashMap<(String, String, i64), HealthRow>,
    provider: &str,
    model: &str,
    minute: i64,
) -> &'m mut HealthRow {
    pending
        .entry((provider.to_owned(), model.to_owned(), minute))
        .or_insert_with(|| HealthRow {
            provider: provider.to_owned(),
            model: model.to_owned(),
            minute,
            ..Default::default()
        })
}

/// What the recent window says about each target, plus prices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// By (provider, model): the window's summed row.
    rows: HashMap<(String, String), HealthRow>,
    /// By (provider, model): prices an administrator set.
    prices: HashMap<(String, String), Price>,
    /// What the active probes found.
    pub probes: crate::probe::Verdict,
    /// Targets failing right now on some Envoy: cooling down on all until then (and when they
    /// last failed).
    pub failing: BTreeMap<TargetName, (u64, u64)>,
}

impl Figures {
    pub fn new(
        rows: Vec<HealthRow>,
        prices: &[PriceRow],
        probes: crate::probe::Verdict,
        failing: BTreeMap<TargetName, (u64, u64)>,
    ) -> Figures {
        Figures {
            probes,
            failing,
            rows: rows
                .into_iter()
                .map(|r| ((r.provider.clone(), r.model.clone()), r))
                .collect(),
            prices: prices
                .iter()
                .map(|p| ((p.provider.clone(), p.model.clone()), p.price))
                .collect(),
        }
    }

    /// The price of a provider model: the one set for it, else the list price of a
    /// well-known model of that name.
    pub fn price(&self, provider: &str, model: &str) -> Option<Price> {
        self.prices
            .get(&(provider.to_owned(), model.to_owned()))
            .copied()
            .or_else(|| default_price(model))
    }

    /// Each target's window, for the admin API.
    pub fn summary(&self) -> Vec<serde_json::Value> {
        let mut rows: Vec<&HealthRow> = self.rows.values().collect();
        rows.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "provider": r.provider,
                    "model": r.model,
                    "attempts": r.attempts,
                    "failures": r.failures,
                    "rate_limited": r.rate_limited,
                    "mean_first_byte_ms": (r.latency_count > 0)
                        .then(|| r.latency_ms_sum / r.latency_count),
                })
            })
            .collect()
    }

    /// Fills in the figures of one model's targets. Cost is priced at the model's measured
    /// token mix (the same for all its targets, so that they compare on equal terms).
    pub fn apply(&self, targets: &mut [Target]) {
        let (prompt, completion) = targets
            .iter()
            .filter_map(|t| self.rows.get(&(t.provider.clone(), t.model.clone())))
            .fold((0i64, 0i64), |(p, c), r| {
                (p + r.prompt_tokens, c + r.completion_tokens)
            });
        let prompt_share = if prompt + completion > 0 {
            prompt as f64 / (prompt + completion) as f64
        } else {
            DEFAULT_PROMPT_SHARE
        };
        for t in targets.iter_mut() {
            let key = (t.provider.clone(), t.model.clone());
            let mut stats = TargetStats::default();
            if let Some(r) = self.rows.get(&key).filter(|r| r.attempts >= MIN_ATTEMPTS) {
                stats.success_rate =
                    Some(round(1.0 - r.failures as f64 / r.attempts as f64, 1000.0));
                if r.latency_count > 0 {
                    stats.latency_ms = Some(significant(
                        r.latency_ms_sum as f64 / r.latency_count as f64,
                    ));
                }
            }
            if let Some(price) = self.price(&t.provider, &t.model) {
                let (input, output) = (price.input as f64 / 1e6, price.output as f64 / 1e6);
                stats.cost_per_mtok = Some(significant(
                    prompt_share * input + (1.0 - prompt_share) * output,
                ));
            }
            let recovered_at = self.probes.up_since.get(&t.provider).copied();
            // A probe that passed after the latest failure overrides it.
            let failing = self
                .failing
                .get(&key)
                .filter(|(_, last)| recovered_at.is_none_or(|r| r < *last))
                .map(|(until, _)| *until);
            stats.cooldown_until = self
                .probes
                .down_until
                .get(&t.provider)
                .copied()
                .max(failing);
            stats.recovered_at = recovered_at;
            t.stats = stats;
        }
    }
}

/// A latency or cost figure within this share of the one Envoy has is not sent again.
const STEADY_SHARE: f64 = 0.2;
/// A success rate within this of the one Envoy has is not sent again.
const STEADY_RATE: f64 = 0.02;

/// Keeps the figures Envoy already has where the new ones are close to them (see
/// [`STEADY_SHARE`] and [`STEADY_RATE`]): under steady traffic a mean latency or a token mix
/// wanders by a few percent from one window to the next, and each wander was a new
/// configuration every two seconds. Cooldowns and recoveries always go out as they are.
pub fn hold_steady(models: &mut [ModelRoute], before: &[ModelRoute]) {
    let before: HashMap<&str, &ModelRoute> = before.iter().map(|m| (m.name.as_str(), m)).collect();
    for model in models {
        let Some(old) = before.get(model.name.as_str()) else {
            continue;
        };
        for target in &mut model.targets {
            if let Some(was) = old
                .targets
                .iter()
                .find(|t| t.provider == target.provider && t.model == target.model)
            {
                steady(&mut target.stats, &was.stats);
            }
        }
    }
}

/// One target's figures: each new one close to the one before becomes that one.
fn steady(now: &mut TargetStats, before: &TargetStats) {
    let near_share = |new: f64, old: f64| old > 0.0 && ((new - old) / old).abs() < STEADY_SHARE;
    for (new, old) in [
        (&mut now.latency_ms, before.latency_ms),
        (&mut now.cost_per_mtok, before.cost_per_mtok),
    ] {
        if let (Some(n), Some(o)) = (*new, old) {
            if near_share(n, o) {
                *new = Some(o);
            }
        }
    }
    if let (Some(n), Some(o)) = (now.success_rate, before.success_rate) {
        if (n - o).abs() < STEADY_RATE {
            now.success_rate = Some(o);
        }
    }
}

fn round(v: f64, scale: f64) -> f64 {
    (v * scale).round() / scale
}

/// Two significant digits: small changes in a figure do not push a new configuration.
fn significant(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 0.0;
    }
    let magnitude = 10f64.powi(v.log10().floor() as i32 - 1);
    (v / magnitude).round() * magnitude
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_close_to_the_ones_envoy_has_stay_as_they_were() {
        let before = TargetStats {
            latency_ms: Some(100.0),
            success_rate: Some(0.99),
            cost_per_mtok: Some(2.0),
            cooldown_until: Some(10),
            recovered_at: None,
        };
        let mut now = TargetStats {
            latency_ms: Some(110.0),
            success_rate: Some(0.98),
            cost_per_mtok: Some(2.2),
            cooldown_until: Some(20),
            recovered_at: Some(5),
        };
        steady(&mut now, &before);
        assert_eq!(now.latency_ms, Some(100.0));
        assert_eq!(now.success_rate, Some(0.99));
        assert_eq!(now.cost_per_mtok, Some(2.0));
        // Cooldowns and recoveries are never held back.
        assert_eq!((now.cooldown_until, now.recovered_at), (Some(20), Some(5)));

        let mut moved = TargetStats {
            latency_ms: Some(130.0),
            success_rate: Some(0.9),
            cost_per_mtok: Some(1.5),
            ..TargetStats::default()
        };
        steady(&mut moved, &before);
        assert_eq!(
            (moved.latency_ms, moved.success_rate, moved.cost_per_mtok),
            (Some(130.0), Some(0.9), Some(1.5))
        );
        // A figure that appears or goes is sent.
        let mut fresh = TargetStats::default();
        steady(&mut fresh, &before);
        assert_eq!(fresh, TargetStats::default());
    }

    /// A request's row from the record fields the figures read.
    fn entry(record: &str, status: i64, ttfb_ms: i64) -> RequestRow {
        let v: serde_json::Value = serde_json::from_str(record).unwrap();
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        RequestRow {
            provider: text("provider"),
            upstream_model: text("upstream_model"),
            prompt_tokens: v["prompt_tokens"].as_i64().unwrap_or(0),
            completion_tokens: v["completion_tokens"].as_i64().unwrap_or(0),
            failed: serde_json::from_value(v["failed"].clone()).unwrap_or_default(),
            status,
            upstream_ms: Some(ttfb_ms),
            ..Default::default()
        }
    }

    #[test]
    fn attempts_are_counted_per_target_failed_ones_included() {
        let h = Health::default();
        let ok = r#"{"provider":"b","upstream_model":"m2","prompt_tokens":30,"completion_tokens":10,"failed":["a/m1"]}"#;
        h.record(&entry(ok, 200, 120), 420);
        h.record(&entry(ok, 200, 80), 420);
        h.record(
            &entry(r#"{"provider":"b","upstream_model":"m2"}"#, 503, 0),
            420,
        );
        h.record(
            &entry(r#"{"provider":"","upstream_model":""}"#, 401, 0),
            420,
        );
        let mut rows = h.take();
        rows.sort_by(|x, y| x.provider.cmp(&y.provider));
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].attempts, rows[0].failures),
            (2, 2),
            "a/m1 failed twice"
        );
        let b = &rows[1];
        assert_eq!((b.attempts, b.failures), (3, 1));
        assert_eq!((b.latency_ms_sum, b.latency_count), (200, 2));
        assert_eq!((b.prompt_tokens, b.completion_tokens), (60, 20));
        assert!(h.take().is_empty(), "taken once");
    }

    fn row(provider: &str, model: &str, attempts: i64, failures: i64, latency: i64) -> HealthRow {
        HealthRow {
            provider: provider.into(),
            model: model.into(),
            attempts,
            failures,
            latency_ms_sum: latency * (attempts - failures),
            latency_count: attempts - failures,
            prompt_tokens: 900,
            completion_tokens: 100,
            ..Default::default()
        }
    }

    #[test]
    fn figures_come_from_the_window_and_prices_from_the_token_mix() {
        let prices = [PriceRow {
            provider: "a".into(),
            model: "m1".into(),
            price: Price {
                input: 2_000_000,
                output: 12_000_000,
                ..Price::default()
            },
        }];
        let figures = Figures::new(
            vec![row("a", "m1", 10, 1, 250), row("b", "m2", 2, 0, 50)],
            &prices,
            Default::default(),
            Default::default(),
        );
        let mut targets = vec![
            Target {
                provider: "a".into(),
                model: "m1".into(),
                weight: 1,
                priority: 0,
                stats: TargetStats::default(),
                capabilities: None,
            },
            Target {
                provider: "b".into(),
                model: "m2".into(),
                weight: 1,
                priority: 0,
                stats: TargetStats::default(),
                capabilities: None,
            },
        ];
        figures.apply(&mut targets);
        let a = targets[0].stats;
        assert_eq!(a.success_rate, Some(0.9));
        assert_eq!(a.latency_ms, Some(250.0));
        // 90 % prompt tokens: 0.9 * 2 + 0.1 * 12 = 3 USD per million.
        assert_eq!(a.cost_per_mtok, Some(3.0));
        assert!(
            targets[1].stats.is_unknown(),
            "two attempts say nothing yet"
        );
        assert_eq!(significant(1234.0), 1200.0);
        assert_eq!(significant(0.0456), 0.046);
    }

    #[test]
    fn a_target_failing_now_cools_down_everywhere_until_its_failures_age() {
        let h = Health::default();
        let failed = r#"{"provider":"b","upstream_model":"m2","failed":["a/m1"]}"#;
        for t in 0..3 {
            h.record(&entry(failed, 200, 10), 100 + t);
        }
        let failing = h.failing(103);
        let a = ("a".to_string(), "m1".to_string());
        assert_eq!(
            failing.get(&a),
            Some(&(110, 102)),
            "until 5 to 10 s past now"
        );
        assert!(
            !failing.contains_key(&("b".to_string(), "m2".to_string())),
            "b answered"
        );
        assert!(h.failing(100 + RECENT_SECS + 3).is_empty(), "aged out");
        // Cooling targets carry it to the filter.
        let figures = Figures::new(Vec::new(), &[], Default::default(), failing);
        let mut targets = vec![Target {
            provider: "a".into(),
            model: "m1".into(),
            weight: 1,
            priority: 0,
            stats: TargetStats::default(),
            capabilities: None,
        }];
        figures.apply(&mut targets);
        assert_eq!(targets[0].stats.cooldown_until, Some(110));
    }
}
