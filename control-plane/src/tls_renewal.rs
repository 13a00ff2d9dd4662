//! Keeps the xDS port's server certificate current: renewed at half its life, and following
//! the CAs in the store (`switchyard certs rotate-ca` / `retire-ca`, run anywhere on the same
//! database).

use std::sync::Arc;

use crate::secrets::Secrets;
use crate::store::Store;
use crate::xds::listen::{ServerTls, TLS_RELOAD};

/// Looks at the CAs in the store every [`TLS_RELOAD`] and renews `tls` when due.
pub async fn renew(store: Store, secrets: Arc<Secrets>, tls: Arc<ServerTls>) {
    let mut tick = tokio::time::interval(TLS_RELOAD);
    tick.tick().await;
    loop {
        tick.tick().await;
        match crate::pki::load(&store, &secrets.master).await {
            Ok(Some(authorities)) => match tls.refresh(&authorities, crate::store::now()) {
                Ok(true) => {
                    tracing::info!(cas = authorities.len(), "xDS server certificate renewed")
                }
                Ok(false) => {}
                Err(e) => tracing::error!("xDS server certificate not renewed: {e}"),
            },
            Ok(None) => {
                tracing::error!("the xDS CA is gone from the store; the current one is kept")
            }
            Err(e) => tracing::warn!("xDS CA not read: {e}"),
        }
    }
}
