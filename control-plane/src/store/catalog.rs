//! The model catalog: each provider's models (static, discovered, or both) with what is known
//! and decided about them, and aliases.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{now, parse_json, Result, Store, StoreError};
use crate::discovery::{tags_from_name, Discovered, Tag};

/// One model of one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderModelRow {
    pub provider_id: String,
    pub provider: String,
    /// The provider's own name for it (what requests to the provider carry).
    pub model: String,
    /// In the provider's static list.
    pub static_listed: bool,
    /// Some discovery listed it.
    pub discovered: bool,
    /// Unix seconds of the discovery that no longer listed it (`None`: listed, or static only).
    pub vanished_at: Option<i64>,
    /// The config file's `model_settings` name it.
    pub configured: bool,
    pub enabled: bool,
    /// What discovery (or, for static models, the name) says it can do.
    pub detected_tags: Vec<Tag>,
    /// The detected tags come from the provider's metadata, not a guess from the name.
    pub tags_from_metadata: bool,
    /// An admin's tags, replacing the detected ones.
    pub tags_override: Option<Vec<Tag>>,
    pub display_name: Option<String>,
    pub context_window: Option<i64>,
    pub context_window_override: Option<i64>,
    /// Azure: the model behind a deployment.
    pub base_model: Option<String>,
    /// Unix seconds: when the provider made it, else when it was first seen here.
    pub created: i64,
    pub first_seen: i64,
    /// The last discovery that listed it.
    pub seen_at: Option<i64>,
}

impl ProviderModelRow {
    /// Whether clients may use it: enabled, and static or listed by the latest discovery.
    pub fn served(&self) -> bool {
        self.enabled && (self.static_listed || (self.discovered && self.vanished_at.is_none()))
    }

    pub fn tags(&self) -> &[Tag] {
        self.tags_override.as_deref().unwrap_or(&self.detected_tags)
    }

    /// What routing may rely on: the admin's tags, or tags from the provider's metadata; a
    /// guess from the name decides nothing (`None`: able to do everything).
    pub fn capabilities(&self) -> Option<Vec<switchyard_contract::config::Capability>> {
        if self.tags_override.is_none() && !self.tags_from_metadata {
            return None;
        }
        Some(self.tags().iter().filter_map(|t| t.capability()).collect())
    }

    pub fn context_window(&self) -> Option<i64> {
        self.context_window_override.or(self.context_window)
    }
}

/// What a discovery changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DiscoveryChange {
    /// Models listed for the first time.
    pub added: Vec<String>,
    /// Models listed again after they had vanished.
    pub returned: Vec<String>,
    /// Models no longer listed (marked, not deleted).
    pub vanished: Vec<String>,
    /// Models whose details (tags, context window, name) changed.
    pub updated: Vec<String>,
    /// How many models the provider listed.
    pub listed: usize,
}

impl DiscoveryChange {
    /// Whether what clients see may have changed.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty()
            && self.returned.is_empty()
            && self.vanished.is_empty()
            && self.updated.is_empty())
    }
}

/// An admin's change to one provider model; absent fields stay, `Some(None)` resets to the
/// detected value.
#[derive(Debug, Clone, Default)]
pub struct ProviderModelPatch {
    pub enabled: Option<bool>,
    pub tags: Option<Option<Vec<Tag>>>,
    pub context_window: Option<Option<i64>>,
}

/// Largest context window a model may be given (tokens).
pub const MAX_CONTEXT_WINDOW: i64 = 100_000_000;

impl ProviderModelPatch {
    /// A change as given (admin API, config file): tags sorted without repeats, a context
    /// window from 1 to [`MAX_CONTEXT_WINDOW`] tokens.
    pub fn checked(
        enabled: Option<bool>,
        tags: Option<Option<Vec<Tag>>>,
        context_window: Option<Option<i64>>,
    ) -> std::result::Result<ProviderModelPatch, String> {
        if let Some(Some(w)) = context_window {
            if !(1..=MAX_CONTEXT_WINDOW).contains(&w) {
                return Err("context_window must be from 1 to 100,000,000 tokens".into());
            }
        }
        let tags = tags.map(|t| {
            t.map(|mut t| {
                t.sort();
                t.dedup();
                t
            })
        });
        Ok(ProviderModelPatch {
            enabled,
            tags,
            context_window,
        })
    }
}

