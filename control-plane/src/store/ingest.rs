//! Ingest: a batch of request records stored once per request id (records may arrive twice)
//! and their cost debited from the users' accounts, in one transaction.

use std::collections::HashSet;

use super::ledger::{debit_usage, Debits};
use sqlx::Row as _;

use futures::TryStreamExt as _;

use super::request_log::{multi_row_sql, RequestRow, INSERT_REQUESTS, REQUEST_COLUMN_COUNT};
use super::rollups::add_to_rollups;
use super::{Result, Store, StoreError};

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
    ///
    /// Nearly always every row is new: that is tried first, with statements that only count
    /// what they inserted (reading back one row per record took a tenth of the ingest's CPU).
    /// When a count falls short (a batch sent again, an id twice, a debit already in the
    /// ledger) that transaction is rolled back and the batch is written again by
    /// [`Store::ingest_exact`], which reads back which rows were new.
    pub async fn ingest(&self, rows: &[RequestRow]) -> Result<IngestOutcome> {
        if let Some(outcome) = self.ingest_all_new(rows).await? {
            return Ok(outcome);
        }
        self.ingest_exact(rows).await
    }

    /// [`Store::ingest`] when every row is new and none was debited before; `None` (and
    /// nothing written) otherwise.
    async fn ingest_all_new(&self, rows: &[RequestRow]) -> Result<Option<IngestOutcome>> {
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = multi_row_sql(
                self.backend,
                INSERT_REQUESTS,
                " ON CONFLICT (request_id) DO NOTHING",
                chunk.len(),
                REQUEST_COLUMN_COUNT,
            );
            let done = bind_requests(sqlx::query(&sql), chunk)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != chunk.len() as u64 {
                // Rolled back now, before the exact try.
                tx.rollback().await?;
                return Ok(None);
            }
        }
        let inserted = vec![true; rows.len()];
        add_to_rollups(&mut tx, self.backend, rows, &inserted).await?;
        let Some((balances, debited)) = debit_usage(
            &mut tx,
            self.backend,
            rows,
            &inserted,
            ROWS_PER_STATEMENT,
            Debits::AllNew,
        )
        .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(IngestOutcome {
            inserted,
            balances,
            debited,
        }))
    }

    /// [`Store::ingest`] reading back the rows each statement inserted.
    async fn ingest_exact(&self, rows: &[RequestRow]) -> Result<IngestOutcome> {
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
            let q = bind_requests(sqlx::query(&sql), chunk);
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
        let (balances, debited) = debit_usage(
            &mut tx,
            self.backend,
            rows,
            &inserted,
            ROWS_PER_STATEMENT,
            Debits::Exact,
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("exact debits came back incomplete".into()))?;
        tx.commit().await?;
        Ok(IngestOutcome {
            inserted,
            balances,
            debited,
        })
    }
}

/// Binds the 23 columns of each row, in [`INSERT_REQUESTS`] order.
fn bind_requests<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    chunk: &'q [RequestRow],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
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
    q
}
