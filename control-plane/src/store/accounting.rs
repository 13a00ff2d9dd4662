//! The request log and credits: every request's record, stored once per request id, and the
//! ledger that debits each priced request from its user's account, once, in the same
//! transaction.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{now, Result, Store, StoreError};

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

/// One request as the log keeps it. Times are Unix milliseconds, money micro-USD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestRow {
    pub request_id: String,
    pub at_ms: i64,
    /// The client API (`chat.completions`, `messages`, `embeddings`, ...).
    pub api: String,
    pub status: i64,
    /// The gateway's error code when the gateway refused the request.
    pub error: String,
    pub key_id: String,
    pub user: String,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub attempts: i64,
    /// Targets tried before the one that answered (`provider/model`).
    pub failed: Vec<String>,
    pub stream: bool,
    pub complete: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    /// `None`: no price known for the model.
    pub cost_micros: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Time to the provider's first byte.
    pub upstream_ms: Option<i64>,
    /// Time to the first streamed bytes.
    pub ttft_ms: Option<i64>,
}

const REQUEST_COLUMNS: &str = "request_id, at_ms, api, status, error, key_id, user_name, model, provider, \
     upstream_model, attempts, failed, stream, complete, prompt_tokens, completion_tokens, \
     cached_tokens, cache_write_tokens, reasoning_tokens, cost_micros, duration_ms, upstream_ms, ttft_ms";
const REQUEST_COLUMN_COUNT: usize = 23;
/// Rows per INSERT statement on PostgreSQL (23 parameters each, well below its limit).
const ROWS_PER_STATEMENT: usize = 400;
/// On SQLite: binding looks every parameter up by name, in time that grows with the number of
/// parameters, so statements stay short (measured: 400 rows per statement spent 88 % of the
/// time in `sqlite3_bind_parameter_name`).
const ROWS_PER_STATEMENT_SQLITE: usize = 20;

/// What one ingest did.
#[derive(Debug, Default)]
pub struct IngestOutcome {
    /// Per row given: whether it was new (false: that request id was stored before).
    pub inserted: Vec<bool>,
    /// Accounts debited, with their balances afterwards: (user, balance).
    pub balances: Vec<(String, i64)>,
    /// Requests debited now: (request id, user, cost).
    pub debited: Vec<(String, String, i64)>,
}

/// A user's credit account. Money in micro-USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub user: String,
    pub balance_micros: i64,
    /// Below this the account counts as low (reported, logged once when crossed).
    pub low_balance_micros: Option<i64>,
    /// Automatic top-up: when a debit leaves the balance below `topup_below_micros`,
    /// `topup_amount_micros` is added.
    pub topup_below_micros: Option<i64>,
    pub topup_amount_micros: Option<i64>,
    pub low: bool,
    pub updated_at: i64,
}

/// The rules of an account that an administrator sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRules {
    pub low_balance_micros: Option<i64>,
    pub topup_below_micros: Option<i64>,
    pub topup_amount_micros: Option<i64>,
}

/// One change of a balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: String,
    pub amount_micros: i64,
    /// `usage`, `topup`, `adjustment`, `auto_topup` or `initial`.
    pub kind: String,
    pub request_id: Option<String>,
    pub note: String,
    pub at_ms: i64,
}

/// Filters of a request log query; rows come newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestQuery {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// An exact status, or a class: `(lowest, highest)`.
    pub status: Option<(i64, i64)>,
    /// Rows strictly older than this (at_ms, request_id): the previous page's last row.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

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

fn account_from(r: &AnyRow) -> Result<Account> {
    let balance: i64 = r.try_get("balance_micros")?;
    let low_at: Option<i64> = r.try_get("low_balance_micros")?;
    Ok(Account {
        user: r.try_get("name")?,
        balance_micros: balance,
        low_balance_micros: low_at,
        topup_below_micros: r.try_get("topup_below_micros")?,
        topup_amount_micros: r.try_get("topup_amount_micros")?,
        low: low_at.is_some_and(|l| balance < l),
        updated_at: r.try_get("updated_at")?,
    })
}

