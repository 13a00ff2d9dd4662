//! The running control plane: shared state, config application, publishing, and the servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;

use crate::config::{Config, Gateway};
use crate::crypto::{self, MasterKey};
use crate::domain;
use crate::store::{ModelRow, NewApiKey, NewProviderKey, Store};
use crate::xds::{build, cache::SnapshotCache, server::AdsServer};
use switchyard_filter::pricing::Price;

/// Everything the admin API and the xDS server share.
pub struct App {
    pub store: Store,
    pub cache: Arc<SnapshotCache>,
    pub master: MasterKey,
    pub gateway: Gateway,
    pub wasm_path: PathBuf,
    admin_token_digest: String,
    publish_lock: tokio::sync::Mutex<()>,
    /// Vertex AI access tokens minted from service account keys (see [`crate::gcp`]).
    pub tokens: crate::gcp::Tokens,
    /// Wakes the token refresher when the configuration changes.
    pub refresh: Arc<tokio::sync::Notify>,
    /// Attempts reported by Envoy, waiting to be written (see [`crate::health`]).
    pub health: Arc<crate::health::Health>,
    /// The writer of request records (see [`crate::usage`]).
    pub ingest: crate::usage::Ingest,
    /// Global limits: the rate limit service's state (see [`crate::limits`]).
    pub limits: Arc<crate::limits::Limits>,
    /// The figures the last published configuration ranks by.
    figures: std::sync::Mutex<crate::health::Figures>,
    /// Active probes of provider keys (see [`crate::probe`]).
    pub probes: Arc<crate::probe::Probes>,
    pub probe_spec: crate::config::ProbeSpec,
    /// Users' sign-ins and sessions, and where their providers may point.
    pub identity: Identity,
    /// When the configuration was last recomputed for the SSRF re-check (Unix seconds).
    rechecked_at: std::sync::atomic::AtomicI64,
    /// One master key rotation at a time.
    rotation_lock: tokio::sync::Mutex<()>,
    /// The last computed state has providers whose addresses the control plane vets.
    vetting: std::sync::atomic::AtomicBool,
    /// Seals provider keys in the filter's configuration (see `switchyard_filter::sealed`);
    /// `None`: they travel in plain text (`gateway.seal_provider_keys: false`).
    pub dataplane_key: Option<[u8; 32]>,
    /// Model discovery's schedule and outcomes (see [`crate::discovery`]).
    pub discovery: crate::discovery::Runner,
    /// Gateway key digests are made with this (see [`crypto::DigestKey`]).
    pub digest_key: crypto::DigestKey,
}

/// The setting holding the data plane key (hex), sealed under the master key.
pub const DATAPLANE_KEY_SETTING: &str = "dataplane_key_sealed";

/// The data plane key: `SWITCHYARD_DATAPLANE_KEY` when set, else the one in the store, made at
/// first use.
pub async fn dataplane_key(store: &Store, master: &MasterKey) -> anyhow::Result<[u8; 32]> {
    use switchyard_filter::sealed;
    if let Some(v) = std::env::var(sealed::KEY_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        return sealed::parse_key(&v)
            .ok_or_else(|| anyhow::anyhow!("{} must be 64 hex digits", sealed::KEY_ENV));
    }
    let stored = match store.get_setting(DATAPLANE_KEY_SETTING).await? {
        Some(s) => s,
        None => {
            let fresh = master.seal(&hex::encode(crypto::new_master_key()));
            store
                .set_setting_if_absent(DATAPLANE_KEY_SETTING, &fresh)
                .await?;
            store
                .get_setting(DATAPLANE_KEY_SETTING)
                .await?
                .unwrap_or(fresh)
        }
    };
    let text = master.open(&stored).context("the data plane key")?;
    sealed::parse_key(&text).ok_or_else(|| anyhow::anyhow!("the stored data plane key is corrupt"))
}

/// The setting holding the gateway key digest key (hex), sealed under the master key.
pub const DIGEST_KEY_SETTING: &str = "key_digest_key_sealed";

/// The deployment's gateway key digest key (see [`crypto::DigestKey`]): the one in the store,
/// made at first use (every control plane on the database shares it).
pub async fn digest_key(store: &Store, master: &MasterKey) -> anyhow::Result<crypto::DigestKey> {
    let stored = match store.get_setting(DIGEST_KEY_SETTING).await? {
        Some(s) => s,
        None => {
            let fresh = master.seal(&hex::encode(crypto::DigestKey::random().bytes()));
            store
                .set_setting_if_absent(DIGEST_KEY_SETTING, &fresh)
                .await?;
            store
                .get_setting(DIGEST_KEY_SETTING)
                .await?
                .unwrap_or(fresh)
        }
    };
    let text = master.open(&stored).context("the key digest key")?;
    switchyard_filter::sealed::parse_key(&text)
        .map(crypto::DigestKey::from_bytes)
        .ok_or_else(|| anyhow::anyhow!("the stored key digest key is corrupt"))
}

/// What a filter configuration needs before it leaves for Envoy: the key digest key, and, with
/// a data plane key, both it and every provider key sealed under that (Envoy's `config_dump`
/// then holds no secret in clear).
pub fn prepare_for_dataplane(
    filter: &mut switchyard_filter::config::FilterConfig,
    digest_key: &crypto::DigestKey,
    dataplane_key: Option<&[u8; 32]>,
) {
    let digest_key = hex::encode(digest_key.bytes());
    let Some(key) = dataplane_key else {
        filter.key_digest_key = Some(digest_key);
        return;
    };
    filter.key_digest_key = Some(switchyard_filter::sealed::seal(key, &digest_key));
    for p in &mut filter.providers {
        for k in &mut p.keys {
            k.secret = switchyard_filter::sealed::seal(key, &k.secret);
        }
    }
}

