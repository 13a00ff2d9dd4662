//! Gateway keys: only the digest of each secret is stored, with the key's owner, models and
//! limits.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{json_list, map_unique, now, opt_u32, parse_json, Result, Store, StoreError};

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

impl Store {
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
}