/// Another name clients may use: exact (`fast` -> `openai/gpt-4o-mini`, or a logical model) or
/// a glob over a provider's models (`claude-*` -> `anthropic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRow {
    pub name: String,
    pub target: String,
}

impl AliasRow {
    pub fn is_glob(&self) -> bool {
        self.name.contains('*')
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn tags_json(tags: &[Tag]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

/// Deletes a provider's rows that nothing keeps: not static, never discovered, not configured.
const DELETE_UNKEPT: &str = "DELETE FROM provider_models
    WHERE provider_id = $1 AND static_listed = 0 AND discovered = 0 AND configured = 0";

const COLUMNS: &str = "m.provider_id, p.name AS provider, m.model, m.static_listed, m.discovered,
    m.vanished_at, m.configured, m.enabled, m.detected_tags, m.tags_from_metadata, m.tags_override,
    m.display_name, m.context_window, m.context_window_override, m.base_model, m.created,
    m.first_seen, m.seen_at
    FROM provider_models m JOIN providers p ON p.id = m.provider_id";

impl Store {
    fn provider_model_from(row: &AnyRow) -> Result<ProviderModelRow> {
        let flag = |name: &str| -> Result<bool> { Ok(row.try_get::<i64, _>(name)? != 0) };
        Ok(ProviderModelRow {
            provider_id: row.try_get("provider_id")?,
            provider: row.try_get("provider")?,
            model: row.try_get("model")?,
            static_listed: flag("static_listed")?,
            discovered: flag("discovered")?,
            vanished_at: row.try_get("vanished_at")?,
            configured: flag("configured")?,
            enabled: flag("enabled")?,
            detected_tags: parse_json("model tags", &row.try_get::<String, _>("detected_tags")?)?,
            tags_from_metadata: flag("tags_from_metadata")?,
            tags_override: row
                .try_get::<Option<String>, _>("tags_override")?
                .map(|t| parse_json("model tags", &t))
                .transpose()?,
            display_name: row.try_get("display_name")?,
            context_window: row.try_get("context_window")?,
            context_window_override: row.try_get("context_window_override")?,
            base_model: row.try_get("base_model")?,
            created: row.try_get("created")?,
            first_seen: row.try_get("first_seen")?,
            seen_at: row.try_get("seen_at")?,
        })
    }

    /// Every provider's models, by provider name and model.
    pub async fn list_provider_models(&self) -> Result<Vec<ProviderModelRow>> {
        let sql = format!("SELECT {COLUMNS} ORDER BY p.name, m.model");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(Self::provider_model_from).collect()
    }

    /// One provider's models.
    pub async fn provider_models(&self, provider: &str) -> Result<Vec<ProviderModelRow>> {
        let sql = format!("SELECT {COLUMNS} WHERE p.name = $1 ORDER BY m.model");
        let rows = sqlx::query(&sql)
            .bind(provider)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::provider_model_from).collect()
    }

    pub async fn get_provider_model(
        &self,
        provider: &str,
        model: &str,
    ) -> Result<ProviderModelRow> {
        let sql = format!("SELECT {COLUMNS} WHERE p.name = $1 AND m.model = $2");
        let row = sqlx::query(&sql)
            .bind(provider)
            .bind(model)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Self::provider_model_from(&row)
    }

    /// Makes `models` the provider's static list: new names get a row (enabled), names no
    /// longer listed lose the mark, and rows neither static nor discovered go.
    pub async fn sync_static_models(&self, provider_id: &str, models: &[String]) -> Result<()> {
        let t = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE provider_models SET static_listed = 0 WHERE provider_id = $1")
            .bind(provider_id)
            .execute(&mut *tx)
            .await?;
        for m in models {
            sqlx::query(
                "INSERT INTO provider_models (provider_id, model, static_listed, enabled,
                     detected_tags, created, first_seen)
                 VALUES ($1, $2, 1, 1, $3, $4, $4)
                 ON CONFLICT (provider_id, model) DO UPDATE SET static_listed = 1",
            )
            .bind(provider_id)
            .bind(m)
            .bind(tags_json(&tags_from_name(m)))
            .bind(t)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(DELETE_UNKEPT)
            .bind(provider_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives every provider's static list its rows (for stores made before the catalog).
    pub(super) async fn sync_all_static_models(&self) -> Result<()> {
        let rows = sqlx::query("SELECT id, models FROM providers")
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let id: String = row.try_get("id")?;
            let models: Vec<String> =
                parse_json("provider models", &row.try_get::<String, _>("models")?)?;
            self.sync_static_models(&id, &models).await?;
        }
        Ok(())
    }

    /// Records what one listing of the provider's models found, in one transaction: new models
    /// are enabled or not as `enable_new` says; models no longer listed are marked vanished.
    pub async fn apply_discovery(
        &self,
        provider_id: &str,
        found: &[Discovered],
        enable_new: bool,
    ) -> Result<DiscoveryChange> {
        let t = now();
        let mut change = DiscoveryChange {
            listed: found.len(),
            ..Default::default()
        };
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query(
            "SELECT model, discovered, vanished_at, detected_tags, tags_from_metadata,
                    display_name, context_window, base_model
             FROM provider_models WHERE provider_id = $1",
        )
        .bind(provider_id)
        .fetch_all(&mut *tx)
        .await?;
        struct Known {
            discovered: bool,
            vanished: bool,
            details: (String, bool, Option<String>, Option<i64>, Option<String>),
        }
        let mut known = std::collections::HashMap::new();
        for r in &existing {
            known.insert(
                r.try_get::<String, _>("model")?,
                Known {
                    discovered: r.try_get::<i64, _>("discovered")? != 0,
                    vanished: r.try_get::<Option<i64>, _>("vanished_at")?.is_some(),
                    details: (
                        r.try_get("detected_tags")?,
                        r.try_get::<i64, _>("tags_from_metadata")? != 0,
                        r.try_get("display_name")?,
                        r.try_get("context_window")?,
                        r.try_get("base_model")?,
                    ),
                },
            );
        }
        let mut listed = std::collections::HashSet::new();
        for d in found {
            if !listed.insert(d.id.as_str()) {
                continue; // a provider listing a model twice
            }
            let details = (
                tags_json(&d.tags),
                d.tags_from_metadata,
                d.display_name.clone(),
                d.context_window.and_then(|c| i64::try_from(c).ok()),
                d.base_model.clone(),
            );
            match known.get(&d.id) {
                None => change.added.push(d.id.clone()),
                Some(k) if k.discovered && k.vanished => change.returned.push(d.id.clone()),
                // A static model now also discovered: what clients see may change by its tags.
                Some(k) if !k.discovered || k.details != details => {
                    change.updated.push(d.id.clone())
                }
                Some(_) => {}
            }
            sqlx::query(
                "INSERT INTO provider_models (provider_id, model, discovered, enabled, detected_tags,
                     tags_from_metadata, display_name, context_window, base_model, created,
                     first_seen, seen_at)
                 VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $10)
                 ON CONFLICT (provider_id, model) DO UPDATE SET discovered = 1, vanished_at = NULL,
                     detected_tags = excluded.detected_tags,
                     tags_from_metadata = excluded.tags_from_metadata,
                     display_name = excluded.display_name,
                     context_window = excluded.context_window,
                     base_model = excluded.base_model, seen_at = excluded.seen_at",
            )
            .bind(provider_id)
            .bind(&d.id)
            .bind(i64::from(enable_new))
            .bind(&details.0)
            .bind(i64::from(details.1))
            .bind(&details.2)
            .bind(details.3)
            .bind(&details.4)
            .bind(d.created.unwrap_or(t))
            .bind(t)
            .execute(&mut *tx)
            .await?;
        }
        for (model, k) in &known {
            if k.discovered && !k.vanished && !listed.contains(model.as_str()) {
                sqlx::query(
                    "UPDATE provider_models SET vanished_at = $1 WHERE provider_id = $2 AND model = $3",
                )
                .bind(t)
                .bind(provider_id)
                .bind(model)
                .execute(&mut *tx)
                .await?;
                change.vanished.push(model.clone());
            }
        }
        tx.commit().await?;
        change.vanished.sort();
        Ok(change)
    }

    /// Makes `settings` what the config file says of the provider's models: each named model
    /// gets a row (served only once static or discovered) with the settings given; models the
    /// config no longer names lose the mark (keeping their values), and go when nothing else
    /// keeps them.
    pub async fn configure_models(
        &self,
        provider: &str,
        settings: &[(String, ProviderModelPatch)],
    ) -> Result<()> {
        let id: String = sqlx::query("SELECT id FROM providers WHERE name = $1")
            .bind(provider)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?
            .try_get("id")?;
        sqlx::query("UPDATE provider_models SET configured = 0 WHERE provider_id = $1")
            .bind(&id)
            .execute(&self.pool)
            .await?;
        for (model, patch) in settings {
            let t = now();
            sqlx::query(
                "INSERT INTO provider_models (provider_id, model, configured, enabled,
                     detected_tags, created, first_seen)
                 VALUES ($1, $2, 1, 1, $3, $4, $4)
                 ON CONFLICT (provider_id, model) DO UPDATE SET configured = 1",
            )
            .bind(&id)
            .bind(model)
            .bind(tags_json(&tags_from_name(model)))
            .bind(t)
            .execute(&self.pool)
            .await?;
            self.update_provider_model(provider, model, patch).await?;
        }
        sqlx::query(DELETE_UNKEPT)
            .bind(&id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An admin's change to one provider model.
    pub async fn update_provider_model(
        &self,
        provider: &str,
        model: &str,
        patch: &ProviderModelPatch,
    ) -> Result<ProviderModelRow> {
        let current = self.get_provider_model(provider, model).await?;
        let tags = match &patch.tags {
            Some(t) => t.clone(),
            None => current.tags_override.clone(),
        };
        let window = match patch.context_window {
            Some(w) => w,
            None => current.context_window_override,
        };
        sqlx::query(
            "UPDATE provider_models SET enabled = $1, tags_override = $2, context_window_override = $3
             WHERE provider_id = $4 AND model = $5",
        )
        .bind(i64::from(patch.enabled.unwrap_or(current.enabled)))
        .bind(tags.as_deref().map(tags_json))
        .bind(window)
        .bind(&current.provider_id)
        .bind(model)
        .execute(&self.pool)
        .await?;
        self.get_provider_model(provider, model).await
    }

    // ---- aliases ---------------------------------------------------------------------------

    pub async fn list_aliases(&self) -> Result<Vec<AliasRow>> {
        let rows = sqlx::query("SELECT name, target FROM aliases ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AliasRow {
                    name: r.try_get("name")?,
                    target: r.try_get("target")?,
                })
            })
            .collect()
    }

    pub async fn get_alias(&self, name: &str) -> Result<AliasRow> {
        let row = sqlx::query("SELECT name, target FROM aliases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(AliasRow {
            name: row.try_get("name")?,
            target: row.try_get("target")?,
        })
    }

    /// Creates or changes an alias.
    pub async fn put_alias(&self, alias: &AliasRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO aliases (name, target, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (name) DO UPDATE SET target = excluded.target, updated_at = excluded.updated_at",
        )
        .bind(&alias.name)
        .bind(&alias.target)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_alias(&self, name: &str) -> Result<()> {
        self.delete_one("DELETE FROM aliases WHERE name = $1", name)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob_matches("claude-*", "claude-sonnet-4-5"));
        assert!(glob_matches("claude-*", "claude-"));
        assert!(!glob_matches("claude-*", "claud"));
        assert!(!glob_matches("claude-*", "my-claude-x"));
        assert!(glob_matches("*-mini", "gpt-4o-mini"));
        assert!(glob_matches("gpt-*-mini", "gpt-4o-mini"));
        assert!(!glob_matches("gpt-*-mini", "gpt-4o"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "aXcYb"));
        assert!(!glob_matches("ab*ba", "aba"), "the ends may not overlap");
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
    }
}
