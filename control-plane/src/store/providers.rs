//! Providers (where requests go, and how) and their keys: sealed secrets identified by the
//! digest of the secret, so applying the same key set again keeps their ids.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{
    json_list, map_unique, now, opt_u32, parse_json, ProviderAccess, Result, Store, StoreError,
};
use crate::domain::{self, ProviderDef, ProviderKind, ProviderSettings};

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

fn settings_json(s: &ProviderSettings) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

impl Store {
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
        .bind(crate::providers::spec(def.kind).name())
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
        .bind(crate::providers::spec(def.kind).name())
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
        .bind(crate::providers::spec(def.kind).name())
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
}
