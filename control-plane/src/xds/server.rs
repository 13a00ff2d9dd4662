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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
    use envoy_types::pb::google::protobuf::Any;
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;
    use tokio_stream::StreamExt as _;

    use super::*;
    use crate::xds::build::{self, Resources};

    fn resources(cluster_payload: &[u8]) -> Resources {
        let any = |v: &[u8]| Any {
            type_url: "t".into(),
            value: v.to_vec(),
        };
        Resources {
            listeners: vec![(build::LISTENER_NAME.into(), any(b"l"))],
            routes: vec![(build::ROUTE_NAME.into(), any(b"r"))],
            clusters: vec![("c".into(), any(cluster_payload))],
            extension_configs: vec![(build::FILTER_NAME.into(), any(b"f"))],
        }
    }

    fn request(nonce: &str, version: &str, error: Option<&str>) -> DiscoveryRequest {
        DiscoveryRequest {
            node: Some(Node {
                id: "node-a".into(),
                ..Default::default()
            }),
            type_url: build::CLUSTER_TYPE.into(),
            response_nonce: nonce.into(),
            version_info: version.into(),
            error_detail: error.map(|m| RpcStatus {
                code: 3,
                message: m.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A real gRPC client against the server: first response, NACK (recorded, not resent),
    /// a new version (sent), ACK (recorded).
    #[tokio::test]
    async fn nack_is_recorded_and_not_retried_and_a_new_version_is_sent() {
        let cache = Arc::new(SnapshotCache::default());
        cache.set(resources(b"v1")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(AdsServer::new(
                cache.clone(),
            )))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);

        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(8);
        let mut responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        async fn next(
            r: &mut Streaming<DiscoveryResponse>,
        ) -> Result<Option<Result<DiscoveryResponse, Status>>, tokio::time::error::Elapsed>
        {
            // Long enough for a response on loopback; a response that must not come times out.
            tokio::time::timeout(Duration::from_millis(500), r.next()).await
        }

        tx.send(request("", "", None)).await.unwrap();
        let first = next(&mut responses)
            .await
            .expect("first response")
            .unwrap()
            .unwrap();
        assert_eq!(first.resources.len(), 1);
        let v1 = first.version_info.clone();

        tx.send(request(&first.nonce, "", Some("cluster c: bad config")))
            .await
            .unwrap();
        assert!(
            next(&mut responses).await.is_err(),
            "a NACKed version is not sent again"
        );
        let status = &cache.nodes()["node-a"];
        assert_eq!(status.nacked[build::CLUSTER_TYPE].version, v1);
        assert!(status.nacked[build::CLUSTER_TYPE]
            .message
            .contains("bad config"));

        // Republishing the same content changes nothing; new content is sent.
        cache.set(resources(b"v1")).unwrap();
        assert!(next(&mut responses).await.is_err());
        cache.set(resources(b"v2")).unwrap();
        let second = next(&mut responses)
            .await
            .expect("new version")
            .unwrap()
            .unwrap();
        assert_ne!(second.version_info, v1);

        tx.send(request(&second.nonce, &second.version_info, None))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = &cache.nodes()["node-a"];
        assert_eq!(status.acked[build::CLUSTER_TYPE], second.version_info);
        assert!(status.nacked.is_empty());
        assert!(status.connected);

        // A request carrying a stale nonce is ignored.
        tx.send(request("stale", "", Some("old"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(cache.nodes()["node-a"].nacked.is_empty());
    }
}
