//! Usage reports: usage and cost grouped by key, user, model or provider (from the usage
//! rollups, see [`super::rollups`]), and each provider's figures over time (requests, errors,
//! latency percentiles, from the request log).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row as _;

use super::rollups::{pieces, Piece};
use super::{Result, Store};

/// How a usage report groups requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportGroup {
    Day,
    Key,
    User,
    Model,
    Provider,
}

/// One group of a usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub group: String,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_micros: i64,
}

/// p50, p95 and p99 of some durations (ms); `None` without samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: i64,
    pub p95: i64,
    pub p99: i64,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    pub fn of(samples: &mut [i64]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: usize| samples[(samples.len() * p).div_ceil(100).max(1) - 1];
        Some(Percentiles {
            p50: rank(50),
            p95: rank(95),
            p99: rank(99),
        })
    }
}

/// One provider's figures over one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesPoint {
    pub provider: String,
    pub start_ms: i64,
    pub requests: i64,
    /// 5xx, 429 and no answer.
    pub errors: i64,
    pub latency_ms: Option<Percentiles>,
    pub ttft_ms: Option<Percentiles>,
    /// Time to the provider's first byte.
    pub upstream_ms: Option<Percentiles>,
}

impl Store {
    /// Usage and cost between `from_ms` and `to_ms`, grouped by `group` (see [`ReportGroup`]).
    pub async fn usage_report(
        &self,
        group: ReportGroup,
        from_ms: i64,
        to_ms: i64,
        user: Option<&str>,
    ) -> Result<Vec<UsageRow>> {
        // The group of a rollup row and of a log row (days: UTC day numbers, which the
        // grains all nest in).
        let (rollup_expr, log_expr) = match group {
            ReportGroup::Day => (
                "CAST(start_ms / 86400000 AS TEXT)",
                "CAST(at_ms / 86400000 AS TEXT)",
            ),
            ReportGroup::Key => ("key_id", "key_id"),
            ReportGroup::User => ("user_name", "user_name"),
            ReportGroup::Model => ("model", "model"),
            ReportGroup::Provider => ("provider", "provider"),
        };
        // `$1`: the user ('' for everyone); then each piece's bounds.
        let mut parts = Vec::new();
        let mut binds = Vec::new();
        for piece in pieces(from_ms, to_ms) {
            let n = binds.len() + 2;
            match piece {
                Piece::Rollup { grain, from, to } => {
                    parts.push(format!(
                        "SELECT {rollup_expr} AS grp, requests, errors, prompt_tokens,
                            completion_tokens, cached_tokens, reasoning_tokens, cost_micros
                         FROM usage_rollup WHERE grain_ms = ${n} AND start_ms >= ${}
                            AND start_ms < ${} AND ($1 = '' OR user_name = $1)",
                        n + 1,
                        n + 2
                    ));
                    binds.extend([grain, from, to]);
                }
                Piece::Log { from, to } => {
                    parts.push(format!(
                        "SELECT {log_expr} AS grp, 1 AS requests,
                            CASE WHEN status >= 400 OR status = 0 THEN 1 ELSE 0 END AS errors,
                            prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
                            COALESCE(cost_micros, 0) AS cost_micros
                         FROM request_log WHERE at_ms >= ${n} AND at_ms < ${}
                            AND ($1 = '' OR user_name = $1)",
                        n + 1
                    ));
                    binds.extend([from, to]);
                }
            }
        }
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT grp, CAST(SUM(requests) AS BIGINT) AS requests,
                    CAST(SUM(errors) AS BIGINT) AS errors,
                    CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens,
                    CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
                    CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens,
                    CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
                    CAST(SUM(cost_micros) AS BIGINT) AS cost_micros
             FROM ({}) AS parts GROUP BY grp ORDER BY grp",
            parts.join(" UNION ALL ")
        );
        let mut query = sqlx::query(&sql).bind(user.unwrap_or(""));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let mut group_value: String = r.try_get("grp")?;
                if group == ReportGroup::Day {
                    let days: i64 = group_value.parse().unwrap_or(0);
                    group_value = crate::limits::date(days);
                }
                Ok(UsageRow {
                    group: group_value,
                    requests: r.try_get("requests")?,
                    errors: r.try_get("errors")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cached_tokens: r.try_get("cached_tokens")?,
                    reasoning_tokens: r.try_get("reasoning_tokens")?,
                    cost_micros: r.try_get("cost_micros")?,
                })
            })
            .collect()
    }

    /// Per provider and time bucket: requests, errors and latency percentiles, from at most
    /// `max_rows` requests (`None`: the range holds more; narrow it).
    pub async fn provider_series(
        &self,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
        max_rows: i64,
    ) -> Result<Option<Vec<SeriesPoint>>> {
        let rows = sqlx::query(
            "SELECT provider, at_ms, status, duration_ms, ttft_ms, upstream_ms FROM request_log
             WHERE at_ms >= $1 AND at_ms < $2 AND provider <> '' LIMIT $3",
        )
        .bind(from_ms)
        .bind(to_ms)
        .bind(max_rows + 1)
        .fetch_all(&self.pool)
        .await?;
        if rows.len() as i64 > max_rows {
            return Ok(None);
        }
        type Samples = (i64, i64, Vec<i64>, Vec<i64>, Vec<i64>);
        let mut groups: BTreeMap<(String, i64), Samples> = BTreeMap::new();
        for r in &rows {
            let at: i64 = r.try_get("at_ms")?;
            let status: i64 = r.try_get("status")?;
            let g = groups
                .entry((r.try_get("provider")?, at - at.rem_euclid(bucket_ms)))
                .or_default();
            g.0 += 1;
            if status >= 500 || status == 429 || status == 0 {
                g.1 += 1;
            }
            if let Some(d) = r.try_get::<Option<i64>, _>("duration_ms")? {
                g.2.push(d);
            }
            if let Some(t) = r.try_get::<Option<i64>, _>("ttft_ms")? {
                g.3.push(t);
            }
            if let Some(u) = r.try_get::<Option<i64>, _>("upstream_ms")? {
                g.4.push(u);
            }
        }
        Ok(Some(
            groups
                .into_iter()
                .map(
                    |((provider, start), (requests, errors, mut d, mut t, mut u))| SeriesPoint {
                        provider,
                        start_ms: start,
                        requests,
                        errors,
                        latency_ms: Percentiles::of(&mut d),
                        ttft_ms: Percentiles::of(&mut t),
                        upstream_ms: Percentiles::of(&mut u),
                    },
                )
                .collect(),
        ))
    }
}
