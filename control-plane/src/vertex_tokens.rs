//! Keeps every Vertex key's access token fresh, and publishes when one changes.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::reconcile::Publisher;
use crate::secrets::Secrets;
use crate::store::Store;

/// Refreshes tokens as they come due, and looks again when the configuration changes
/// (`wanted` is notified at every publication).
pub async fn refresh(
    store: Store,
    secrets: Arc<Secrets>,
    tokens: crate::gcp::Tokens,
    publisher: Publisher,
    wanted: Arc<Notify>,
) {
    let http = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("no HTTP client for token requests: {e}");
            return;
        }
    };
    loop {
        let keys = crate::snapshot::vertex_keys(&store, &secrets.master)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("listing Vertex keys: {e}");
                Vec::new()
            });
        let (changed, sleep) = crate::gcp::refresh(&http, &tokens, &keys).await;
        if changed {
            if let Err(e) = publisher.publish().await {
                tracing::error!("publishing new Vertex tokens: {e}");
            }
        }
        // Woken early by configuration changes (publish), else when the next token is due.
        let _ = tokio::time::timeout(sleep, wanted.notified()).await;
    }
}
