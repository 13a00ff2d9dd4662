//! Ingest: a batch of request records stored once per request id (records may arrive twice)
//! and their cost debited from the users' accounts, in one transaction.

use std::collections::HashSet;

use super::ledger::debit_usage;
use sqlx::Row as _;

use futures::TryStreamExt as _;

use super::request_log::{multi_row_sql, RequestRow, INSERT_REQUESTS, REQUEST_COLUMN_COUNT};
use super::rollups::add_to_rollups;
use super::{Result, Store};

/// Rows per INSERT statement (23 parameters each, well below either backend's limit).
const ROWS_PER_STATEMENT: usize = 400;

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
    /// Stores records and debits their cost, in one transaction: a request id already stored
    /// is skipped (records may arrive twice), and only new rows are debited and added to the
    /// usage rollups, so each request is debited and counted once.
    pub async fn ingest(&self, rows: &[RequestRow]) -> Result<IngestOutcome> {
        let mut tx = self.pool.begin().await?;
        // The batch's ids, to find the ones the database returns without copying them.
        let given: HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
        let mut new_ids: HashSet<&str> = HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = multi_row_sql(
                self.backend,
                INSERT_REQUESTS,
                " ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
                chunk.len(),
                REQUEST_COLUMN_COUNT,
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.request_id.as_str())
                    .bind(r.at_ms)
                    .bind(r.api.as_str())
                    .bind(r.status)
                    .bind(r.error.as_str())
                    .bind(r.key_id.as_str())
                    .bind(r.user.as_str())
                    .bind(r.model.as_str())
                    .bind(r.provider.as_str())
                    .bind(r.upstream_model.as_str())
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
            let mut stored = q.fetch(&mut *tx);
            while let Some(row) = stored.try_next().await? {
                let id: &str = row.try_get("request_id")?;
                if let Some(id) = given.get(id) {
                    new_ids.insert(id);
                }
            }
        }
        // A request id given twice (a batch sent again while the first was still being
        // written, both in this transaction) is new once.
        let inserted: Vec<bool> = rows
            .iter()
            .map(|r| new_ids.remove(r.request_id.as_str()))
            .collect();

        add_to_rollups(&mut tx, self.backend, rows, &inserted).await?;
        let (balances, debited) =
            debit_usage(&mut tx, self.backend, rows, &inserted, ROWS_PER_STATEMENT).await?;
        tx.commit().await?;
        Ok(IngestOutcome {
            inserted,
            balances,
            debited,
        })
    }
}
