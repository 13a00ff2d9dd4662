//! Persistent state: the `Store` (one connection pool, migrations per backend) and its
//! operations, one file per concern: providers and their keys, logical models, the model
//! catalog, gateway keys, users and access, target health, prices, settings, the request log,
//! usage reports, user limits and the credit ledger.
//!
//! One implementation over sqlx's `Any` driver serves SQLite (default) and PostgreSQL: the SQL
//! is portable (`$N` placeholders, `ON CONFLICT`, `RETURNING`), column types are limited to
//! TEXT / BIGINT / DOUBLE, and each backend has its own migrations. The same tests run on both.

use std::str::FromStr as _;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
}

mod catalog;
mod health;
mod identity;
mod ingest;
mod keys;
mod ledger;
mod models;
mod prices;
mod providers;
mod reports;
mod request_log;
mod rollups;
mod settings;
mod user_limits;

pub use catalog::*;
pub use health::*;
pub use identity::*;
pub use ingest::*;
pub use keys::*;
pub use ledger::*;
pub use models::*;
pub use prices::*;
pub use providers::*;
pub use reports::*;
pub use request_log::*;
pub use rollups::*;
pub use user_limits::*;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
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
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Statement journals (each multi-row upsert of the ingest has one)
                        // in memory, not in a temporary file: a tenth of the ingest's CPU
                        // went to writing them.
                        sqlx::Executor::execute(&mut *conn, "PRAGMA temp_store = MEMORY").await?;
                        // Write-ahead log: a commit appends the pages it changed to one file
                        // and syncs it (`synchronous` stays FULL: an answered batch of records
                        // is on disk), instead of copying their old contents to a rollback
                        // journal, syncing it, writing the database, syncing it and deleting
                        // the journal.
                        sqlx::Executor::execute(&mut *conn, "PRAGMA journal_mode = WAL").await?;
                        sqlx::Executor::execute(&mut *conn, "PRAGMA synchronous = FULL").await?;
                    }
                    Ok(())
                })
            })
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

    /// Runs a DELETE of one row by key; `NotFound` when nothing matched.
    async fn delete_one(&self, sql: &str, key: &str) -> Result<()> {
        let done = sqlx::query(sql).bind(key).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod rollup_tests;
#[cfg(test)]
mod tests;
