//! The ADS server (state of the world): one stream per Envoy, every resource type multiplexed.
//!
//! Per type and stream it remembers the last version and nonce sent. A request whose nonce is
//! not the latest is stale and ignored; one carrying `error_detail` is a NACK: logged, recorded
//! and not answered with the same version again (no retry loop); anything else with the latest
//! nonce is an ACK. A new snapshot sends each subscribed type whose version changed.
//!
//! Per type it also follows which snapshot serial the node runs: the serial of the snapshot a
//! sent version came from, moved forward by later snapshots that carry the same version, is
//! the node's once the version is ACKed (see [`super::acks`]).
//! <https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol>
//!
//! What a peer sends is bounded: streams at once, types per stream, names per subscription and
//! their size; a node id must be the one its client certificate names; NACK messages are
//! cleaned before they are logged or shown.

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

use super::bounds::MAX_STREAMS;
use super::cache::{Nack, Snapshot, SnapshotCache};

/// Resource types one stream may subscribe to (we serve four).
const MAX_TYPES: usize = 16;
/// Resource names in one subscription (Envoy subscribes to clusters and listeners by
/// wildcard, to one route and one filter config by name).
const MAX_NAMES: usize = 1024;
/// Bytes of one resource name or type URL.
const MAX_NAME_BYTES: usize = 512;
/// Bytes of a NACK message kept.
const MAX_NACK_BYTES: usize = 1024;

#[derive(Debug, Clone)]
pub struct AdsServer {
    cache: Arc<SnapshotCache>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl AdsServer {
    pub fn new(cache: Arc<SnapshotCache>) -> Self {
        Self::with_max_streams(cache, MAX_STREAMS)
    }

    pub fn with_max_streams(cache: Arc<SnapshotCache>, max: usize) -> Self {
        AdsServer {
            cache,
            streams: Arc::new(tokio::sync::Semaphore::new(max)),
        }
    }
}

/// A refused stream, counted.
fn refuse(status: Status) -> Status {
    crate::metrics::add(&crate::metrics::METRICS.xds_refused_streams, 1);
    status
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
        let Ok(slot) = self.streams.clone().try_acquire_owned() else {
            return Err(refuse(Status::resource_exhausted("too many ADS streams")));
        };
        // Over mutual TLS, the node id the client certificate names (None on the Unix socket,
        // where only the owner can connect).
        let certified = request
            .extensions()
            .get::<super::listen::Peer>()
            .and_then(|p| p.node.clone());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let state = StreamState {
            cache: self.cache.clone(),
            tx,
            node: String::new(),
            certified,
            subs: HashMap::new(),
            nonce: 0,
        };
        tokio::spawn(async move {
            run_stream(state, inbound).await;
            drop(slot);
        });
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
    /// The latest snapshot serial carrying `sent_version`.
    sent_serial: u64,
    /// The node ACKed `sent_version`.
    acked: bool,
    nonce: String,
    nacked_version: Option<String>,
}

struct StreamState {
    cache: Arc<SnapshotCache>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    node: String,
    /// The node id the peer's certificate names, which its requests must carry.
    certified: Option<Arc<str>>,
    subs: HashMap<String, Subscription>,
    nonce: u64,
}

async fn run_stream(mut state: StreamState, mut inbound: Streaming<DiscoveryRequest>) {
    let mut updates = state.cache.subscribe();
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
        state.cache.node_disconnected(&state.node);
    }
}

struct Closed;

/// Why a request ends its stream, if it breaks a bound or names another node.
fn check_request(
    req: &DiscoveryRequest,
    certified: Option<&str>,
    subscribed: usize,
    known_type: bool,
) -> Result<(), Status> {
    if let Some(node) = &req.node {
        crate::pki::check_node_id(&node.id)
            .map_err(|_| Status::invalid_argument("a node id is 1 to 128 plain characters"))?;
        if certified.is_some_and(|c| c != node.id) {
            return Err(Status::permission_denied(
                "the node id is not the one the client certificate names",
            ));
        }
    }
    if req.type_url.len() > MAX_NAME_BYTES {
        return Err(Status::invalid_argument("type URL too long"));
    }
    if !known_type && subscribed >= MAX_TYPES {
        return Err(Status::resource_exhausted("too many resource types"));
    }
    if req.resource_names.len() > MAX_NAMES {
        return Err(Status::resource_exhausted("too many resource names"));
    }
    if req.resource_names.iter().any(|n| n.len() > MAX_NAME_BYTES) {
        return Err(Status::invalid_argument("resource name too long"));
    }
    Ok(())
}