const ACCOUNT_COLUMNS: &str = "a.user_id, u.name, a.balance_micros, a.low_balance_micros, \
     a.topup_below_micros, a.topup_amount_micros, a.updated_at \
     FROM credit_accounts a JOIN users u ON u.id = a.user_id";

fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    fn rows_per_statement(&self) -> usize {
        match self.backend {
            super::Backend::Sqlite => ROWS_PER_STATEMENT_SQLITE,
            super::Backend::Postgres => ROWS_PER_STATEMENT,
        }
    }

    /// Stores records and debits their cost, in one transaction: a request id already stored
    /// is skipped (records may arrive twice), and only new rows are debited, so each request
    /// is debited once.
    pub async fn ingest(&self, rows: &[RequestRow]) -> Result<IngestOutcome> {
        let mut tx = self.pool.begin().await?;
        let mut new_ids: HashSet<String> = HashSet::with_capacity(rows.len());
        let per_statement = self.rows_per_statement();
        for chunk in rows.chunks(per_statement) {
            let mut sql = String::with_capacity(64 + chunk.len() * REQUEST_COLUMN_COUNT * 5);
            sql.push_str("INSERT INTO request_log (");
            sql.push_str(REQUEST_COLUMNS);
            sql.push_str(") VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                sql.push_str(&placeholders(
                    i * REQUEST_COLUMN_COUNT + 1,
                    REQUEST_COLUMN_COUNT,
                ));
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.request_id)
                    .bind(r.at_ms)
                    .bind(&r.api)
                    .bind(r.status)
                    .bind(&r.error)
                    .bind(&r.key_id)
                    .bind(&r.user)
                    .bind(&r.model)
                    .bind(&r.provider)
                    .bind(&r.upstream_model)
                    .bind(r.attempts)
                    .bind(if r.failed.is_empty() {
                        String::new()
                    } else {
                        serde_json::to_string(&r.failed).unwrap_or_default()
                    })
                    .bind(i64::from(r.stream))
                    .bind(i64::from(r.complete))
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.cached_tokens)
                    .bind(r.cache_write_tokens)
                    .bind(r.reasoning_tokens)
                    .bind(r.cost_micros)
                    .bind(r.duration_ms)
                    .bind(r.upstream_ms)
                    .bind(r.ttft_ms);
            }
            for row in q.fetch_all(&mut *tx).await? {
                new_ids.insert(row.try_get("request_id")?);
            }
        }
        // A request id given twice (a batch sent again while the first was still being
        // written, both in this transaction) is new once.
        let inserted: Vec<bool> = rows.iter().map(|r| new_ids.remove(&r.request_id)).collect();

        // Debits: new, priced rows of users with an account.
        let mut by_user: BTreeMap<&str, Vec<&RequestRow>> = BTreeMap::new();
        for (r, new) in rows.iter().zip(&inserted) {
            if *new && !r.user.is_empty() && r.cost_micros.is_some_and(|c| c > 0) {
                by_user.entry(r.user.as_str()).or_default().push(r);
            }
        }
        let mut balances = Vec::new();
        let mut debited = Vec::new();
        if !by_user.is_empty() {
            let users: Vec<&str> = by_user.keys().copied().collect();
            let sql = format!(
                "SELECT {ACCOUNT_COLUMNS} WHERE u.name IN ({})",
                placeholders(1, users.len())
            );
            let mut q = sqlx::query(&sql);
            for u in &users {
                q = q.bind(*u);
            }
            let accounts = q.fetch_all(&mut *tx).await?;
            for account in &accounts {
                let user_id: String = account.try_get("user_id")?;
                let before = account_from(account)?;
                let debits = &by_user[before.user.as_str()];
                let (balance, done) = debit(&mut tx, &user_id, debits, per_statement).await?;
                debited.extend(
                    done.into_iter()
                        .map(|(id, cost)| (id, before.user.clone(), cost)),
                );
                let balance = auto_topup(&mut tx, &user_id, &before, balance).await?;
                if let Some(low) = before.low_balance_micros {
                    if before.balance_micros >= low && balance < low {
                        tracing::warn!(user = %before.user, balance_micros = balance, "credit balance is low");
                    }
                }
                balances.push((before.user, balance));
            }
        }
        tx.commit().await?;
        Ok(IngestOutcome {
            inserted,
            balances,
            debited,
        })
    }

    /// Requests matching `q`, newest first.
    pub async fn list_requests(&self, q: &RequestQuery) -> Result<Vec<RequestRow>> {
        enum Bind {
            Int(i64),
            Text(String),
        }
        let mut sql = format!("SELECT {REQUEST_COLUMNS} FROM request_log WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        // `?` in a clause is the next placeholder.
        let mut clause = |sql: &mut String, text: &str, values: Vec<Bind>| {
            let mut out = String::with_capacity(text.len() + 8);
            let mut values = values.into_iter();
            for part in text.split_inclusive('?') {
                match part.strip_suffix('?') {
                    Some(head) => {
                        out.push_str(head);
                        binds.extend(values.next());
                        out.push_str(&format!("${}", binds.len()));
                    }
                    None => out.push_str(part),
                }
            }
            sql.push_str(&out);
        };
        if let Some(v) = q.from_ms {
            clause(&mut sql, " AND at_ms >= ?", vec![Bind::Int(v)]);
        }
        if let Some(v) = q.to_ms {
            clause(&mut sql, " AND at_ms < ?", vec![Bind::Int(v)]);
        }
        if let Some((lo, hi)) = q.status {
            clause(
                &mut sql,
                " AND status >= ? AND status <= ?",
                vec![Bind::Int(lo), Bind::Int(hi)],
            );
        }
        for (column, value) in [
            ("key_id", &q.key_id),
            ("user_name", &q.user),
            ("model", &q.model),
            ("provider", &q.provider),
        ] {
            if let Some(v) = value {
                clause(
                    &mut sql,
                    &format!(" AND {column} = ?"),
                    vec![Bind::Text(v.clone())],
                );
            }
        }
        if let Some((at, id)) = &q.before {
            clause(
                &mut sql,
                " AND (at_ms < ? OR (at_ms = ? AND request_id < ?))",
                vec![Bind::Int(*at), Bind::Int(*at), Bind::Text(id.clone())],
            );
        }
        clause(
            &mut sql,
            " ORDER BY at_ms DESC, request_id DESC LIMIT ?",
            vec![Bind::Int(q.limit.clamp(1, 1000))],
        );
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(request_from).collect()
    }

    // ---- reports ---------------------------------------------------------------------------

    /// Usage and cost between `from_ms` and `to_ms`, grouped by `group` (see [`ReportGroup`]).
    pub async fn usage_report(
        &self,
        group: ReportGroup,
        from_ms: i64,
        to_ms: i64,
        user: Option<&str>,
    ) -> Result<Vec<UsageRow>> {
        let expr = match group {
            ReportGroup::Day => "CAST(at_ms / 86400000 AS TEXT)",
            ReportGroup::Key => "key_id",
            ReportGroup::User => "user_name",
            ReportGroup::Model => "model",
            ReportGroup::Provider => "provider",
        };
        let sql = format!(
            "SELECT {expr} AS grp, CAST(COUNT(*) AS BIGINT) AS requests,
                    CAST(SUM(CASE WHEN status >= 400 OR status = 0 THEN 1 ELSE 0 END) AS BIGINT) AS errors,
                    CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens,
                    CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens,
                    CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens,
                    CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
                    CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost_micros
             FROM request_log WHERE at_ms >= $1 AND at_ms < $2 AND ($3 = '' OR user_name = $3)
             GROUP BY {expr} ORDER BY {expr}"
        );
        let rows = sqlx::query(&sql)
            .bind(from_ms)
            .bind(to_ms)
            .bind(user.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
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

    // ---- limits ----------------------------------------------------------------------------

    /// Every key's and user's limits, for the rate limit service.
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

    /// What each user with a spend cap spent since `day_start` and `month_start` (Unix ms).
    pub async fn user_spend(
        &self,
        day_start: i64,
        month_start: i64,
    ) -> Result<Vec<(String, i64, i64)>> {
        self.spend_since(
            "SELECT r.user_name AS who,
                    CAST(COALESCE(SUM(CASE WHEN r.at_ms >= $1 THEN r.cost_micros ELSE 0 END), 0) AS BIGINT) AS today,
                    CAST(COALESCE(SUM(r.cost_micros), 0) AS BIGINT) AS month
             FROM request_log r JOIN users u ON u.name = r.user_name
             WHERE r.at_ms >= $2 AND r.cost_micros IS NOT NULL
               AND (u.daily_budget_micros IS NOT NULL OR u.monthly_budget_micros IS NOT NULL)
             GROUP BY r.user_name",
            day_start,
            month_start,
        )
        .await
    }

    /// What each key with a spend cap spent since `day_start` and `month_start` (Unix ms).
    pub async fn key_spend(
        &self,
        day_start: i64,
        month_start: i64,
    ) -> Result<Vec<(String, i64, i64)>> {
        self.spend_since(
            "SELECT key_id AS who,
                    CAST(COALESCE(SUM(CASE WHEN at_ms >= $1 THEN cost_micros ELSE 0 END), 0) AS BIGINT) AS today,
                    CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS month
             FROM request_log WHERE at_ms >= $2 AND key_id <> '' AND cost_micros IS NOT NULL
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

    // ---- credit accounts -------------------------------------------------------------------

    /// The account of `user` (NotFound: the user has none, i.e. is not metered).
    pub async fn get_account(&self, user: &str) -> Result<Account> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} WHERE u.name = $1");
        let row = sqlx::query(&sql)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        account_from(&row)
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} ORDER BY u.name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(account_from).collect()
    }

    /// Adds `amount` (negative: takes it) to the account of `user`, opening the account if the
    /// user has none, as one ledger entry. The user must exist.
    pub async fn credit(&self, user: &str, amount: i64, kind: &str, note: &str) -> Result<Account> {
        let mut tx = self.pool.begin().await?;
        let user_id = user_id(&mut tx, user).await?;
        open_account(&mut tx, &user_id).await?;
        add_entry(&mut tx, &user_id, amount, kind, note, None).await?;
        tx.commit().await?;
        self.get_account(user).await
    }

    /// Opens the account of `user` with `amount` unless it has one (the starting balance of the
    /// declarative config: applying the config again changes nothing). Returns whether it did.
    pub async fn open_account_with(&self, user: &str, amount: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let user_id = user_id(&mut tx, user).await?;
        let opened = open_account(&mut tx, &user_id).await?;
        if opened && amount != 0 {
            add_entry(
                &mut tx,
                &user_id,
                amount,
                "initial",
                "starting balance",
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(opened)
    }

    pub async fn set_account_rules(&self, user: &str, rules: &AccountRules) -> Result<Account> {
        let mut tx = self.pool.begin().await?;
        let user_id = user_id(&mut tx, user).await?;
        open_account(&mut tx, &user_id).await?;
        sqlx::query(
            "UPDATE credit_accounts SET low_balance_micros = $1, topup_below_micros = $2,
                 topup_amount_micros = $3, updated_at = $4 WHERE user_id = $5",
        )
        .bind(rules.low_balance_micros)
        .bind(rules.topup_below_micros)
        .bind(rules.topup_amount_micros)
        .bind(now())
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_account(user).await
    }

    /// Ledger entries of `user`, newest first, older than `before` (at_ms, id) if given.
    pub async fn ledger(
        &self,
        user: &str,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>> {
        // Without a cursor: everything before the end of time.
        let (at, id) = before.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(
            "SELECT l.id, l.amount_micros, l.kind, l.request_id, l.note, l.at_ms
             FROM credit_ledger l JOIN users u ON u.id = l.user_id
             WHERE u.name = $1 AND (l.at_ms < $2 OR (l.at_ms = $3 AND l.id < $4))
             ORDER BY l.at_ms DESC, l.id DESC LIMIT $5",
        )
        .bind(user)
        .bind(at)
        .bind(at)
        .bind(id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerEntry {
                    id: r.try_get("id")?,
                    amount_micros: r.try_get("amount_micros")?,
                    kind: r.try_get("kind")?,
                    request_id: r.try_get("request_id")?,
                    note: r.try_get("note")?,
                    at_ms: r.try_get("at_ms")?,
                })
            })
            .collect()
    }
}

fn request_from(r: &AnyRow) -> Result<RequestRow> {
    Ok(RequestRow {
        request_id: r.try_get("request_id")?,
        at_ms: r.try_get("at_ms")?,
        api: r.try_get("api")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
        key_id: r.try_get("key_id")?,
        user: r.try_get("user_name")?,
        model: r.try_get("model")?,
        provider: r.try_get("provider")?,
        upstream_model: r.try_get("upstream_model")?,
        attempts: r.try_get("attempts")?,
        failed: {
            let text: String = r.try_get("failed")?;
            if text.is_empty() {
                Vec::new()
            } else {
                super::parse_json("failed targets", &text)?
            }
        },
        stream: r.try_get::<i64, _>("stream")? != 0,
        complete: r.try_get::<i64, _>("complete")? != 0,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        cached_tokens: r.try_get("cached_tokens")?,
        cache_write_tokens: r.try_get("cache_write_tokens")?,
        reasoning_tokens: r.try_get("reasoning_tokens")?,
        cost_micros: r.try_get("cost_micros")?,
        duration_ms: r.try_get("duration_ms")?,
        upstream_ms: r.try_get("upstream_ms")?,
        ttft_ms: r.try_get("ttft_ms")?,
    })
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn user_id(tx: &mut Tx<'_>, user: &str) -> Result<String> {
    let row = sqlx::query("SELECT id FROM users WHERE name = $1")
        .bind(user)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(row.try_get("id")?)
}

/// Opens an empty account; returns false if there was one.
async fn open_account(tx: &mut Tx<'_>, user_id: &str) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO credit_accounts (user_id, balance_micros, updated_at) VALUES ($1, 0, $2)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One ledger entry and its effect on the balance; returns the balance after it.
async fn add_entry(
    tx: &mut Tx<'_>,
    user_id: &str,
    amount: i64,
    kind: &str,
    note: &str,
    request_id: Option<&str>,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO credit_ledger (id, user_id, amount_micros, kind, request_id, note, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(crate::crypto::new_id("led_"))
    .bind(user_id)
    .bind(amount)
    .bind(kind)
    .bind(request_id)
    .bind(note)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    add_to_balance(tx, user_id, amount).await
}

async fn add_to_balance(tx: &mut Tx<'_>, user_id: &str, amount: i64) -> Result<i64> {
    let row = sqlx::query(
        "UPDATE credit_accounts SET balance_micros = balance_micros + $1, updated_at = $2
         WHERE user_id = $3 RETURNING balance_micros",
    )
    .bind(amount)
    .bind(now())
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("balance_micros")?)
}

/// Usage debits of one account (a request id already debited is skipped); returns the balance
/// and the requests debited with their cost.
async fn debit(
    tx: &mut Tx<'_>,
    user_id: &str,
    rows: &[&RequestRow],
    per_statement: usize,
) -> Result<(i64, Vec<(String, i64)>)> {
    const COLUMNS: usize = 6;
    let mut total = 0i64;
    let mut done = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(per_statement) {
        let mut sql = String::from(
            "INSERT INTO credit_ledger (id, user_id, amount_micros, kind, request_id, at_ms) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            sql.push_str(&placeholders(i * COLUMNS + 1, COLUMNS));
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT DO NOTHING RETURNING request_id, amount_micros");
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(format!("use_{}", r.request_id))
                .bind(user_id)
                .bind(-r.cost_micros.unwrap_or(0))
                .bind("usage")
                .bind(&r.request_id)
                .bind(r.at_ms);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let amount: i64 = row.try_get("amount_micros")?;
            total += amount;
            done.push((row.try_get("request_id")?, -amount));
        }
    }
    Ok((add_to_balance(tx, user_id, total).await?, done))
}

/// Tops the account up once if its rule asks for it; returns the balance.
async fn auto_topup(
    tx: &mut Tx<'_>,
    user_id: &str,
    account: &Account,
    balance: i64,
) -> Result<i64> {
    match (account.topup_below_micros, account.topup_amount_micros) {
        (Some(below), Some(amount)) if balance < below && amount > 0 => {
            tracing::info!(user = %account.user, amount_micros = amount, "automatic top-up");
            add_entry(tx, user_id, amount, "auto_topup", "automatic top-up", None).await
        }
        _ => Ok(balance),
    }
}

/// Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
