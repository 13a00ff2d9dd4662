//! Settings (named values shared by every control plane on the store), and resealing every
//! sealed value (provider keys, sealed settings) under a new master key.

use sqlx::Row as _;

use super::{Result, Store, StoreError};

impl Store {
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
