//! Persistent state: providers, provider keys (sealed), logical models, users, gateway keys.
//!
//! One implementation over sqlx's `Any` driver serves SQLite (default) and PostgreSQL: the SQL
//! is portable (`$N` placeholders, `ON CONFLICT`, `RETURNING`), column types are limited to
//! TEXT / BIGINT / DOUBLE, and each backend has its own migrations. The same tests run on both.

use std::str::FromStr as _;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row as _};

use switchyard_filter::pricing::Price;

use crate::config::TargetSpec;
use crate::domain::{self, ProviderDef, ProviderKind, ProviderSettings, Strategy};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRow {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub models: Vec<String>,
    pub settings: ProviderSettings,
    pub enabled: bool,
    pub access: ProviderAccess,
}

/// One target's health figures for one minute (or summed over several, see
/// [`Store::health_since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthRow {
    pub provider: String,
    pub model: String,
    /// Unix minutes.
    pub minute: i64,
    pub attempts: i64,
    /// Attempts that failed: 5xx, 429, no answer.
    pub failures: i64,
    pub rate_limited: i64,
    /// Time to the provider's first byte, summed over `latency_count` answered attempts.
    pub latency_ms_sum: i64,
    pub latency_count: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// A provider model's price (micro-USD per million tokens, by kind of token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRow {
    pub provider: String,
    pub model: String,
    pub price: Price,
}

/// A provider key as stored: the secret stays sealed until the snapshot is built.
#[derive(Clone, PartialEq)]
pub struct ProviderKeyRow {
    pub id: String,
    pub provider_id: String,
    pub digest: String,
    pub secret_sealed: String,
    pub weight: u32,
    pub qps: Option<u32>,
}

impl std::fmt::Debug for ProviderKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeyRow")
            .field("id", &self.id)
            .field("provider_id", &self.provider_id)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

/// A provider key to store (already sealed, with the digest of its secret for identity).
#[derive(Clone)]
pub struct NewProviderKey {
    pub digest: String,
    pub secret_sealed: String,
    pub weight: u32,
    pub qps: Option<u32>,
}

