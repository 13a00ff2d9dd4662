//! Start-up and serving: opens the store, applies the config, builds the shared state, then
//! runs the admin API, the xDS/ADS server and the background tasks until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;

use crate::config::Config;
use crate::crypto::MasterKey;
use crate::identity::{AdminToken, Identity};
use crate::secrets::{self, Secrets};
use crate::state::{AppState, Parts};
use crate::store::Store;
use crate::xds::server::AdsServer;

/// The store the config names and the master key (from the environment or the key file).
pub async fn open_store(config: &Config) -> anyhow::Result<(Store, MasterKey)> {
    let store = Store::connect(&config.database)
        .await
        .with_context(|| format!("opening the store ({})", redact_url(&config.database)))?;
    let master = MasterKey::load(
        std::env::var("SWITCHYARD_MASTER_KEY").ok().as_deref(),
        std::env::var("SWITCHYARD_MASTER_KEY_PREVIOUS")
            .ok()
            .as_deref(),
        &config.master_key_file,
    )?;
    Ok((store, master))
}

/// Opens the store named by the config, applies the config and returns the state, ready to
/// serve.
pub async fn init(config_path: &Path) -> anyhow::Result<(AppState, Config)> {
    let loaded = Config::load(config_path).context("configuration")?;
    let config = loaded.config;
    for var in &loaded.missing_vars {
        tracing::warn!(variable = %var, "environment variable named in the config is not set");
    }
    let (store, master) = open_store(&config).await?;
    // Values sealed under a previous key (or before keys had ids) are sealed again now.
    let resealed = secrets::reseal_all(&store, &master).await?;
    if resealed > 0 {
        tracing::info!(resealed, key = %master.current_id(), "stored secrets sealed again under the current master key");
    }
    // Gateway keys are known by keyed digests; ones stored before are converted once.
    let digest_key = secrets::digest_key(&store, &master).await?;
    let rekeyed = store.rekey_api_key_digests(|d| digest_key.rekey(d)).await?;
    if rekeyed > 0 {
        tracing::info!(rekeyed, "gateway key digests keyed");
    }
    crate::apply::apply_config(&store, &master, &digest_key, &config).await?;
    let admin_token = AdminToken::load(&store).await?;
    let wasm_path = absolute(&config.gateway.wasm);
    if !wasm_path.exists() {
        tracing::warn!(path = %wasm_path.display(), "filter .wasm not found; build it with `make wasm`");
    }
    // Redis is not needed to start: the limits connect on first use and again after a loss.
    let limits = crate::limits::Limits::connect(config.redis.as_deref(), &config.redis_prefix)
        .with_context(|| {
            format!(
                "Redis URL ({})",
                redact_url(config.redis.as_deref().unwrap_or_default())
            )
        })?
        .with_request_timeout(config.gateway.request_timeout_secs);
    let memory = config.redis.is_none();
    let identity = Identity::load(
        &config.auth,
        config.redis.as_deref(),
        &config.redis_prefix,
        &store,
        &master,
    )
    .await?;
    let dataplane_key = if config.gateway.seal_provider_keys {
        Some(secrets::dataplane_key(&store, &master).await?)
    } else {
        None
    };
    let app = AppState::new(Parts {
        store,
        secrets: Secrets::new(master, digest_key, dataplane_key),
        identity,
        admin_token,
        limits,
        gateway: config.gateway.clone(),
        wasm_path,
        probes: config.probes.clone(),
        discovery: config.discovery.clone(),
    });
    // Balances for the limits service; without Redis, also what keys and users spent.
    let accounts = app.store.list_accounts().await?;
    let balances: Vec<(String, i64)> = accounts
        .into_iter()
        .map(|a| (a.user, a.balance_micros))
        .collect();
    app.limits.balances_changed(&balances).await;
    if memory {
        let now = crate::store::now();
        let (day_start, month_start) = crate::limits::period_starts(now);
        let (day_ms, month_ms) = (day_start * 1_000, month_start * 1_000);
        let keys = app.store.key_spend(day_ms, month_ms).await?;
        let users = app.store.user_spend(day_ms, month_ms).await?;
        app.limits.restore_spend(&keys, &users, now).await?;
    }
    Ok((app, config))
}

