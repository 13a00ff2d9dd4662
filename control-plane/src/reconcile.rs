//! Reconciliation: the only code that computes the gateway state (store -> snapshot -> xDS)
//! and publishes it to every Envoy. It keeps the state it computed last, so that reads never
//! recompute, and hands a [`Publisher`] to whatever changes the store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::config::Gateway;
use crate::health::{Figures, Reports};
use crate::limits::Limits;
use crate::secrets::Secrets;
use crate::snapshot::GatewayState;
use crate::ssrf::Guard;
use crate::store::{Store, StoreError};
use crate::xds::acks::AckState;
use crate::xds::{build, cache::SnapshotCache};

tokio::task_local! {
    /// The latest snapshot serial published while running [`tracking_writes`]'s future.
    static WRITTEN: std::cell::Cell<u64>;
}

/// Runs `work` (an admin request) and returns with its output the serial of the latest snapshot
/// it published, if it published any.
pub async fn tracking_writes<F: std::future::Future>(work: F) -> (F::Output, Option<u64>) {
    WRITTEN
        .scope(std::cell::Cell::new(0), async move {
            let out = work.await;
            let serial = WRITTEN.with(std::cell::Cell::get);
            (out, (serial > 0).then_some(serial))
        })
        .await
}

/// How often users' providers' names are resolved and vetted again.
pub const RECHECK_SECS: i64 = 30;
/// How often reported attempts are written and the figures recomputed.
const FIGURES_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a state was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The snapshot failed its consistency check (a bug: nothing was published).
    #[error("inconsistent snapshot not published: {0}")]
    Inconsistent(String),
}

/// Computes the gateway state and publishes it to the snapshot cache.
pub struct Reconciler {
    store: Store,
    secrets: Arc<Secrets>,
    gateway: Gateway,
    wasm_path: PathBuf,
    /// Vertex AI access tokens minted from service account keys (see [`crate::gcp`]).
    tokens: crate::gcp::Tokens,
    /// Users' providers are reached at the addresses this vets.
    guard: Guard,
    limits: Arc<Limits>,
    cache: Arc<SnapshotCache>,
    /// One computation and publication at a time.
    publish_lock: tokio::sync::Mutex<()>,
    /// The figures the configuration ranks by.
    figures: Mutex<Figures>,
    /// The state computed last (what Envoy has, once published).
    kept: Mutex<Option<Arc<GatewayState>>>,
    /// The last computed state has providers whose addresses the control plane vets.
    vetting: AtomicBool,
    /// When the configuration was last recomputed for the SSRF re-check (Unix seconds).
    rechecked_at: AtomicI64,
    /// Wakes the Vertex token refresher when the configuration changes.
    tokens_wanted: Arc<Notify>,
}

impl Reconciler {
    pub fn new(
        store: Store,
        secrets: Arc<Secrets>,
        gateway: Gateway,
        wasm_path: PathBuf,
        guard: Guard,
        limits: Arc<Limits>,
    ) -> Reconciler {
        Reconciler {
            store,
            secrets,
            gateway,
            wasm_path,
            tokens: crate::gcp::Tokens::default(),
            guard,
            limits,
            cache: Arc::new(SnapshotCache::default()),
            publish_lock: tokio::sync::Mutex::new(()),
            figures: Mutex::default(),
            kept: Mutex::default(),
            vetting: AtomicBool::new(false),
            rechecked_at: AtomicI64::new(0),
            tokens_wanted: Arc::new(Notify::new()),
        }
    }

    /// The snapshots Envoys subscribe to.
    pub fn cache(&self) -> &Arc<SnapshotCache> {
        &self.cache
    }

    /// The Vertex access tokens the state carries (kept fresh by [`crate::vertex_tokens`]).
    pub fn tokens(&self) -> &crate::gcp::Tokens {
        &self.tokens
    }

    /// Notified at every publication: a new or changed Vertex key needs a token.
    pub fn tokens_wanted(&self) -> Arc<Notify> {
        self.tokens_wanted.clone()
    }

    /// Computes the gateway state from the store, ranked by the current figures, and keeps it.
    pub async fn compute(&self) -> Result<Arc<GatewayState>, StoreError> {
        let figures = self.figures();
        // Measured figures move only when they move much: each move is a new configuration
        // for every Envoy (a parse, and the filter's metrics defined again).
        let steady = self.kept.lock().ok().and_then(|k| k.clone());
        let mut state = crate::snapshot::load(
            &self.store,
            &self.secrets.master,
            self.gateway.max_body_bytes,
            &self.tokens,
            &figures,
            &self.guard,
            steady,
        )
        .await?;
        self.limits.set_table(state.limits.clone());
        self.vetting.store(state.vetted, Ordering::Relaxed);
        self.secrets.prepare_for_dataplane(&mut state.filter);
        let state = Arc::new(state);
        if let Ok(mut kept) = self.kept.lock() {
            *kept = Some(state.clone());
        }
        Ok(state)
    }

    /// Recomputes the gateway state from the store and publishes it to every Envoy.
    pub async fn publish(&self) -> Result<u64, PublishError> {
        let _guard = self.publish_lock.lock().await;
        let state = self.compute().await?;
        // A new or changed Vertex key needs a token: let the refresher look.
        self.tokens_wanted.notify_one();
        let resources = build::resources(&self.gateway, &state, &self.wasm_path);
        let serial = self
            .cache
            .set(resources)
            .map_err(PublishError::Inconsistent)?;
        crate::metrics::add(&crate::metrics::METRICS.snapshots_published, 1);
        tracing::info!(serial, filter_version = %state.filter.version, "snapshot published");
        // An admin request that publishes answers once Envoy holds what it wrote.
        let _ = WRITTEN.try_with(|w| w.set(w.get().max(serial)));
        Ok(serial)
    }

