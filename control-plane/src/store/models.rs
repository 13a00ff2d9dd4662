//! Logical models: the names clients ask for, each with its routing strategy and targets.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{now, parse_json, Result, Store, StoreError};
use crate::config::TargetSpec;
use crate::domain::{self, Strategy};

#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub name: String,
    pub strategy: Strategy,
    pub targets: Vec<TargetSpec>,
}

impl Store {
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
}