/// How often users' providers' names are resolved and vetted again.
pub const RECHECK_SECS: i64 = 30;

/// Everything about users signing in: the policy, the session store, the access token key, the
/// gate password hashes pass, the count of bad credentials per address, and the SSRF guard for
/// the providers they add.
pub struct Identity {
    pub spec: crate::config::AuthSpec,
    pub sessions: crate::auth::sessions::Sessions,
    pub token_key: crate::auth::TokenKey,
    pub guard: crate::ssrf::Guard,
    pub trusted_proxies: Vec<crate::ssrf::Cidr>,
    /// Every argon2 hash and verification of the admin API (see [`crate::auth::Hashing`]).
    pub hashing: crate::auth::Hashing,
    /// Admin API requests with a wrong token, per client network (in memory: the throttle must
    /// hold while Redis is down, and costs nothing to reach).
    pub bad_credentials: crate::auth::attempts::Attempts,
}

/// Client networks whose bad credentials are counted at once; beyond, the soonest-ending
/// window is forgotten.
const BAD_CREDENTIAL_SUBJECTS: usize = 50_000;

impl Default for Identity {
    /// In memory, a random token key, no allowed inside networks, hashing slots of its own:
    /// for tests.
    fn default() -> Self {
        let spec = crate::config::AuthSpec::default();
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        Identity {
            sessions: crate::auth::sessions::Sessions::memory(spec.refresh_token_ttl_secs),
            spec,
            token_key: crate::auth::TokenKey::from_bytes(&key),
            guard: crate::ssrf::Guard::default(),
            trusted_proxies: Vec::new(),
            hashing: crate::auth::Hashing::for_this_machine(),
            bad_credentials: crate::auth::attempts::Attempts::new(BAD_CREDENTIAL_SUBJECTS),
        }
    }
}

impl Identity {
    /// From the config: sessions in Redis when there is one (connected on first use: Redis
    /// down at start-up does not stop the control plane); the access token key from the store
    /// (sealed), made at first start, and the refresh token key derived from it.
    pub async fn load(
        spec: &crate::config::AuthSpec,
        redis: Option<&str>,
        prefix: &str,
        store: &Store,
        master: &MasterKey,
    ) -> anyhow::Result<Identity> {
        let cidrs = |list: &[String], what: &str| -> anyhow::Result<Vec<crate::ssrf::Cidr>> {
            list.iter()
                .map(|n| n.parse().map_err(|e| anyhow::anyhow!("auth.{what}: {e}")))
                .collect()
        };
        if spec.access_token_ttl_secs < 10
            || spec.refresh_token_ttl_secs < spec.access_token_ttl_secs
        {
            anyhow::bail!(
                "auth: access tokens must live at least 10 s, and sessions at least as long"
            );
        }
        let guard = crate::ssrf::Guard::new(
            cidrs(&spec.allowed_provider_networks, "allowed_provider_networks")?,
            Arc::new(crate::ssrf::SystemResolver),
        );
        let sealed = match store.get_setting(TOKEN_KEY_SETTING).await? {
            Some(s) => s,
            None => {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
                let sealed = master.seal(&base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    key,
                ));
                store
                    .set_setting_if_absent(TOKEN_KEY_SETTING, &sealed)
                    .await?;
                store
                    .get_setting(TOKEN_KEY_SETTING)
                    .await?
                    .unwrap_or(sealed)
            }
        };
        let key = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            master.open(&sealed).context("the access token key")?,
        )
        .context("the access token key")?;
        let token_key = crate::auth::TokenKey::from_bytes(&key);
        let sessions =
            crate::auth::sessions::Sessions::connect(redis, prefix, spec.refresh_token_ttl_secs)
                .await?
                .with_refresh_key(&token_key.derive(b"switchyard refresh tokens"))
                .with_max_families(
                    usize::try_from(spec.max_sessions_per_user).unwrap_or(usize::MAX),
                );
        Ok(Identity {
            spec: spec.clone(),
            sessions,
            token_key,
            guard,
            trusted_proxies: cidrs(&spec.trusted_proxies, "trusted_proxies")?,
            hashing: crate::auth::Hashing::shared(),
            bad_credentials: crate::auth::attempts::Attempts::new(BAD_CREDENTIAL_SUBJECTS),
        })
    }
}

/// The setting holding the access token signing key, sealed under the master key.
pub const TOKEN_KEY_SETTING: &str = "token_key_sealed";

impl App {
    pub fn new(
        store: Store,
        master: MasterKey,
        gateway: Gateway,
        wasm_path: PathBuf,
        admin_token_digest: String,
        limits: crate::limits::Limits,
    ) -> App {
        let health: Arc<crate::health::Health> = Arc::default();
        let limits = Arc::new(limits.with_store(store.clone()));
        App {
            ingest: crate::usage::Ingest::start(store.clone(), health.clone(), limits.clone()),
            limits,
            health,
            store,
            cache: Arc::new(SnapshotCache::default()),
            master,
            gateway,
            wasm_path,
            admin_token_digest,
            publish_lock: tokio::sync::Mutex::new(()),
            tokens: crate::gcp::Tokens::default(),
            refresh: Arc::new(tokio::sync::Notify::new()),
            figures: std::sync::Mutex::default(),
            probes: Arc::default(),
            probe_spec: crate::config::ProbeSpec::default(),
            identity: Identity::default(),
            rechecked_at: std::sync::atomic::AtomicI64::new(0),
            rotation_lock: tokio::sync::Mutex::new(()),
            vetting: std::sync::atomic::AtomicBool::new(false),
            dataplane_key: None,
            discovery: crate::discovery::Runner::default(),
            digest_key: crypto::DigestKey::random(),
        }
    }

