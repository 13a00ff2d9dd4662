//! The running control plane's shared state, as parts: each admin router takes the ones it
//! uses (through axum's `FromRef`), and each background task is handed its own.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::config::{DiscoverySpec, Gateway, ProbeSpec};
use crate::discovery::{Discoverer, Runner};
use crate::health::{Health, Reports};
use crate::identity::{AdminToken, Identity};
use crate::limits::Limits;
use crate::probe::Probes;
use crate::reconcile::{Publisher, Reconciler};
use crate::secrets::Secrets;
use crate::store::Store;

/// Every part of the running control plane, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub secrets: Arc<Secrets>,
    pub identity: Arc<Identity>,
    pub admin_token: AdminToken,
    /// Global limits: the limits service's state (see [`crate::limits`]).
    pub limits: Arc<Limits>,
    /// Active probes of provider keys (see [`crate::probe`]).
    pub probes: Arc<Probes>,
    /// Envoy's reports, made into figures (see [`crate::health`]).
    pub reports: Reports,
    /// Model discovery's dependencies, schedule and outcomes (see [`crate::discovery`]).
    pub discoverer: Discoverer,
    /// What computes and publishes the gateway state; others hold its [`Publisher`].
    pub reconciler: Arc<Reconciler>,
    pub publisher: Publisher,
}

/// What [`AppState::new`] is made from.
pub struct Parts {
    pub store: Store,
    pub secrets: Secrets,
    pub identity: Identity,
    pub admin_token: AdminToken,
    pub limits: Limits,
    pub gateway: Gateway,
    /// The filter's `.wasm`, as Envoy opens it.
    pub wasm_path: PathBuf,
    pub probes: ProbeSpec,
    pub discovery: DiscoverySpec,
}

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        let Parts {
            store,
            secrets,
            identity,
            admin_token,
            limits,
            gateway,
            wasm_path,
            probes: probe_spec,
            discovery,
        } = parts;
        let secrets = Arc::new(secrets);
        let limits = Arc::new(limits.with_store(store.clone()));
        let reconciler = Arc::new(Reconciler::new(
            store.clone(),
            secrets.clone(),
            gateway,
            wasm_path,
            identity.guard.clone(),
            limits.clone(),
        ));
        let publisher = reconciler.publisher();
        let probes: Arc<Probes> = Arc::default();
        let reports = Reports::new(
            store.clone(),
            Arc::<Health>::default(),
            probes.clone(),
            std::time::Duration::from_secs(probe_spec.interval_secs),
        );
        let discoverer = Discoverer {
            store: store.clone(),
            secrets: secrets.clone(),
            guard: identity.guard.clone(),
            runner: Arc::new(Runner::new(discovery)),
            publisher: publisher.clone(),
        };
        AppState {
            store,
            secrets,
            identity: Arc::new(identity),
            admin_token,
            limits,
            probes,
            reports,
            discoverer,
            reconciler,
            publisher,
        }
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(app: &AppState) -> Store {
        app.store.clone()
    }
}

impl FromRef<AppState> for Publisher {
    fn from_ref(app: &AppState) -> Publisher {
        app.publisher.clone()
    }
}

impl FromRef<AppState> for Arc<Identity> {
    fn from_ref(app: &AppState) -> Arc<Identity> {
        app.identity.clone()
    }
}

impl FromRef<AppState> for Arc<Secrets> {
    fn from_ref(app: &AppState) -> Arc<Secrets> {
        app.secrets.clone()
    }
}
