//! Target health: each (provider, model)'s attempts, failures, latency and tokens per minute,
//! from which routing scores are made.

use sqlx::Row as _;

use super::{Result, Store};

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

impl HealthRow {
    /// Adds another row's counts (not its target or minute) to this one.
    pub fn absorb(&mut self, other: &HealthRow) {
        self.attempts += other.attempts;
        self.failures += other.failures;
        self.rate_limited += other.rate_limited;
        self.latency_ms_sum += other.latency_ms_sum;
        self.latency_count += other.latency_count;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

impl Store {
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
}