    /// Whether it is time to recompute the configuration regardless of figures (every
    /// [`RECHECK_SECS`], when some provider's addresses are vetted by the control plane): users'
    /// providers' names are resolved and vetted again then.
    fn recheck_due(&self) -> bool {
        if !self.vetting.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let now = crate::store::now();
        let last = self.rechecked_at.load(std::sync::atomic::Ordering::Relaxed);
        if now - last < RECHECK_SECS {
            return false;
        }
        self.rechecked_at
            .store(now, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// The figures the configuration currently ranks by.
    pub fn figures(&self) -> crate::health::Figures {
        self.figures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Writes the health figures Envoy reported since the last call and recomputes the window;
    /// returns whether the figures changed (then the configuration should be published).
    pub async fn update_health(&self) -> anyhow::Result<bool> {
        let rows = self.health.take();
        if !rows.is_empty() {
            if let Err(e) = self.store.add_health(&rows).await {
                self.health.restore(rows);
                return Err(e.into());
            }
        }
        let minute = crate::store::now() / 60;
        let window = self
            .store
            .health_since(minute - crate::health::WINDOW_MINUTES + 1)
            .await?;
        let verdict = self.probes.verdict(std::time::Duration::from_secs(
            self.probe_spec.interval_secs,
        ));
        let failing = self.health.failing(crate::store::now());
        let figures =
            crate::health::Figures::new(window, &self.store.list_prices().await?, verdict, failing);
        let mut current = self
            .figures
            .lock()
            .map_err(|_| anyhow::anyhow!("figures lock poisoned"))?;
        if *current == figures {
            return Ok(false);
        }
        *current = figures;
        Ok(true)
    }

    /// The gateway state from the store, ranked by the current figures.
    async fn desired_state(&self) -> anyhow::Result<crate::snapshot::GatewayState> {
        let figures = self.figures();
        let state = crate::snapshot::load(
            &self.store,
            &self.master,
            self.gateway.max_body_bytes,
            &self.tokens,
            &figures,
            &self.identity.guard,
        )
        .await?;
        self.limits.set_table(state.limits.clone());
        self.vetting
            .store(state.vetted, std::sync::atomic::Ordering::Relaxed);
        let mut state = state;
        prepare_for_dataplane(
            &mut state.filter,
            &self.digest_key,
            self.dataplane_key.as_ref(),
        );
        Ok(state)
    }

    #[cfg(test)]
    pub async fn desired_state_for_tests(&self) -> crate::snapshot::GatewayState {
        self.desired_state().await.expect("state")
    }

    /// After a credit account changed: its balance to the rate limit service, and the keys it
    /// meters to Envoy.
    pub async fn credits_changed(&self, user: &str) -> anyhow::Result<()> {
        let account = self.store.get_account(user).await?;
        self.limits
            .balances_changed(&[(account.user, account.balance_micros)])
            .await;
        self.publish().await?;
        Ok(())
    }

    /// Every (provider, upstream model) clients can reach, sorted.
    pub async fn served_models(&self) -> anyhow::Result<Vec<(String, String)>> {
        let state = self.desired_state().await?;
        let set: std::collections::BTreeSet<(String, String)> = state
            .filter
            .models
            .iter()
            .flat_map(|m| m.targets.iter())
            .map(|t| (t.provider.clone(), t.model.clone()))
            .collect();
        Ok(set.into_iter().collect())
    }

    /// Recomputes the gateway state with new health figures and publishes it when that changes
    /// what Envoy has (figures are rounded, so most updates change nothing).
    pub async fn publish_figures(&self) -> anyhow::Result<()> {
        let _guard = self.publish_lock.lock().await;
        let state = self.desired_state().await?;
        let resources = build::resources(&self.gateway, &state, &self.wasm_path);
        if let Some(serial) = self
            .cache
            .set_if_changed(resources)
            .map_err(|e| anyhow::anyhow!("inconsistent snapshot not published: {e}"))?
        {
            crate::metrics::add(&crate::metrics::METRICS.snapshots_published, 1);
            tracing::info!(serial, filter_version = %state.filter.version, "snapshot published (health figures)");
        }
        Ok(())
    }

    /// Recomputes the gateway state from the store and publishes it to every Envoy.
    pub async fn publish(&self) -> anyhow::Result<u64> {
        let _guard = self.publish_lock.lock().await;
        let state = self.desired_state().await?;
        // A new or changed Vertex key needs a token: let the refresher look.
        self.refresh.notify_one();
        let resources = build::resources(&self.gateway, &state, &self.wasm_path);
        let serial = self
            .cache
            .set(resources)
            .map_err(|e| anyhow::anyhow!("inconsistent snapshot not published: {e}"))?;
        crate::metrics::add(&crate::metrics::METRICS.snapshots_published, 1);
        tracing::info!(serial, filter_version = %state.filter.version, "snapshot published");
        Ok(serial)
    }

    pub fn admin_token_ok(&self, presented: &str) -> bool {
        crypto::digest_matches(presented, &self.admin_token_digest)
    }
}

/// The store the config names and the master key (from the environment or the key file).
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<(Store, MasterKey)> {
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

/// Opens the store named by the config, applies the config and returns the app, ready to serve.
pub async fn init(config_path: &Path) -> anyhow::Result<(App, Config)> {
    let loaded = Config::load(config_path).context("configuration")?;
    let config = loaded.config;
    for var in &loaded.missing_vars {
        tracing::warn!(variable = %var, "environment variable named in the config is not set");
    }
    let (store, master) = open_store(&config).await?;
    // Values sealed under a previous key (or before keys had ids) are sealed again now.
    let resealed = reseal_all(&store, &master).await?;
    if resealed > 0 {
        tracing::info!(resealed, key = %master.current_id(), "stored secrets sealed again under the current master key");
    }
    // Gateway keys are known by keyed digests; ones stored before are converted once.
    let digest_key = digest_key(&store, &master).await?;
    let rekeyed = store.rekey_api_key_digests(|d| digest_key.rekey(d)).await?;
    if rekeyed > 0 {
        tracing::info!(rekeyed, "gateway key digests keyed");
    }
    apply_config(&store, &master, &digest_key, &config).await?;
    let admin_token_digest = admin_token(&store).await?;
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
    let mut app = App::new(
        store,
        master,
        config.gateway.clone(),
        wasm_path,
        admin_token_digest,
        limits,
    );
    app.identity = identity;
    app.digest_key = digest_key;
    if config.gateway.seal_provider_keys {
        app.dataplane_key = Some(dataplane_key(&app.store, &app.master).await?);
    }
    // Balances for the rate limit service; without Redis, also what keys and users spent.
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
    app.probe_spec = config.probes.clone();
    app.discovery = crate::discovery::Runner::new(config.discovery.clone());
    Ok((app, config))
}

/// Seals every stored secret not sealed under the current master key again.
pub async fn reseal_all(store: &Store, master: &MasterKey) -> anyhow::Result<usize> {
    Ok(store
        .reseal_all(|sealed| {
            if master.is_current(sealed) {
                return Ok(None);
            }
            master
                .open(sealed)
                .map(|plain| Some(master.seal(&plain)))
                .map_err(|e| e.to_string())
        })
        .await?)
}

/// Makes `new` the master key with no downtime: every stored secret is sealed again under it
/// (in one transaction; repeated until a pass finds nothing left, in case a secret sealed just
/// before the switch was written during the first), then the old keys are forgotten. The
/// configuration Envoy has does not change. Returns how many values were sealed again.
pub async fn rotate_master_key(app: &App, new: &[u8; 32]) -> anyhow::Result<usize> {
    let _guard = app.rotation_lock.lock().await;
    app.master.rotate_to(new)?;
    let mut total = 0;
    for pass in 0.. {
        let n = reseal_all(&app.store, &app.master).await?;
        total += n;
        if n == 0 {
            break;
        }
        if pass == 5 {
            anyhow::bail!("secrets keep arriving under the old key; old keys kept");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.master.retire(new)?;
    tracing::info!(key = %app.master.current_id(), resealed = total, "master key rotated");
    Ok(total)
}

/// Runs the admin API and the ADS server until SIGINT/SIGTERM.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let (app, config) = init(config_path).await?;
    let app = Arc::new(app);
    app.publish().await?;

    let admin_listener = tokio::net::TcpListener::bind(config.listen.admin)
        .await
        .with_context(|| format!("binding the admin API to {}", config.listen.admin))?;
    let xds_port = crate::xds::listen::bind(&config.listen.xds).await?;
    // TCP: mutual TLS with certificates from the store's CA, renewed while serving.
    let tls = match &config.listen.xds {
        crate::config::XdsAddress::Tcp(addr) => {
            let authorities = crate::pki::load_or_create(&app.store, &app.master).await?;
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
    let routes =
        tonic::service::Routes::from(crate::usage::router(app.ingest.clone(), app.dataplane_key))
            .add_service(AggregatedDiscoveryServiceServer::new(AdsServer::new(
                app.cache.clone(),
            )))
            .add_service(RateLimitServiceServer::new(crate::limits::Service(
                app.limits.clone(),
            )));
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(15)))
        .max_concurrent_streams(Some(1024))
        .add_routes(routes);
    let ads = crate::xds::listen::serve(xds_port, tls.clone(), router, stopped(stop_rx.clone()));
    let admin = tokio::spawn(admin);
    tokio::spawn(refresh_tokens(app.clone()));
    tokio::spawn(refresh_health(app.clone()));
    tokio::spawn(run_probes(app.clone()));
    tokio::spawn(run_discovery(app.clone()));
    if let Some(tls) = tls {
        tokio::spawn(renew_xds_tls(app.clone(), tls));
    }
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

/// Renews the xDS port's server certificate at half its life, and follows the CAs in the store
/// (`switchyard certs rotate-ca` / `retire-ca`, run anywhere on the same database).
async fn renew_xds_tls(app: Arc<App>, tls: Arc<crate::xds::listen::ServerTls>) {
    let mut tick = tokio::time::interval(crate::xds::listen::TLS_RELOAD);
    tick.tick().await;
    loop {
        tick.tick().await;
        match crate::pki::load(&app.store, &app.master).await {
            Ok(Some(authorities)) => match tls.refresh(&authorities, crate::store::now()) {
                Ok(true) => {
                    tracing::info!(cas = authorities.len(), "xDS server certificate renewed")
                }
                Ok(false) => {}
                Err(e) => tracing::error!("xDS server certificate not renewed: {e}"),
            },
            Ok(None) => {
                tracing::error!("the xDS CA is gone from the store; the current one is kept")
            }
            Err(e) => tracing::warn!("xDS CA not read: {e}"),
        }
    }
}

/// Keeps every Vertex key's access token fresh; publishes when one changes.
async fn refresh_tokens(app: Arc<App>) {
    let http = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("no HTTP client for token requests: {e}");
            return;
        }
    };
    loop {
        let keys = crate::snapshot::vertex_keys(&app.store, &app.master)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("listing Vertex keys: {e}");
                Vec::new()
            });
        let (changed, sleep) = crate::gcp::refresh(&http, &app.tokens, &keys).await;
        if changed {
            if let Err(e) = app.publish().await {
                tracing::error!("publishing new Vertex tokens: {e:#}");
            }
        }
        // Woken early by configuration changes (publish), else when the next token is due.
        let _ = tokio::time::timeout(sleep, app.refresh.notified()).await;
    }
}

/// How often reported attempts are written and the figures recomputed.
const HEALTH_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);
/// How long the per-minute health rows are kept.
const HEALTH_KEPT_MINUTES: i64 = 7 * 24 * 60;

/// Writes Envoy's reports to the store and publishes when the figures move.
async fn refresh_health(app: Arc<App>) {
    let mut tick = tokio::time::interval(HEALTH_PERIOD);
    let mut pruned_at = 0;
    loop {
        tick.tick().await;
        match app.update_health().await {
            Ok(true) => {
                if let Err(e) = app.publish_figures().await {
                    tracing::error!("publishing new health figures: {e:#}");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("health figures not updated: {e:#}"),
        }
        // Users' providers' names are resolved and vetted again (connect-time SSRF check).
        if app.recheck_due() {
            if let Err(e) = app.publish_figures().await {
                tracing::error!("recomputing the configuration: {e:#}");
            }
        }
        let minute = crate::store::now() / 60;
        if minute - pruned_at >= 60 {
            pruned_at = minute;
            if let Err(e) = app.store.prune_health(minute - HEALTH_KEPT_MINUTES).await {
                tracing::warn!("old health figures not pruned: {e}");
            }
            let days = app.identity.spec.audit_retention_days;
            if days > 0 {
                let before = crate::store::now_ms() - days * 86_400_000;
                if let Err(e) = app.store.prune_audit(before).await {
                    tracing::warn!("old audit entries not pruned: {e}");
                }
            }
        }
    }
}

/// Probes every key of every enabled provider each `probes.interval_secs` (all at once, each
/// bounded by `probes.timeout_secs`); `refresh_health` publishes what changes.
async fn run_probes(app: Arc<App>) {
    use std::time::Duration;
    let spec = app.probe_spec.clone();
    if spec.interval_secs == 0 {
        return;
    }
    let timeout = Duration::from_secs(spec.timeout_secs.max(1));
    // Users' providers are probed through the SSRF guard's resolver, without redirects (a
    // redirect to an address literal would pass by the resolver).
    let (http, guarded) = match (
        reqwest::Client::builder().timeout(timeout).build(),
        app.identity.guard.client_builder().timeout(timeout).build(),
    ) {
        (Ok(h), Ok(g)) => (h, g),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("no HTTP client for probes: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(spec.interval_secs));
    loop {
        tick.tick().await;
        let (providers, keys) = match (
            app.store.list_providers().await,
            app.store.list_provider_keys().await,
        ) {
            (Ok(p), Ok(k)) => (p, k),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("probes skipped: {e}");
                continue;
            }
        };
        app.probes
            .retain(&keys.iter().map(|k| k.id.clone()).collect());
        let mut probes = Vec::new();
        for key in &keys {
            let Some(provider) = providers
                .iter()
                .find(|p| p.id == key.provider_id && p.enabled)
            else {
                continue;
            };
            let Ok(secret) = app.master.open(&key.secret_sealed) else {
                continue;
            };
            let client = if provider.access.untrusted() {
                if app
                    .identity
                    .guard
                    .vet_url(&provider.base_url)
                    .await
                    .is_err()
                {
                    continue;
                }
                &guarded
            } else {
                &http
            };
            if let Some(req) = crate::probe::request(client, provider, &secret) {
                let (probes_state, id, name) =
                    (app.probes.clone(), key.id.clone(), provider.name.clone());
                probes.push(async move {
                    let (outcome, latency) = crate::probe::probe(req).await;
                    if let crate::probe::Outcome::Refused(status) = outcome {
                        tracing::warn!(provider = %name, key = %id, status, "provider key refused by its provider: left out until a probe passes");
                    }
                    probes_state.record(&id, &name, &outcome, latency);
                });
            }
        }
        futures::future::join_all(probes).await;
    }
}

/// Lists every provider's models at start and every `discovery.interval_secs` (0: only on
/// demand, and when a provider is added or changed).
async fn run_discovery(app: Arc<App>) {
    let interval = app.discovery.spec.interval_secs;
    if interval == 0 {
        return;
    }
    loop {
        match app.store.list_providers().await {
            Ok(providers) => {
                let due = providers
                    .iter()
                    .filter(|p| p.enabled && p.settings.discovers(p.kind))
                    .map(|p| crate::discovery::discover(&app, p));
                futures::future::join_all(due).await;
            }
            Err(e) => tracing::warn!("model discovery skipped: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
    }
}

/// Lists a provider's models now, in the background (after it was added or changed).
pub fn discover_soon(app: &Arc<App>, provider: &str) {
    let (app, name) = (app.clone(), provider.to_owned());
    tokio::spawn(async move {
        match app.store.get_provider(&name).await {
            Ok(p) if p.enabled && p.settings.discovers(p.kind) => {
                let _ = crate::discovery::discover(&app, &p).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(provider = %name, "model discovery skipped: {e}"),
        }
    });
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

/// The admin token: `SWITCHYARD_ADMIN_TOKEN`, or one generated at first start and printed once
/// (only its digest is stored).
async fn admin_token(store: &Store) -> anyhow::Result<String> {
    if let Some(token) = std::env::var("SWITCHYARD_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(crypto::digest(token.trim()));
    }
    if let Some(d) = store.get_setting("admin_token_digest").await? {
        return Ok(d);
    }
    let token = crypto::token("sya-");
    let digest = crypto::digest(&token);
    if store
        .set_setting_if_absent("admin_token_digest", &digest)
        .await?
    {
        eprintln!(
            "\n  Admin token (shown once; set SWITCHYARD_ADMIN_TOKEN to choose your own):\n    {token}\n"
        );
        Ok(digest)
    } else {
        Ok(store
            .get_setting("admin_token_digest")
            .await?
            .unwrap_or(digest))
    }
}

/// Applies the declarative config to the store. Idempotent: applying it twice changes nothing.
pub async fn apply_config(
    store: &Store,
    master: &MasterKey,
    digest_key: &crypto::DigestKey,
    config: &Config,
) -> anyhow::Result<()> {
    for (i, p) in config.providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        domain::check_name("provider", &p.name).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        let def = domain::ProviderDef::resolve(
            p.kind,
            p.base_url.as_deref(),
            p.models.clone(),
            domain::ProviderSettings {
                preset: p.preset.clone(),
                api_version: p.api_version.clone(),
                region: p.region.clone(),
                project: p.project.clone(),
                location: p.location.clone(),
                proxies: p.proxies.clone(),
                discover: p.discover,
                new_models: p.new_models,
            },
        )
        .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        // Keys that expanded to nothing (unset variables) are left out; the rest are sealed.
        let keys = p
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.secret.trim().is_empty())
            .map(|(j, k)| {
                NewProviderKey::seal(master, p.kind, &k.secret, k.weight, k.qps)
                    .map_err(|e| anyhow::anyhow!("{at}.keys[{j}]: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !p.keys.is_empty() && keys.is_empty() {
            tracing::warn!(provider = %p.name, "provider skipped: its key is missing (unset environment variable?)");
            continue;
        }
        let id = store.upsert_provider(&p.name, &def).await?;
        store.replace_provider_keys(&id, &keys).await?;
        let mut settings = Vec::with_capacity(p.model_settings.len());
        for (j, m) in p.model_settings.iter().enumerate() {
            let at = format!("{at}.model_settings[{j}]");
            domain::check_model_name(&m.model).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            let patch = crate::store::ProviderModelPatch::checked(
                m.enabled,
                m.tags.clone().map(Some),
                m.context_window.map(Some),
            )
            .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            settings.push((m.model.clone(), patch));
        }
        store.configure_models(&p.name, &settings).await?;
    }
    for (i, m) in config.models.iter().enumerate() {
        let at = format!("models[{i}]");
        domain::check_model_name(&m.name).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        if m.targets.is_empty() {
            anyhow::bail!("{at}: a model needs at least one target");
        }
        store
            .upsert_model(&ModelRow {
                name: m.name.clone(),
                strategy: m.strategy,
                targets: m.targets.clone(),
            })
            .await?;
    }
    for (i, a) in config.aliases.iter().enumerate() {
        let alias = crate::store::AliasRow {
            name: a.name.clone(),
            target: a.target.clone(),
        };
        check_alias(&alias, config.models.iter().map(|m| m.name.as_str()))
            .map_err(|e| anyhow::anyhow!("aliases[{i}]: {e}"))?;
        if alias.is_glob() && !config.providers.iter().any(|p| p.name == alias.target) {
            store.get_provider(&alias.target).await.map_err(|_| {
                anyhow::anyhow!(
                    "aliases[{i}]: a glob alias names a provider; {:?} is none",
                    alias.target
                )
            })?;
        }
        store.put_alias(&alias).await?;
    }
    for (i, price) in config.prices.iter().enumerate() {
        let micros = |usd: f64| -> anyhow::Result<u64> {
            crate::domain::usd_to_micros(usd)
                .filter(|m| *m < 1_000_000_000_000)
                .and_then(|m| u64::try_from(m).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("prices[{i}]: a price must be between 0 and 1,000,000 USD")
                })
        };
        store
            .put_price(&crate::store::PriceRow {
                provider: price.provider.clone(),
                model: price.model.clone(),
                price: Price {
                    input: micros(price.input)?,
                    output: micros(price.output)?,
                    cache_read: price.cache_read.map(micros).transpose()?,
                    cache_write: price.cache_write.map(micros).transpose()?,
                    reasoning: price.reasoning.map(micros).transpose()?,
                },
            })
            .await?;
    }
    for (i, k) in config.api_keys.iter().enumerate() {
        let at = format!("api_keys[{i}]");
        domain::check_name("API key", &k.name).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        if k.key.trim().len() < 8 {
            anyhow::bail!("{at}: key must be at least 8 characters");
        }
        let user = k.user.clone().unwrap_or_else(|| k.name.clone());
        let owner = user.clone();
        store
            .put_api_key(
                &NewApiKey {
                    name: k.name.clone(),
                    user,
                    prefix: key_prefix(k.key.trim()),
                    digest: digest_key.digest(k.key.trim()),
                    models: k.models.clone(),
                    rpm: k.rpm,
                    tpm: k.tpm,
                    credits: k.credits,
                    expires_at: k.expires_at,
                    daily_budget_micros: budget_micros(k.daily_budget, &at, "daily_budget")?,
                    monthly_budget_micros: budget_micros(k.monthly_budget, &at, "monthly_budget")?,
                },
                true,
            )
            .await?;
        // The owner's starting balance, once: later runs leave the account as it is.
        if let Some(credits) = k.credits {
            let amount = crate::domain::usd_to_micros(credits)
                .filter(|m| *m >= 0)
                .ok_or_else(|| {
                    anyhow::anyhow!("{at}: credits must be a non-negative amount of USD")
                })?;
            store.open_account_with(&owner, amount).await?;
        }
    }
    for (i, u) in config.users.iter().enumerate() {
        let at = format!("users[{i}]");
        domain::check_name("user", &u.name).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        store.ensure_user(&u.name).await?;
        crate::scope::check(&u.models).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        store
            .set_user_limits(&crate::store::UserLimitsRow {
                user: u.name.clone(),
                rpm: u.rpm.map(i64::from),
                tpm: u.tpm.map(i64::from),
                models: u.models.clone(),
                daily_budget_micros: budget_micros(u.daily_budget, &at, "daily_budget")?,
                monthly_budget_micros: budget_micros(u.monthly_budget, &at, "monthly_budget")?,
            })
            .await?;
        let mut patch = crate::store::UserPatch {
            role: u.role,
            email: u.email.clone().map(Some),
            ..Default::default()
        };
        if let Some(password) = u.password.as_deref().filter(|p| !p.is_empty()) {
            crate::auth::check_password(password).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
            let stored = store.user_credentials(&u.name).await?.and_then(|(_, h)| h);
            let hashing = crate::auth::Hashing::shared();
            let current = hashing.verify(password.to_owned(), stored.clone());
            if stored.is_none() || !current.await? {
                patch.password_hash = Some(hashing.hash(password.to_owned()).await?);
            }
        }
        store.update_user(&u.name, &patch).await?;
    }
    Ok(())
}

/// A spend cap of the config file (USD) in micro-USD; `at` and `name` say where it is.
fn budget_micros(usd: Option<f64>, at: &str, name: &str) -> anyhow::Result<Option<i64>> {
    usd.map(|v| {
        crate::domain::usd_to_micros(v)
            .filter(|m| *m > 0)
            .ok_or_else(|| anyhow::anyhow!("{at}: {name} must be a positive amount of USD"))
    })
    .transpose()
}

/// Checks an alias by itself: a name clients can send (a glob: `*` and no `/`), a target that
/// is a model name (a glob's: a provider name), and not a logical model's name.
pub fn check_alias<'a>(
    alias: &crate::store::AliasRow,
    mut logical: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    domain::check_model_name(&alias.name)?;
    if alias.is_glob() {
        if alias.name.contains('/') {
            return Err("a glob alias matches a provider's own model names, without '/'".into());
        }
        if alias.name.chars().all(|c| c == '*') {
            return Err("a glob alias needs some fixed text, such as claude-*".into());
        }
        domain::check_name("provider", &alias.target)?;
    } else {
        domain::check_model_name(&alias.target)?;
        if alias.target == alias.name {
            return Err("an alias cannot name itself".into());
        }
    }
    if logical.any(|m| m == alias.name) {
        return Err(format!(
            "{:?} is a logical model's name already",
            alias.name
        ));
    }
    Ok(())
}

/// The part of a key shown to humans to recognise it.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(8).collect()
}

/// `p` as an absolute path (from the working directory), as another process will open it.
pub(crate) fn absolute(p: &Path) -> PathBuf {
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

/// The data plane key for the store the config names, as 64 hex digits (for Envoy's
/// environment).
pub async fn print_dataplane_key(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path).context("configuration")?.config;
    let (store, master) = open_store(&config).await?;
    let key = dataplane_key(&store, &master).await?;
    store.close().await;
    println!("{}", hex::encode(key));
    Ok(())
}

/// Writes the gateway's whole configuration as a binary static bootstrap (`.pb`).
pub async fn render_static(config_path: &Path, out: &Path) -> anyhow::Result<()> {
    use prost::Message as _;
    let (app, _) = init(config_path).await?;
    let state = crate::snapshot::load(
        &app.store,
        &app.master,
        app.gateway.max_body_bytes,
        &app.tokens,
        &crate::health::Figures::default(),
        &app.identity.guard,
    )
    .await?;
    let mut state = state;
    prepare_for_dataplane(
        &mut state.filter,
        &app.digest_key,
        app.dataplane_key.as_ref(),
    );
    let bootstrap = build::static_bootstrap(&app.gateway, &state, &app.wasm_path);
    std::fs::write(out, bootstrap.encode_to_vec())
        .with_context(|| format!("writing {}", out.display()))?;
    app.store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn apply(text: &str) -> (Store, anyhow::Result<()>) {
        let store = Store::connect(&crate::test_support::sqlite_url())
            .await
            .unwrap();
        let master = MasterKey::from_bytes(&[1; 32]);
        let config = Config::parse(text, &|_| None).unwrap().config;
        let result = apply_config(&store, &master, &crypto::DigestKey::random(), &config).await;
        (store, result)
    }

    #[tokio::test]
    async fn model_settings_in_the_config_hold_before_and_after_discovery() {
        use crate::discovery::Tag;
        let text = "providers:\n  - name: p\n    kind: openai\n    keys: [{secret: sk-p}]\n    models: [a]\n    model_settings:\n      - {model: a, tags: [chat], context_window: 4096}\n      - {model: later, enabled: false}\n";
        let (store, result) = apply(text).await;
        result.unwrap();
        let a = store.get_provider_model("p", "a").await.unwrap();
        assert_eq!(
            (a.tags(), a.context_window()),
            (&[Tag::Chat][..], Some(4096))
        );
        let later = store.get_provider_model("p", "later").await.unwrap();
        assert!(!later.enabled && !later.served(), "not listed yet");
        // Discovery finds it (new models enabled): the config's decision holds.
        let id = store.get_provider("p").await.unwrap().id;
        let found = crate::discovery::parse_page(
            crate::domain::ProviderKind::Openai,
            false,
            br#"{"object":"list","data":[{"id":"later","object":"model","created":1,"owned_by":"x"}]}"#,
        )
        .unwrap()
        .models;
        store.apply_discovery(&id, &found, true).await.unwrap();
        let later = store.get_provider_model("p", "later").await.unwrap();
        assert!(later.discovered && !later.enabled);
        // Applying again changes nothing; a setting taken out of the config leaves the model
        // (discovered) as it was, and a configured-only model goes.
        let again = "providers:\n  - name: p\n    kind: openai\n    keys: [{secret: sk-p}]\n    models: [a]\n    model_settings:\n      - {model: ghost, enabled: false}\n";
        let config = Config::parse(again, &|_| None).unwrap().config;
        let master = MasterKey::from_bytes(&[1; 32]);
        apply_config(&store, &master, &crypto::DigestKey::random(), &config)
            .await
            .unwrap();
        assert!(store.get_provider_model("p", "ghost").await.is_ok());
        let config = Config::parse(text.split("    model_settings").next().unwrap(), &|_| None)
            .unwrap()
            .config;
        apply_config(&store, &master, &crypto::DigestKey::random(), &config)
            .await
            .unwrap();
        assert!(store.get_provider_model("p", "ghost").await.is_err());
        assert!(
            !store
                .get_provider_model("p", "later")
                .await
                .unwrap()
                .enabled
        );
        let bad = "providers:\n  - name: p\n    kind: openai\n    model_settings: [{model: a, context_window: 0}]\n";
        let err = apply(bad).await.1.expect_err("refused").to_string();
        assert!(err.contains("providers[0].model_settings[0]"), "{err}");
    }

    #[tokio::test]
    async fn users_limits_from_the_config_are_applied_and_checked() {
        let text = "users:\n  - {name: intern, rpm: 5, models: [gpt-4o-mini, \"claude-*\"], daily_budget: 2.5}\n  - {name: free}\n";
        let (store, result) = apply(text).await;
        result.unwrap();
        let intern = store.get_user_limits("intern").await.unwrap();
        assert_eq!(intern.models, vec!["gpt-4o-mini", "claude-*"]);
        assert_eq!(
            (
                intern.rpm,
                intern.daily_budget_micros,
                intern.monthly_budget_micros
            ),
            (Some(5), Some(2_500_000), None)
        );
        assert_eq!(
            store.get_user_limits("free").await.unwrap().models,
            vec!["*"]
        );
        for (bad, why) in [
            ("users:\n  - {name: u, models: [\"bad model\"]}\n", "spaces"),
            ("users:\n  - {name: u, daily_budget: 0}\n", "daily_budget"),
        ] {
            let err = apply(bad).await.1.expect_err("refused").to_string();
            assert!(err.contains("users[0]") && err.contains(why), "{err}");
        }
    }

    #[tokio::test]
    async fn provider_keys_from_config_must_be_printable() {
        let text = "providers:\n  - {name: p, kind: openai, keys: [{secret: \"sk-a\\nb\"}]}\n";
        let (_, result) = apply(text).await;
        let err = result.expect_err("refused").to_string();
        assert!(err.contains("providers[0].keys[0]"), "{err}");
        assert!(err.contains("printable"), "{err}");
    }

    #[tokio::test]
    async fn unset_keys_skip_the_provider_and_applying_twice_changes_nothing() {
        let text = "providers:\n  - {name: gone, kind: openai, keys: [{secret: \"${UNSET}\"}]}\n  - {name: here, kind: openai, keys: [{secret: sk-here}]}\n";
        let (store, result) = apply(text).await;
        result.unwrap();
        let names: Vec<String> = store
            .list_providers()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["here".to_string()]);
        let keys = store.list_provider_keys().await.unwrap();
        let master = MasterKey::from_bytes(&[1; 32]);
        let config = Config::parse(text, &|_| None).unwrap().config;
        apply_config(&store, &master, &crypto::DigestKey::random(), &config)
            .await
            .unwrap();
        let again = store.list_provider_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            again.iter().map(|k| &k.id).collect::<Vec<_>>(),
            keys.iter().map(|k| &k.id).collect::<Vec<_>>()
        );
    }
}
