//! The ADS server (state of the world): one stream per Envoy, every resource type multiplexed.
//!
//! Per type and stream it remembers the last version and nonce sent. A request whose nonce is
//! not the latest is stale and ignored; one carrying `error_detail` is a NACK: logged, recorded
//! and not answered with the same version again (no retry loop); anything else with the latest
//! nonce is an ACK. A new snapshot sends each subscribed type whose version changed.
//! <https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol>

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::cache::{Nack, Snapshot, SnapshotCache};

#[derive(Debug, Clone)]
pub struct AdsServer {
    cache: Arc<SnapshotCache>,
}

impl AdsServer {
    pub fn new(cache: Arc<SnapshotCache>) -> Self {
        AdsServer { cache }
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_stream(self.cache.clone(), inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "incremental xDS is not served; use the state-of-the-world ADS (api_type: GRPC)",
        ))
    }
}

/// One subscribed type on one stream.
#[derive(Debug, Default)]
struct Subscription {
    names: Vec<String>,
    sent_version: Option<String>,
    nonce: String,
    nacked_version: Option<String>,
}

struct StreamState {
    cache: Arc<SnapshotCache>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    node: String,
    subs: HashMap<String, Subscription>,
    nonce: u64,
}

async fn run_stream(
    cache: Arc<SnapshotCache>,
    mut inbound: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
) {
    let mut updates = cache.subscribe();
    let mut state = StreamState {
        cache,
        tx,
        node: String::new(),
        subs: HashMap::new(),
        nonce: 0,
    };
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(req)) => {
                    if state.on_request(req).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(node = %state.node, "ADS stream ended: {e}");
                    break;
                }
            },
            changed = updates.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = updates.borrow_and_update().clone();
                if state.push_changes(&snapshot).await.is_err() {
                    break;
                }
            }
        }
    }
    if !state.node.is_empty() {
        tracing::info!(node = %state.node, "Envoy disconnected");
        state
            .cache
            .update_node(&state.node, |n| n.connected = false);
    }
}

struct Closed;

impl StreamState {
    async fn on_request(&mut self, req: DiscoveryRequest) -> Result<(), Closed> {
        if let Some(node) = &req.node {
            if self.node.is_empty() {
                self.node.clone_from(&node.id);
                tracing::info!(node = %self.node, "Envoy connected");
                self.cache.update_node(&self.node, |n| n.connected = true);
            }
        }
        let type_url = req.type_url.clone();
        let sub = self.subs.entry(type_url.clone()).or_default();
        let first = req.response_nonce.is_empty();
        if !first && req.response_nonce != sub.nonce {
            return Ok(()); // stale: a newer response is already on its way
        }
        if let Some(error) = &req.error_detail {
            let version = sub.sent_version.clone().unwrap_or_default();
            tracing::warn!(node = %self.node, %type_url, %version, "NACK: {}", error.message);
            sub.nacked_version = Some(version.clone());
            self.cache.update_node(&self.node, |n| {
                n.nacked.insert(
                    type_url.clone(),
                    Nack {
                        version,
                        message: error.message.clone(),
                    },
                );
            });
        } else if !first {
            tracing::debug!(node = %self.node, %type_url, version = %req.version_info, "ACK");
            let version = req.version_info.clone();
            self.cache.update_node(&self.node, |n| {
                n.nacked.remove(&type_url);
                n.acked.insert(type_url.clone(), version);
            });
        }
        let names_changed = sub.names != req.resource_names;
        sub.names = req.resource_names;
        if first || names_changed {
            let snapshot = self.cache.current();
            self.send(&type_url, &snapshot, true).await?;
        }
        Ok(())
    }

    async fn push_changes(&mut self, snapshot: &Snapshot) -> Result<(), Closed> {
        let types: Vec<String> = self.subs.keys().cloned().collect();
        for type_url in types {
            self.send(&type_url, snapshot, false).await?;
        }
        Ok(())
    }

    /// Sends the type's resources unless this version was already sent (or refused), or `force`.
    async fn send(
        &mut self,
        type_url: &str,
        snapshot: &Snapshot,
        force: bool,
    ) -> Result<(), Closed> {
        let Some(resources) = snapshot.types.get(type_url) else {
            return Ok(()); // a type we do not serve (e.g. EDS): Envoy waits, which is fine
        };
        if snapshot.serial == 0 {
            return Ok(()); // nothing published yet
        }
        let Some(sub) = self.subs.get_mut(type_url) else {
            return Ok(());
        };
        let version = &resources.version;
        if !force
            && (sub.sent_version.as_ref() == Some(version)
                || sub.nacked_version.as_ref() == Some(version))
        {
            return Ok(());
        }
        self.nonce += 1;
        sub.nonce = self.nonce.to_string();
        sub.sent_version = Some(version.clone());
        let wanted = |name: &String| sub.names.is_empty() || sub.names.contains(name);
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: resources
                .resources
                .iter()
                .filter(|(name, _)| wanted(name))
                .map(|(_, any)| any.clone())
                .collect(),
            type_url: type_url.to_owned(),
            nonce: sub.nonce.clone(),
            ..Default::default()
        };
        tracing::debug!(node = %self.node, %type_url, %version, "sending");
        self.tx.send(Ok(response)).await.map_err(|_| Closed)
    }
}
