//! What an admin allows a user over all of its keys, the limit table the limits service
//! enforces, and the spend so far that its counters start from.

use serde::Serialize;
use sqlx::Row as _;

use super::{Result, Store, StoreError};

/// What an admin allows a user over all of its keys (the user cannot change it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserLimitsRow {
    pub user: String,
    /// Requests and tokens per minute.
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    /// Models the user's keys may use: exact names, `*`, or a prefix ending in `*`; each key's
    /// own scope applies within this one.
    pub models: Vec<String>,
    /// Spend caps, micro-USD per UTC day and month.
    pub daily_budget_micros: Option<i64>,
    pub monthly_budget_micros: Option<i64>,
}

impl Store {
    /// Every key's and user's limits, for the limits service.
    pub async fn limits_table(&self) -> Result<crate::limits::Table> {
        let mut table = crate::limits::Table::default();
        let keys = sqlx::query(
            "SELECT k.id, u.name, k.rpm, k.tpm, k.daily_budget_micros, k.monthly_budget_micros
             FROM api_keys k JOIN users u ON u.id = k.user_id",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &keys {
            table.keys.insert(
                r.try_get("id")?,
                crate::limits::KeyLimits {
                    user: r.try_get("name")?,
                    rpm: r.try_get("rpm")?,
                    tpm: r.try_get("tpm")?,
                    daily_micros: r.try_get("daily_budget_micros")?,
                    monthly_micros: r.try_get("monthly_budget_micros")?,
                },
            );
        }
        let users = sqlx::query(
            "SELECT u.name, u.rpm, u.tpm, u.daily_budget_micros, u.monthly_budget_micros,
                    CAST(CASE WHEN a.user_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS metered
             FROM users u LEFT JOIN credit_accounts a ON a.user_id = u.id",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &users {
            table.users.insert(
                r.try_get("name")?,
                crate::limits::UserLimits {
                    rpm: r.try_get("rpm")?,
                    tpm: r.try_get("tpm")?,
                    daily_micros: r.try_get("daily_budget_micros")?,
                    monthly_micros: r.try_get("monthly_budget_micros")?,
                    metered: r.try_get::<i64, _>("metered")? == 1,
                },
            );
        }
        Ok(table)
    }

    /// What an admin allows a user over all of its keys.
    pub async fn get_user_limits(&self, user: &str) -> Result<UserLimitsRow> {
        let row = sqlx::query(
            "SELECT name, rpm, tpm, models, daily_budget_micros, monthly_budget_micros
             FROM users WHERE name = $1",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(UserLimitsRow {
            user: row.try_get("name")?,
            rpm: row.try_get("rpm")?,
            tpm: row.try_get("tpm")?,
            models: super::parse_json("user models", &row.try_get::<String, _>("models")?)?,
            daily_budget_micros: row.try_get("daily_budget_micros")?,
            monthly_budget_micros: row.try_get("monthly_budget_micros")?,
        })
    }

    /// Sets all of a user's limits (`limits.user` names the user).
    pub async fn set_user_limits(&self, limits: &UserLimitsRow) -> Result<()> {
        let done = sqlx::query(
            "UPDATE users SET rpm = $1, tpm = $2, models = $3, daily_budget_micros = $4,
                 monthly_budget_micros = $5
             WHERE name = $6",
        )
        .bind(limits.rpm)
        .bind(limits.tpm)
        .bind(super::json_list(&limits.models))
        .bind(limits.daily_budget_micros)
        .bind(limits.monthly_budget_micros)
        .bind(&limits.user)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// What each user with a spend cap spent since `day_start` and `month_start` (Unix ms,
    /// starts of UTC days: read from the day rollups, which outlive the request log).
    pub async fn user_spend(
        &self,
        day_start: i64,
        month_start: i64,
    ) -> Result<Vec<(String, i64, i64)>> {
        self.spend_since(
            "SELECT r.user_name AS who,
                    CAST(COALESCE(SUM(CASE WHEN r.start_ms >= $1 THEN r.cost_micros ELSE 0 END), 0) AS BIGINT) AS today,
                    CAST(COALESCE(SUM(r.cost_micros), 0) AS BIGINT) AS month
             FROM usage_rollup r JOIN users u ON u.name = r.user_name
             WHERE r.grain_ms = 86400000 AND r.start_ms >= $2 AND r.cost_micros <> 0
               AND (u.daily_budget_micros IS NOT NULL OR u.monthly_budget_micros IS NOT NULL)
             GROUP BY r.user_name",
            day_start,
            month_start,
        )
        .await
    }

    /// What each key spent since `day_start` and `month_start` (Unix ms, starts of UTC days).
    pub async fn key_spend(
        &self,
        day_start: i64,
        month_start: i64,
    ) -> Result<Vec<(String, i64, i64)>> {
        self.spend_since(
            "SELECT key_id AS who,
                    CAST(COALESCE(SUM(CASE WHEN start_ms >= $1 THEN cost_micros ELSE 0 END), 0) AS BIGINT) AS today,
                    CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS month
             FROM usage_rollup WHERE grain_ms = 86400000 AND start_ms >= $2 AND key_id <> ''
               AND cost_micros <> 0
             GROUP BY key_id",
            day_start,
            month_start,
        )
        .await
    }

    /// (who, today, this month) rows of a spend query over `$1` (day start) and `$2` (month
    /// start).
    async fn spend_since(
        &self,
        sql: &'static str,
        day_start: i64,
        month_start: i64,
    ) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(sql)
            .bind(day_start)
            .bind(month_start)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("who")?, r.try_get("today")?, r.try_get("month")?)))
            .collect()
    }
}