impl NewProviderKey {
    /// Seals a provider key's secret (trimmed) under the master key. A secret must be
    /// non-empty and printable: it ends up in a request header.
    /// What a key must be depends on the provider's kind: a Vertex key is a service account
    /// key file, checked here so that a bad one is refused when given, not when first used.
    pub fn seal(
        master: &crate::crypto::MasterKey,
        kind: ProviderKind,
        secret: &str,
        weight: u32,
        qps: Option<u32>,
    ) -> std::result::Result<NewProviderKey, String> {
        let secret = secret.trim();
        if secret.is_empty() || secret.chars().any(char::is_control) {
            return Err("a provider key must be non-empty and printable".into());
        }
        crate::providers::spec(kind).check_secret(secret)?;
        Ok(NewProviderKey {
            digest: crate::crypto::digest(secret),
            secret_sealed: master.seal(secret),
            weight,
            qps,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub name: String,
    pub strategy: Strategy,
    pub targets: Vec<TargetSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub user: String,
    pub prefix: String,
    pub digest: String,
    pub models: Vec<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub credits: Option<f64>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    /// Spend caps, micro-USD per UTC day and month.
    pub daily_budget_micros: Option<i64>,
    pub monthly_budget_micros: Option<i64>,
    /// Requests with this key ask the rate limit service (see [`crate::limits::Table::limited`];
    /// filled in when the gateway state is loaded).
    pub limited: bool,
    /// The owner is not disabled (a disabled user's keys are left out of the configuration).
    pub user_active: bool,
    /// The models an admin allows the owner: the key serves only those of its own `models`
    /// that lie within these too (see [`crate::scope::intersect`]).
    pub user_models: Vec<String>,
}

/// A gateway key to store: only the digest of its secret.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub user: String,
    pub prefix: String,
    pub digest: String,
    pub models: Vec<String>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub credits: Option<f64>,
    pub expires_at: Option<i64>,
    pub daily_budget_micros: Option<i64>,
    pub monthly_budget_micros: Option<i64>,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn settings_json(s: &ProviderSettings) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn opt_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn map_unique(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Conflict(what.to_owned()),
        _ => StoreError::Db(e),
    }
}

impl Store {
    /// Connects and migrates. `sqlite://path` creates the file when missing.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else if url.starts_with("sqlite:") {
            // Validate the URL with the SQLite driver's own parser, then ask for create-if-missing.
            sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
            let url = if url.contains("mode=") {
                url.to_owned()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else {
            return Err(StoreError::Db(sqlx::Error::Configuration(
                "database must be a sqlite:// or postgres:// URL".into(),
            )));
        };
        let max = if backend == Backend::Sqlite { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await?;
        let store = Store { pool, backend };
        store.migrate().await?;
        store.sync_all_static_models().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => {
                sqlx::migrate!("migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- providers -------------------------------------------------------------------------

    /// Creates or updates the provider called `name`; returns its id.
    pub async fn upsert_provider(&self, name: &str, def: &ProviderDef) -> Result<String> {
        let t = now();
        let row = sqlx::query(
            "INSERT INTO providers (id, name, kind, base_url, models, settings, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, base_url = excluded.base_url,
                 models = excluded.models, settings = excluded.settings,
                 updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(crate::crypto::new_id("prov_"))
        .bind(name)
        .bind(domain::kind_str(def.kind))
        .bind(&def.base_url)
        .bind(json_list(&def.models))
        .bind(settings_json(&def.settings))
        .bind(t)
        .fetch_one(&self.pool)
        .await?;
        let id: String = row.try_get("id")?;
        self.sync_static_models(&id, &def.models).await?;
        Ok(id)
    }

    /// Creates a provider; fails with `Conflict` when the name is taken.
    pub async fn insert_provider(&self, name: &str, def: &ProviderDef) -> Result<String> {
        let id = crate::crypto::new_id("prov_");
        let t = now();
        sqlx::query(
            "INSERT INTO providers (id, name, kind, base_url, models, settings, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)",
        )
        .bind(&id)
        .bind(name)
        .bind(domain::kind_str(def.kind))
        .bind(&def.base_url)
        .bind(json_list(&def.models))
        .bind(settings_json(&def.settings))
        .bind(t)
        .execute(&self.pool)
        .await
        .map_err(map_unique("provider"))?;
        self.sync_static_models(&id, &def.models).await?;
        Ok(id)
    }

    fn provider_from(row: &AnyRow) -> Result<ProviderRow> {
        let kind: String = row.try_get("kind")?;
        Ok(ProviderRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            kind: domain::parse_kind(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("provider kind {kind}")))?,
            base_url: row.try_get("base_url")?,
            models: parse_json("provider models", &row.try_get::<String, _>("models")?)?,
            settings: parse_json("provider settings", &row.try_get::<String, _>("settings")?)?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            access: ProviderAccess {
                owner: row.try_get("owner_name")?,
                owner_is_admin: row.try_get::<Option<String>, _>("owner_role")?.as_deref()
                    == Some("admin"),
                public: row.try_get::<String, _>("visibility")? == "public",
                review: row.try_get("review")?,
                review_note: row.try_get("review_note")?,
                shared_with: Vec::new(),
            },
        })
    }

    const PROVIDER_COLUMNS: &'static str =
        "p.id, p.name, p.kind, p.base_url, p.models, p.settings, p.enabled, p.visibility, p.review,
         p.review_note, u.name AS owner_name, u.role AS owner_role
         FROM providers p LEFT JOIN users u ON u.id = p.owner_id";

    pub async fn list_providers(&self) -> Result<Vec<ProviderRow>> {
        let sql = format!("SELECT {} ORDER BY p.name", Self::PROVIDER_COLUMNS);
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut providers = rows
            .iter()
            .map(Self::provider_from)
            .collect::<Result<Vec<_>>>()?;
        let shares = self.all_shares().await?;
        for p in &mut providers {
            p.access.shared_with = shares
                .iter()
                .filter(|(id, _)| *id == p.id)
                .map(|(_, user)| user.clone())
                .collect();
        }
        Ok(providers)
    }

    pub async fn get_provider(&self, name: &str) -> Result<ProviderRow> {
        let sql = format!("SELECT {} WHERE p.name = $1", Self::PROVIDER_COLUMNS);
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut provider = Self::provider_from(&row)?;
        provider.access.shared_with = self
            .all_shares()
            .await?
            .into_iter()
            .filter(|(id, _)| *id == provider.id)
            .map(|(_, user)| user)
            .collect();
        Ok(provider)
    }

    pub async fn update_provider(
        &self,
        name: &str,
        def: &ProviderDef,
        enabled: bool,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE providers SET kind = $1, base_url = $2, models = $3, settings = $4, enabled = $5,
                 updated_at = $6
             WHERE name = $7",
        )
        .bind(domain::kind_str(def.kind))
        .bind(&def.base_url)
        .bind(json_list(&def.models))
        .bind(settings_json(&def.settings))
        .bind(i64::from(enabled))
        .bind(now())
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let id: String = sqlx::query("SELECT id FROM providers WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?
            .try_get("id")?;
        self.sync_static_models(&id, &def.models).await
    }

    pub async fn delete_provider(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for table in ["provider_keys", "provider_models"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE provider_id IN (SELECT id FROM providers WHERE name = $1)"
            ))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query("DELETE FROM providers WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes `keys` the provider's key set: keys are identified by the digest of their secret,
    /// so re-applying the same set keeps their ids.
    pub async fn replace_provider_keys(
        &self,
        provider_id: &str,
        keys: &[NewProviderKey],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query("SELECT digest FROM provider_keys WHERE provider_id = $1")
            .bind(provider_id)
            .fetch_all(&mut *tx)
            .await?;
        for row in existing {
            let digest: String = row.try_get("digest")?;
            if !keys.iter().any(|k| k.digest == digest) {
                sqlx::query("DELETE FROM provider_keys WHERE provider_id = $1 AND digest = $2")
                    .bind(provider_id)
                    .bind(&digest)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for key in keys {
            sqlx::query(
                "INSERT INTO provider_keys (id, provider_id, digest, secret_sealed, weight, qps, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (provider_id, digest) DO UPDATE SET weight = excluded.weight, qps = excluded.qps",
            )
            .bind(crate::crypto::new_id("pk_"))
            .bind(provider_id)
            .bind(&key.digest)
            .bind(&key.secret_sealed)
            .bind(i64::from(key.weight))
            .bind(key.qps.map(i64::from))
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_provider_keys(&self) -> Result<Vec<ProviderKeyRow>> {
        let rows = sqlx::query(
            "SELECT id, provider_id, digest, secret_sealed, weight, qps FROM provider_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderKeyRow {
                    id: r.try_get("id")?,
                    provider_id: r.try_get("provider_id")?,
                    digest: r.try_get("digest")?,
                    secret_sealed: r.try_get("secret_sealed")?,
                    weight: opt_u32(Some(r.try_get("weight")?)).unwrap_or(1),
                    qps: opt_u32(r.try_get("qps")?),
                })
            })
            .collect()
    }

    // ---- logical models --------------------------------------------------------------------

    pub async fn upsert_model(&self, model: &ModelRow) -> Result<()> {
        let t = now();
        sqlx::query(
            "INSERT INTO models (name, strategy, targets, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (name) DO UPDATE SET strategy = excluded.strategy, targets = excluded.targets,
                 updated_at = excluded.updated_at",
        )
        .bind(&model.name)
        .bind(domain::strategy_str(model.strategy))
        .bind(serde_json::to_string(&model.targets).unwrap_or_else(|_| "[]".into()))
        .bind(t)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn model_from(row: &AnyRow) -> Result<ModelRow> {
        let strategy: String = row.try_get("strategy")?;
        Ok(ModelRow {
            name: row.try_get("name")?,
            strategy: domain::parse_strategy(&strategy)
                .ok_or_else(|| StoreError::Corrupt(format!("strategy {strategy}")))?,
            targets: parse_json("model targets", &row.try_get::<String, _>("targets")?)?,
        })
    }

    pub async fn list_models(&self) -> Result<Vec<ModelRow>> {
        let rows = sqlx::query("SELECT name, strategy, targets FROM models ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::model_from).collect()
    }

    pub async fn get_model(&self, name: &str) -> Result<ModelRow> {
        let row = sqlx::query("SELECT name, strategy, targets FROM models WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Self::model_from(&row)
    }

    pub async fn delete_model(&self, name: &str) -> Result<()> {
        self.delete_one("DELETE FROM models WHERE name = $1", name)
            .await
    }

    /// Runs a DELETE of one row by key; `NotFound` when nothing matched.
    async fn delete_one(&self, sql: &str, key: &str) -> Result<()> {
        let done = sqlx::query(sql).bind(key).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ---- users and gateway keys ------------------------------------------------------------

    /// The id of the user called `name`, created if missing.
    pub async fn ensure_user(&self, name: &str) -> Result<String> {
        let row = sqlx::query(
            "INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
        )
        .bind(crate::crypto::new_id("usr_"))
        .bind(name)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Creates a key, or (with `replace`) updates the key of the same name.
    pub async fn put_api_key(&self, key: &NewApiKey, replace: bool) -> Result<String> {
        let user_id = self.ensure_user(&key.user).await?;
        let insert = "INSERT INTO api_keys (id, name, user_id, prefix, digest, models, rpm, tpm, credits, expires_at, created_at,
                 daily_budget_micros, monthly_budget_micros)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
        let sql = if replace {
            format!(
                "{insert} ON CONFLICT (name) DO UPDATE SET user_id = excluded.user_id, prefix = excluded.prefix,
                 digest = excluded.digest, models = excluded.models, rpm = excluded.rpm, tpm = excluded.tpm,
                 credits = excluded.credits, expires_at = excluded.expires_at,
                 daily_budget_micros = excluded.daily_budget_micros,
                 monthly_budget_micros = excluded.monthly_budget_micros RETURNING id"
            )
        } else {
            format!("{insert} RETURNING id")
        };
        let row = sqlx::query(&sql)
            .bind(crate::crypto::new_id("key_"))
            .bind(&key.name)
            .bind(&user_id)
            .bind(&key.prefix)
            .bind(&key.digest)
            .bind(json_list(&key.models))
            .bind(key.rpm.map(i64::from))
            .bind(key.tpm.map(i64::from))
            .bind(key.credits)
            .bind(key.expires_at)
            .bind(now())
            .bind(key.daily_budget_micros)
            .bind(key.monthly_budget_micros)
            .fetch_one(&self.pool)
            .await
            .map_err(map_unique("API key"))?;
        Ok(row.try_get("id")?)
    }

    fn api_key_from(row: &AnyRow) -> Result<ApiKeyRow> {
        Ok(ApiKeyRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            user: row.try_get("user_name")?,
            prefix: row.try_get("prefix")?,
            digest: row.try_get("digest")?,
            models: parse_json("key models", &row.try_get::<String, _>("models")?)?,
            rpm: opt_u32(row.try_get("rpm")?),
            tpm: opt_u32(row.try_get("tpm")?),
            credits: row.try_get("credits")?,
            expires_at: row.try_get("expires_at")?,
            created_at: row.try_get("created_at")?,
            daily_budget_micros: row.try_get("daily_budget_micros")?,
            monthly_budget_micros: row.try_get("monthly_budget_micros")?,
            limited: false,
            user_active: row.try_get::<String, _>("user_status")? == "active",
            user_models: parse_json("user models", &row.try_get::<String, _>("user_models")?)?,
        })
    }

    const API_KEY_COLUMNS: &'static str = "k.id, k.name, u.name AS user_name, k.prefix, k.digest, k.models, k.rpm, k.tpm, k.credits, k.expires_at, k.created_at,
         k.daily_budget_micros, k.monthly_budget_micros, u.status AS user_status, u.models AS user_models
         FROM api_keys k JOIN users u ON u.id = k.user_id";

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        let sql = format!(
            "SELECT {} ORDER BY k.created_at, k.id",
            Self::API_KEY_COLUMNS
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(Self::api_key_from).collect()
    }

    pub async fn get_api_key(&self, id: &str) -> Result<ApiKeyRow> {
        let sql = format!("SELECT {} WHERE k.id = $1", Self::API_KEY_COLUMNS);
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Self::api_key_from(&row)
    }

    pub async fn delete_api_key(&self, id: &str) -> Result<()> {
        self.delete_one("DELETE FROM api_keys WHERE id = $1", id)
            .await
    }

    // ---- target health and prices ----------------------------------------------------------

    /// Adds figures to their (target, minute) rows, in one transaction.
    pub async fn add_health(&self, rows: &[HealthRow]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO target_health (provider, model, minute, attempts, failures, rate_limited,
                     latency_ms_sum, latency_count, prompt_tokens, completion_tokens)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (provider, model, minute) DO UPDATE SET
                     attempts = target_health.attempts + excluded.attempts,
                     failures = target_health.failures + excluded.failures,
                     rate_limited = target_health.rate_limited + excluded.rate_limited,
                     latency_ms_sum = target_health.latency_ms_sum + excluded.latency_ms_sum,
                     latency_count = target_health.latency_count + excluded.latency_count,
                     prompt_tokens = target_health.prompt_tokens + excluded.prompt_tokens,
                     completion_tokens = target_health.completion_tokens + excluded.completion_tokens",
            )
            .bind(&r.provider)
            .bind(&r.model)
            .bind(r.minute)
            .bind(r.attempts)
            .bind(r.failures)
            .bind(r.rate_limited)
            .bind(r.latency_ms_sum)
            .bind(r.latency_count)
            .bind(r.prompt_tokens)
            .bind(r.completion_tokens)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Each target's figures summed over the minutes from `since` on (`minute` is `since`).
    pub async fn health_since(&self, since: i64) -> Result<Vec<HealthRow>> {
        let rows = sqlx::query(
            "SELECT provider, model, CAST(SUM(attempts) AS BIGINT) AS attempts,
                    CAST(SUM(failures) AS BIGINT) AS failures,
                    CAST(SUM(rate_limited) AS BIGINT) AS rate_limited,
                    CAST(SUM(latency_ms_sum) AS BIGINT) AS latency_ms_sum,
                    CAST(SUM(latency_count) AS BIGINT) AS latency_count,
                    CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens,
                    CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens
             FROM target_health WHERE minute >= $1 GROUP BY provider, model ORDER BY provider, model",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HealthRow {
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    minute: since,
                    attempts: r.try_get("attempts")?,
                    failures: r.try_get("failures")?,
                    rate_limited: r.try_get("rate_limited")?,
                    latency_ms_sum: r.try_get("latency_ms_sum")?,
                    latency_count: r.try_get("latency_count")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                })
            })
            .collect()
    }

    /// Drops figures older than `before` (minutes).
    pub async fn prune_health(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM target_health WHERE minute < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn put_price(&self, row: &PriceRow) -> Result<()> {
        let p = &row.price;
        let micros = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO prices (provider, model, input_micros, output_micros, cache_read_micros,
                 cache_write_micros, reasoning_micros) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (provider, model) DO UPDATE SET input_micros = excluded.input_micros,
                 output_micros = excluded.output_micros, cache_read_micros = excluded.cache_read_micros,
                 cache_write_micros = excluded.cache_write_micros, reasoning_micros = excluded.reasoning_micros",
        )
        .bind(&row.provider)
        .bind(&row.model)
        .bind(micros(p.input))
        .bind(micros(p.output))
        .bind(p.cache_read.map(micros))
        .bind(p.cache_write.map(micros))
        .bind(p.reasoning.map(micros))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_price(&self, provider: &str, model: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM prices WHERE provider = $1 AND model = $2")
            .bind(provider)
            .bind(model)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn list_prices(&self) -> Result<Vec<PriceRow>> {
        let rows = sqlx::query(
            "SELECT provider, model, input_micros, output_micros, cache_read_micros,
                    cache_write_micros, reasoning_micros FROM prices ORDER BY provider, model",
        )
        .fetch_all(&self.pool)
        .await?;
        let micros = |v: i64| u64::try_from(v).unwrap_or(0);
        rows.iter()
            .map(|r| {
                Ok(PriceRow {
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    price: Price {
                        input: micros(r.try_get("input_micros")?),
                        output: micros(r.try_get("output_micros")?),
                        cache_read: r
                            .try_get::<Option<i64>, _>("cache_read_micros")?
                            .map(micros),
                        cache_write: r
                            .try_get::<Option<i64>, _>("cache_write_micros")?
                            .map(micros),
                        reasoning: r.try_get::<Option<i64>, _>("reasoning_micros")?.map(micros),
                    },
                })
            })
            .collect()
    }

    /// Turns gateway key digests stored before digests were keyed into keyed ones (`rekey`
    /// gives the new form, `None` for a row already converted), in one transaction; a row is
    /// changed only if it still holds what was read, so two control planes starting together
    /// cannot convert one twice. Returns how many changed.
    pub async fn rekey_api_key_digests(
        &self,
        rekey: impl Fn(&str) -> Option<String>,
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT id, digest FROM api_keys")
            .fetch_all(&mut *tx)
            .await?;
        let mut changed = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            let digest: String = row.try_get("digest")?;
            let Some(keyed) = rekey(&digest) else {
                continue;
            };
            changed += sqlx::query("UPDATE api_keys SET digest = $1 WHERE id = $2 AND digest = $3")
                .bind(&keyed)
                .bind(&id)
                .bind(&digest)
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(changed)
    }

    // ---- settings --------------------------------------------------------------------------

    pub async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Stores `value` unless the setting exists; returns whether it was stored.
    pub async fn set_setting_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a setting's value only if it is still `expected` (compare and swap: several
    /// control planes, and the CLI, share the store); returns whether it was replaced.
    pub async fn replace_setting(&self, key: &str, expected: &str, value: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
            .bind(value)
            .bind(key)
            .bind(expected)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Seals every sealed value again (provider keys, and settings whose name ends in
    /// `_sealed`), in one transaction: `reseal` gives the new sealed text, or `None` to keep a
    /// value; an error aborts it all (nothing is lost). Returns how many values changed.
    pub async fn reseal_all(
        &self,
        reseal: impl Fn(&str) -> std::result::Result<Option<String>, String>,
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        let keys = sqlx::query("SELECT id, secret_sealed FROM provider_keys")
            .fetch_all(&mut *tx)
            .await?;
        for row in keys {
            let id: String = row.try_get("id")?;
            let sealed: String = row.try_get("secret_sealed")?;
            if let Some(new) = reseal(&sealed)
                .map_err(|e| StoreError::Corrupt(format!("provider key {id}: {e}")))?
            {
                sqlx::query("UPDATE provider_keys SET secret_sealed = $1 WHERE id = $2")
                    .bind(new)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                changed += 1;
            }
        }
        let settings =
            sqlx::query("SELECT key, value FROM settings WHERE key LIKE '%!_sealed' ESCAPE '!'")
                .fetch_all(&mut *tx)
                .await?;
        for row in settings {
            let key: String = row.try_get("key")?;
            let sealed: String = row.try_get("value")?;
            if let Some(new) =
                reseal(&sealed).map_err(|e| StoreError::Corrupt(format!("setting {key}: {e}")))?
            {
                sqlx::query("UPDATE settings SET value = $1 WHERE key = $2")
                    .bind(new)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
                changed += 1;
            }
        }
        tx.commit().await?;
        Ok(changed)
    }
}

mod accounting;
pub use accounting::*;
mod catalog;
pub use catalog::*;
mod identity;
pub use identity::*;

#[cfg(test)]
mod tests;
