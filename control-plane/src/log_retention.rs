//! Prunes the request log: rows older than `request_log_retention_days` (0: kept for ever),
//! with the minute rollups of the same age. Hour and day rollups and the credit ledger (the
//! money) are kept. A backlog (the first start on a large log, a lowered retention) goes in
//! bounded rounds, each a short transaction of its own, with a pause between them so ingest
//! and reports are never held up for long (no long lock, on SQLite or PostgreSQL).

use std::time::Duration;

use crate::store::Store;

/// How often the log is checked for old rows.
const PERIOD: Duration = Duration::from_secs(300);
/// The pause between two rounds of a backlog.
const PAUSE: Duration = Duration::from_millis(50);

/// Prunes every [`PERIOD`], from start, while `days` > 0.
pub async fn prune(store: Store, days: i64) {
    if days <= 0 {
        return;
    }
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        let before = crate::store::now_ms() - days.saturating_mul(86_400_000);
        let mut pruned = 0u64;
        loop {
            match store.prune_request_log(before).await {
                Ok(round) => {
                    pruned += round.log_rows;
                    if !round.more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("old request log rows not pruned: {e}");
                    break;
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
        if pruned > 0 {
            tracing::info!(rows = pruned, days, "old request log rows pruned");
        }
    }
}
