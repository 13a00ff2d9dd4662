//! From Envoy's reports to figures: the attempts reported since the last look are written to
//! the store, the recent window is read back and made into the figures routing ranks by; old
//! rows are pruned.

use std::sync::Arc;
use std::time::Duration;

use super::{Figures, Health, WINDOW_MINUTES};
use crate::probe::Probes;
use crate::store::{Store, StoreError};

/// How long the per-minute health rows are kept.
const KEPT_MINUTES: i64 = 7 * 24 * 60;
/// How often old rows are pruned.
const PRUNE_PERIOD: Duration = Duration::from_secs(3600);

/// What figures are made of: Envoy's reports (waiting in [`Health`]), the rows in the store,
/// and the probes' verdict.
#[derive(Clone)]
pub struct Reports {
    store: Store,
    health: Arc<Health>,
    probes: Arc<Probes>,
    probe_interval: Duration,
}

impl Reports {
    pub fn new(
        store: Store,
        health: Arc<Health>,
        probes: Arc<Probes>,
        probe_interval: Duration,
    ) -> Reports {
        Reports {
            store,
            health,
            probes,
            probe_interval,
        }
    }

    /// Where Envoy's reports wait to be written.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Writes the figures Envoy reported since the last call and computes the window's
    /// figures.
    pub async fn figures(&self) -> Result<Figures, StoreError> {
        let rows = self.health.take();
        if !rows.is_empty() {
            if let Err(e) = self.store.add_health(&rows).await {
                self.health.restore(rows);
                return Err(e);
            }
        }
        let minute = crate::store::now() / 60;
        let window = self.store.health_since(minute - WINDOW_MINUTES + 1).await?;
        let verdict = self.probes.verdict(self.probe_interval);
        let failing = self.health.failing(crate::store::now());
        Ok(Figures::new(
            window,
            &self.store.list_prices().await?,
            verdict,
            failing,
        ))
    }
}

/// Prunes health rows older than a week, at start and every hour.
pub async fn prune_old_rows(store: Store) {
    let mut tick = tokio::time::interval(PRUNE_PERIOD);
    loop {
        tick.tick().await;
        let minute = crate::store::now() / 60;
        if let Err(e) = store.prune_health(minute - KEPT_MINUTES).await {
            tracing::warn!("old health figures not pruned: {e}");
        }
    }
}