/// A peer's NACK message as we keep it: control and bidirectional-override characters taken
/// out (they would forge log lines or hide text), at most [`MAX_NACK_BYTES`].
pub fn sanitize_nack(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_NACK_BYTES + 3));
    for c in message.chars() {
        let hidden = c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if hidden {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_NACK_BYTES {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

impl StreamState {
    async fn on_request(&mut self, req: DiscoveryRequest) -> Result<(), Closed> {
        let known = self.subs.contains_key(&req.type_url);
        if let Err(status) = check_request(&req, self.certified.as_deref(), self.subs.len(), known)
        {
            tracing::warn!(node = %self.node, certified = ?self.certified, "ADS stream refused: {}", status.message());
            let _ = self.tx.send(Err(refuse(status))).await;
            return Err(Closed);
        }
        if let Some(node) = &req.node {
            if self.node.is_empty() {
                self.node.clone_from(&node.id);
                tracing::info!(node = %self.node, "Envoy connected");
                self.cache.node_connected(&self.node);
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
            let message = sanitize_nack(&error.message);
            tracing::warn!(node = %self.node, %type_url, %version, "NACK: {message}");
            sub.nacked_version = Some(version.clone());
            sub.acked = false;
            let serial = sub.sent_serial;
            self.cache.update_node(&self.node, |n| {
                n.nacked.insert(
                    type_url.clone(),
                    Nack {
                        version,
                        message,
                        serial,
                    },
                );
            });
        } else if !first {
            tracing::debug!(node = %self.node, %type_url, version = %req.version_info, "ACK");
            let version = req.version_info.clone();
            sub.acked = true;
            let serial = sub.sent_serial;
            self.cache.update_node(&self.node, |n| {
                n.nacked.remove(&type_url);
                n.acked.insert(type_url.clone(), version);
                n.acked_serials.insert(type_url.clone(), serial);
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
        if !force && sub.sent_version.as_ref() == Some(version) {
            // The node has (or is about to ACK, or refused) this type of the new snapshot.
            sub.sent_serial = snapshot.serial;
            let (acked, nacked) = (sub.acked, sub.nacked_version.as_ref() == Some(version));
            if acked || nacked {
                let serial = snapshot.serial;
                self.cache.update_node(&self.node, |n| {
                    if acked {
                        n.acked_serials.insert(type_url.to_owned(), serial);
                    }
                    if let Some(nack) = n.nacked.get_mut(type_url).filter(|_| nacked) {
                        nack.serial = serial;
                    }
                });
            }
            return Ok(());
        }
        if !force && sub.nacked_version.as_ref() == Some(version) {
            return Ok(());
        }
        self.nonce += 1;
        sub.nonce = self.nonce.to_string();
        sub.sent_version = Some(version.clone());
        sub.sent_serial = snapshot.serial;
        sub.acked = false;
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

    /// Serves `ads` on a loopback port; a gRPC client of it.
    async fn serve(ads: AdsServer) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(ads))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    }

    /// A real gRPC client against the server: first response, NACK (recorded, not resent),
    /// a new version (sent), ACK (recorded).
    #[tokio::test]
    async fn nack_is_recorded_and_not_retried_and_a_new_version_is_sent() {
        let cache = Arc::new(SnapshotCache::default());
        cache.set(resources(b"v1")).unwrap();
        let mut client = serve(AdsServer::new(cache.clone())).await;
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

    /// The serial a node runs, per type: set by its ACK, moved on by snapshots that carry the
    /// same version, held back while a new version awaits its ACK, and a NACK's serial.
    #[tokio::test]
    async fn the_serial_a_node_runs_follows_its_acks() {
        let cache = Arc::new(SnapshotCache::default());
        cache.set(resources(b"v1")).unwrap();
        let mut client = serve(AdsServer::new(cache.clone())).await;
        let (tx, rx) = mpsc::channel(8);
        let mut responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let runs = || {
            cache.nodes()["node-a"]
                .acked_serials
                .get(build::CLUSTER_TYPE)
                .copied()
        };
        let settle = || tokio::time::sleep(Duration::from_millis(100));
        tx.send(request("", "", None)).await.unwrap();
        let first = responses.next().await.unwrap().unwrap();
        settle().await;
        assert_eq!(runs(), None, "sent, not yet ACKed");
        tx.send(request(&first.nonce, &first.version_info, None))
            .await
            .unwrap();
        settle().await;
        assert_eq!(runs(), Some(1));

        // Another type changed: this one is the same, so the node runs serial 2 of it.
        let mut other = resources(b"v1");
        other.routes[0].1.value = b"r2".to_vec();
        assert_eq!(cache.set(other), Ok(2));
        settle().await;
        assert_eq!(runs(), Some(2));

        assert_eq!(cache.set(resources(b"v3")), Ok(3));
        let third = responses.next().await.unwrap().unwrap();
        settle().await;
        assert_eq!(runs(), Some(2), "serial 3 is not ACKed yet");
        tx.send(request(&third.nonce, &third.version_info, None))
            .await
            .unwrap();
        settle().await;
        assert_eq!(runs(), Some(3));

        assert_eq!(cache.set(resources(b"v4")), Ok(4));
        let fourth = responses.next().await.unwrap().unwrap();
        tx.send(request(&fourth.nonce, "", Some("bad")))
            .await
            .unwrap();
        settle().await;
        let node = &cache.nodes()["node-a"];
        assert_eq!(node.nacked[build::CLUSTER_TYPE].serial, 4);
        assert_eq!(
            runs(),
            Some(3),
            "a NACK leaves the node on its last good serial"
        );
        // The refused version again in a later snapshot: refused at that serial too.
        let mut same = resources(b"v4");
        same.routes[0].1.value = b"r5".to_vec();
        assert_eq!(cache.set(same), Ok(5));
        settle().await;
        assert_eq!(
            cache.nodes()["node-a"].nacked[build::CLUSTER_TYPE].serial,
            5
        );

        drop(tx);
        settle().await;
        let node = &cache.nodes()["node-a"];
        assert!(!node.connected && node.acked_serials.is_empty());
    }

    #[test]
    fn nack_messages_are_cleaned_and_bounded() {
        assert_eq!(
            sanitize_nack("bad\nNACK forged line\r\u{1b}[31m\u{202e}x"),
            "badNACK forged line[31mx"
        );
        let long = "é".repeat(2000);
        let cut = sanitize_nack(&long);
        assert!(
            cut.len() <= MAX_NACK_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…') && cut.starts_with("éé"));
        assert_eq!(
            sanitize_nack("cluster c: bad config"),
            "cluster c: bad config"
        );
    }

    #[test]
    fn requests_beyond_the_bounds_or_for_another_node_end_the_stream() {
        let ok = request("", "", None);
        assert!(check_request(&ok, Some("node-a"), 0, false).is_ok());
        assert!(check_request(&ok, None, 0, false).is_ok());
        let code = |r: &DiscoveryRequest, certified, subscribed, known| {
            check_request(r, certified, subscribed, known)
                .expect_err("refused")
                .code()
        };
        assert_eq!(
            code(&ok, Some("node-b"), 0, false),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code(&ok, None, MAX_TYPES, false),
            tonic::Code::ResourceExhausted
        );
        assert!(
            check_request(&ok, None, MAX_TYPES, true).is_ok(),
            "a type already subscribed"
        );
        let mut many = ok.clone();
        many.resource_names = (0..=MAX_NAMES).map(|i| i.to_string()).collect();
        assert_eq!(code(&many, None, 0, false), tonic::Code::ResourceExhausted);
        let mut long = ok.clone();
        long.resource_names = vec!["x".repeat(MAX_NAME_BYTES + 1)];
        assert_eq!(code(&long, None, 0, false), tonic::Code::InvalidArgument);
        let mut long = ok.clone();
        long.type_url = "t".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(code(&long, None, 0, false), tonic::Code::InvalidArgument);
        let mut odd = ok;
        odd.node.as_mut().unwrap().id = "node\nforged".into();
        assert_eq!(code(&odd, None, 0, false), tonic::Code::InvalidArgument);
    }

    /// Streams beyond the cap are refused; one that breaks a bound ends with its status.
    #[tokio::test]
    async fn streams_are_capped_and_a_stream_breaking_a_bound_is_ended() {
        let cache = Arc::new(SnapshotCache::default());
        cache.set(resources(b"v1")).unwrap();
        let mut client = serve(AdsServer::with_max_streams(cache.clone(), 1)).await;
        let (tx, rx) = mpsc::channel(8);
        let mut first = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let (_tx2, rx2) = mpsc::channel(8);
        let second = client
            .stream_aggregated_resources(ReceiverStream::new(rx2))
            .await
            .expect_err("beyond the cap");
        assert_eq!(second.code(), tonic::Code::ResourceExhausted);

        let mut greedy = request("", "", None);
        greedy.resource_names = (0..=MAX_NAMES).map(|i| format!("c{i}")).collect();
        tx.send(greedy).await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(2), first.next())
            .await
            .expect("answered")
            .expect("a status");
        assert_eq!(ended.unwrap_err().code(), tonic::Code::ResourceExhausted);
        // Its slot is free again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_tx3, rx3) = mpsc::channel(8);
        assert!(client
            .stream_aggregated_resources(ReceiverStream::new(rx3))
            .await
            .is_ok());
    }
}
