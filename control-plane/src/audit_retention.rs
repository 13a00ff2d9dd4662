//! Forgets audit log entries older than `auth.audit_retention_days` (0: kept forever).

use std::time::Duration;

use crate::store::Store;

/// How often old entries are pruned.
const PERIOD: Duration = Duration::from_secs(3600);

/// Prunes entries older than `days`, at start and every hour.
pub async fn prune(store: Store, days: i64) {
    if days <= 0 {
        return;
    }
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        let before = crate::store::now_ms() - days * 86_400_000;
        if let Err(e) = store.prune_audit(before).await {
            tracing::warn!("old audit entries not pruned: {e}");
        }
    }
}