/// Runs the admin API and the ADS server until SIGINT/SIGTERM.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let (app, config) = init(config_path).await?;
    app.publisher.publish().await?;

    let admin_listener = tokio::net::TcpListener::bind(config.listen.admin)
        .await
        .with_context(|| format!("binding the admin API to {}", config.listen.admin))?;
    let xds_port = crate::xds::listen::bind(&config.listen.xds).await?;
    // TCP: mutual TLS with certificates from the store's CA, renewed while serving.
    let tls = match &config.listen.xds {
        crate::config::XdsAddress::Tcp(addr) => {
            let authorities = crate::pki::load_or_create(&app.store, &app.secrets.master).await?;
            let tls = crate::xds::listen::ServerTls::new(
                &authorities,
                Some(addr.ip()),
                crate::store::now(),
            )?;
            Some(Arc::new(tls))
        }
        crate::config::XdsAddress::Unix(_) => None,
    };
    tracing::info!(admin = %config.listen.admin, xds = %config.listen.xds, "control plane ready");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin = crate::admin::server::serve(
        admin_listener,
        crate::admin::router(app.clone()),
        crate::admin::server::Bounds::default(),
        stopped(stop_rx.clone()),
    );
    // Request records arrive beside xDS, over the cluster Envoy has to the control plane.
    let ingest = crate::usage::Ingest::start(
        app.store.clone(),
        app.reports.health().clone(),
        app.limits.clone(),
    );
    let routes = tonic::service::Routes::from(
        crate::usage::router(ingest, app.secrets.dataplane_key).merge(crate::limits::lease_router(
            app.limits.clone(),
            app.secrets.dataplane_key,
        )),
    )
    .add_service(AggregatedDiscoveryServiceServer::new(AdsServer::new(
        app.reconciler.cache().clone(),
    )));
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(15)))
        .max_concurrent_streams(Some(1024))
        .add_routes(routes);
    let ads = crate::xds::listen::serve(xds_port, tls.clone(), router, stopped(stop_rx.clone()));
    let admin = tokio::spawn(admin);
    spawn_background_tasks(&app, &config, tls);
    let ads = tokio::spawn(async move { ads.await.context("xDS server") });

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // ADS streams are long-lived: give them a moment, then stop regardless.
    let wait = async {
        let _ = admin.await;
        let _ = ads.await;
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), wait).await;
    app.store.close().await;
    Ok(())
}

/// Starts every background task, each with only what it uses.
fn spawn_background_tasks(
    app: &AppState,
    config: &Config,
    tls: Option<Arc<crate::xds::listen::ServerTls>>,
) {
    tokio::spawn(crate::vertex_tokens::refresh(
        app.store.clone(),
        app.secrets.clone(),
        app.reconciler.tokens().clone(),
        app.publisher.clone(),
        app.reconciler.tokens_wanted(),
    ));
    tokio::spawn(app.reconciler.clone().follow_figures(app.reports.clone()));
    tokio::spawn(crate::health::prune_old_rows(app.store.clone()));
    tokio::spawn(crate::log_retention::prune(
        app.store.clone(),
        config.request_log_retention_days,
    ));
    tokio::spawn(crate::audit_retention::prune(
        app.store.clone(),
        app.identity.spec.audit_retention_days,
    ));
    tokio::spawn(crate::probe_rounds::run(
        config.probes.clone(),
        app.store.clone(),
        app.secrets.clone(),
        app.identity.guard.clone(),
        app.probes.clone(),
    ));
    tokio::spawn(crate::discovery_schedule::run(app.discoverer.clone()));
    if let Some(tls) = tls {
        tokio::spawn(crate::tls_renewal::renew(
            app.store.clone(),
            app.secrets.clone(),
            tls,
        ));
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `p` as an absolute path (from the working directory), as another process will open it.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