    /// Recomputes the gateway state (new health figures, addresses vetted again) and publishes
    /// it when that changes what Envoy has (figures are rounded, so most updates change
    /// nothing).
    pub async fn publish_figures(&self) -> Result<(), PublishError> {
        let _guard = self.publish_lock.lock().await;
        let state = self.compute().await?;
        let resources = build::resources(&self.gateway, &state, &self.wasm_path);
        if let Some(serial) = self
            .cache
            .set_if_changed(resources)
            .map_err(PublishError::Inconsistent)?
        {
            crate::metrics::add(&crate::metrics::METRICS.snapshots_published, 1);
            tracing::info!(serial, filter_version = %state.filter.version, "snapshot published (health figures)");
        }
        Ok(())
    }

    /// The figures the configuration currently ranks by.
    pub fn figures(&self) -> Figures {
        self.figures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Takes new figures; returns whether they differ from the current ones (then the state
    /// is worth publishing again).
    pub fn set_figures(&self, figures: Figures) -> bool {
        let Ok(mut current) = self.figures.lock() else {
            return false;
        };
        if *current == figures {
            return false;
        }
        *current = figures;
        true
    }

    /// The state computed last; computed now when none was yet.
    pub async fn current(&self) -> Result<Arc<GatewayState>, StoreError> {
        let kept = self.kept.lock().ok().and_then(|k| k.clone());
        match kept {
            Some(state) => Ok(state),
            None => self.compute().await,
        }
    }

    /// Whether it is time to recompute the configuration regardless of figures (every
    /// [`RECHECK_SECS`], when some provider's addresses are vetted by the control plane):
    /// users' providers' names are resolved and vetted again then.
    fn recheck_due(&self, now: i64) -> bool {
        if !self.vetting.load(Ordering::Relaxed) {
            return false;
        }
        let last = self.rechecked_at.load(Ordering::Relaxed);
        if now - last < RECHECK_SECS {
            return false;
        }
        self.rechecked_at.store(now, Ordering::Relaxed);
        true
    }

    /// Every [`FIGURES_PERIOD`]: Envoy's reports become figures, published when they move;
    /// and, when a re-check is due, users' providers' names are resolved and vetted again (the
    /// connect-time SSRF check) and what changed is published.
    pub async fn follow_figures(self: Arc<Self>, reports: Reports) {
        let mut tick = tokio::time::interval(FIGURES_PERIOD);
        loop {
            tick.tick().await;
            match reports.figures().await {
                Ok(figures) => {
                    if self.set_figures(figures) {
                        if let Err(e) = self.publish_figures().await {
                            tracing::error!("publishing new health figures: {e}");
                        }
                    }
                }
                Err(e) => tracing::warn!("health figures not updated: {e}"),
            }
            if self.recheck_due(crate::store::now()) {
                if let Err(e) = self.publish_figures().await {
                    tracing::error!("recomputing the configuration: {e}");
                }
            }
        }
    }

    /// The narrow handle writers publish through.
    pub fn publisher(self: &Arc<Self>) -> Publisher {
        Publisher(self.clone())
    }
}

/// What code that changes the store holds to have the change reach Envoy, and to read the
/// state Envoy has: cheap to clone.
#[derive(Clone)]
pub struct Publisher(Arc<Reconciler>);

impl Publisher {
    /// Recomputes the gateway state from the store and publishes it to every Envoy; returns
    /// the snapshot's serial.
    pub async fn publish(&self) -> Result<u64, PublishError> {
        self.0.publish().await
    }

    /// Waits until every connected Envoy runs snapshot `serial` (or a later one), at most the
    /// configured `gateway.ack_timeout_ms`; returns where each stands then.
    pub async fn wait_acked(&self, serial: u64) -> AckState {
        let timeout = std::time::Duration::from_millis(self.0.gateway.ack_timeout_ms);
        self.0.cache.wait_acked(serial, timeout).await
    }

    /// Where every connected Envoy stands towards snapshot `serial`, now.
    pub fn ack_state(&self, serial: u64) -> AckState {
        self.0.cache.ack_state(serial)
    }

    /// The serial of the snapshot published last.
    pub fn serial(&self) -> u64 {
        self.0.cache.current().serial
    }

    /// Takes new figures; returns whether they changed (see [`Reconciler::set_figures`]).
    pub fn set_figures(&self, figures: Figures) -> bool {
        self.0.set_figures(figures)
    }

    /// The figures the configuration currently ranks by.
    pub fn figures(&self) -> Figures {
        self.0.figures()
    }

    /// Every (provider, upstream model) clients can reach in the kept state, sorted.
    pub async fn served_models(&self) -> Result<Vec<(String, String)>, StoreError> {
        let state = self.0.current().await?;
        let set: std::collections::BTreeSet<(String, String)> = state
            .filter
            .models
            .iter()
            .flat_map(|m| m.targets.iter())
            .map(|t| (t.provider.clone(), t.model.clone()))
            .collect();
        Ok(set.into_iter().collect())
    }
}
