//! Ingest: a batch of request records stored once per request id (records may arrive twice)
//! and their cost debited from the users' accounts, in one transaction.

use std::collections::HashSet;

use super::ledger::debit_usage;
use sqlx::Row as _;

use super::request_log::{placeholders, RequestRow, REQUEST_COLUMNS, REQUEST_COLUMN_COUNT};
use super::{Result, Store};

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

impl Store {
    /// Rows per multi-row INSERT on this backend.
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

        let (balances, debited) = debit_usage(&mut tx, rows, &inserted, per_statement).await?;
        tx.commit().await?;
        Ok(IngestOutcome {
            inserted,
            balances,
            debited,
        })
    }
}
