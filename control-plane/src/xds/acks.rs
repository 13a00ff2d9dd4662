//! Whether the connected Envoys run a given snapshot: what an admin write waits for before it
//! answers (read-your-writes), and what `/admin/v1/config/status` shows.
//!
//! A node runs snapshot `serial` when, for every resource type the current snapshot carries
//! resources of, it has ACKed a version that some snapshot numbered `serial` or later carries
//! (the ADS stream records that serial per type, see [`super::server`]). A node that refused
//! (NACKed) such a version does not run it; a disconnected node does not count.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::cache::{NodeStatus, Snapshot};

/// Every connected node's progress towards one snapshot serial.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct AckState {
    /// The serial asked about.
    pub serial: u64,
    /// The serial the control plane publishes now (never below `serial` once it exists).
    pub current: u64,
    /// Every connected node runs `serial` or a later snapshot (true when none is connected).
    pub acknowledged: bool,
    /// By node id, each connected node.
    pub nodes: BTreeMap<String, NodeAck>,
}

/// Where one node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// It runs the serial or a later one.
    Acked,
    /// It has not acknowledged every type yet.
    Pending,
    /// It refused a version the serial carries (it keeps its last good configuration).
    Nacked,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeAck {
    pub state: NodeState,
    /// The latest serial the node runs every type of (0: none yet).
    pub serial: u64,
    /// The resource types it does not run at the serial asked about yet.
    pub lagging: Vec<String>,
    /// Its refusals of the serial or a later one: by type, the node's message.
    pub nacked: BTreeMap<String, String>,
}

impl AckState {
    /// Nothing more to wait for: acknowledged, or every node that lags has refused.
    pub fn settled(&self) -> bool {
        self.acknowledged || self.nodes.values().all(|n| n.state != NodeState::Pending)
    }
}

/// Every connected node's progress towards `serial`, given the current snapshot.
pub fn of(serial: u64, current: &Snapshot, nodes: &BTreeMap<String, NodeStatus>) -> AckState {
    let required: Vec<&str> = current
        .types
        .iter()
        .filter(|(_, t)| !t.resources.is_empty())
        .map(|(t, _)| *t)
        .collect();
    let mut state = AckState {
        serial,
        current: current.serial,
        acknowledged: true,
        nodes: BTreeMap::new(),
    };
    for (id, node) in nodes.iter().filter(|(_, n)| n.connected) {
        let runs = |t: &str| node.acked_serials.get(t).copied().unwrap_or(0);
        let lagging: Vec<String> = required
            .iter()
            .filter(|t| runs(t) < serial)
            .map(|t| (*t).to_owned())
            .collect();
        let nacked: BTreeMap<String, String> = node
            .nacked
            .iter()
            .filter(|(_, n)| n.serial >= serial)
            .map(|(t, n)| (t.clone(), n.message.clone()))
            .collect();
        let node_state = match (lagging.is_empty(), nacked.is_empty()) {
            (true, _) => NodeState::Acked,
            (false, true) => NodeState::Pending,
            (false, false) => NodeState::Nacked,
        };
        state.acknowledged &= node_state == NodeState::Acked;
        state.nodes.insert(
            id.clone(),
            NodeAck {
                state: node_state,
                serial: required.iter().map(|t| runs(t)).min().unwrap_or(0),
                lagging,
                nacked,
            },
        );
    }
    state
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use envoy_types::pb::google::protobuf::Any;

    use super::*;
    use crate::xds::build::{self, Resources};
    use crate::xds::cache::{Nack, SnapshotCache};

    const TYPES: [&str; 4] = [
        build::LISTENER_TYPE,
        build::ROUTE_TYPE,
        build::CLUSTER_TYPE,
        build::ECDS_TYPE,
    ];

    fn resources(filter: &[u8]) -> Resources {
        let any = |v: &[u8]| Any {
            type_url: "t".into(),
            value: v.to_vec(),
        };
        Resources {
            listeners: vec![(build::LISTENER_NAME.into(), any(b"l"))],
            routes: vec![(build::ROUTE_NAME.into(), any(b"r"))],
            clusters: vec![("c".into(), any(b"c"))],
            extension_configs: vec![(build::FILTER_NAME.into(), any(filter))],
        }
    }

    /// `node` runs `serial` for every type but those in `except`.
    fn ack(cache: &SnapshotCache, node: &str, serial: u64, except: &[&str]) {
        cache.update_node(node, |n| {
            for t in TYPES.iter().filter(|t| !except.contains(t)) {
                n.acked_serials.insert((*t).to_owned(), serial);
            }
        });
    }

    fn published(serial_wanted: u64) -> Arc<SnapshotCache> {
        let cache = Arc::new(SnapshotCache::default());
        for i in 1..=serial_wanted {
            cache.set(resources(&i.to_be_bytes())).unwrap();
        }
        cache
    }

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn with_no_node_connected_there_is_nothing_to_wait_for() {
        let cache = published(1);
        let start = Instant::now();
        let state = cache.wait_acked(1, LONG).await;
        assert!(state.acknowledged && state.nodes.is_empty());
        assert!(start.elapsed() < Duration::from_secs(1));
        // A node that left does not count either.
        cache.node_connected("gone");
        cache.node_disconnected("gone");
        assert!(cache.wait_acked(1, LONG).await.acknowledged);
    }

    #[tokio::test]
    async fn a_wait_ends_when_every_node_acks_every_type() {
        let cache = published(2);
        cache.node_connected("a");
        cache.node_connected("b");
        ack(&cache, "a", 1, &[]);
        ack(&cache, "b", 2, &[build::ECDS_TYPE]);
        let state = cache.ack_state(2);
        assert!(!state.acknowledged && !state.settled());
        assert_eq!(state.nodes["a"].state, NodeState::Pending);
        assert_eq!(state.nodes["a"].serial, 1);
        assert_eq!(state.nodes["b"].lagging, vec![build::ECDS_TYPE.to_owned()]);
        assert!(cache.ack_state(1).nodes["a"].state == NodeState::Acked);

        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_acked(2, LONG).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        ack(&cache, "a", 2, &[]);
        assert!(!waiter.is_finished(), "b still lags");
        // A later serial counts for an earlier one.
        ack(&cache, "b", 3, &[]);
        let state = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by the last ACK")
            .unwrap();
        assert!(state.acknowledged, "{state:?}");
        assert!(state.nodes.values().all(|n| n.state == NodeState::Acked));
    }

    #[tokio::test]
    async fn a_nack_ends_the_wait_unacknowledged_and_names_the_node() {
        let cache = published(2);
        cache.node_connected("good");
        cache.node_connected("bad");
        ack(&cache, "good", 2, &[]);
        ack(&cache, "bad", 1, &[]);
        cache.update_node("bad", |n| {
            n.nacked.insert(
                build::ECDS_TYPE.into(),
                Nack {
                    version: "v2".into(),
                    message: "filter config rejected".into(),
                    serial: 2,
                },
            );
        });
        let start = Instant::now();
        let state = cache.wait_acked(2, LONG).await;
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "no wait for a NACK"
        );
        assert!(!state.acknowledged);
        assert_eq!(state.nodes["bad"].state, NodeState::Nacked);
        assert_eq!(
            state.nodes["bad"].nacked[build::ECDS_TYPE],
            "filter config rejected"
        );
        assert_eq!(state.nodes["good"].state, NodeState::Acked);
        // A refusal of an older serial says nothing about a newer one: pending.
        cache.set(resources(b"v3")).unwrap();
        assert_eq!(cache.ack_state(3).nodes["bad"].state, NodeState::Pending);
    }

    #[tokio::test]
    async fn a_node_that_disconnects_stops_counting() {
        let cache = published(1);
        cache.node_connected("stays");
        cache.node_connected("leaves");
        ack(&cache, "stays", 1, &[]);
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_acked(1, LONG).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        cache.node_disconnected("leaves");
        let state = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by the disconnection")
            .unwrap();
        assert!(state.acknowledged);
        assert!(!state.nodes.contains_key("leaves"));
        // When it comes back, what it ACKed before does not count.
        cache.node_connected("leaves");
        assert_eq!(cache.ack_state(1).nodes["leaves"].state, NodeState::Pending);
    }

    #[tokio::test]
    async fn a_wait_is_bounded() {
        let cache = published(1);
        cache.node_connected("silent");
        let start = Instant::now();
        let state = cache.wait_acked(1, Duration::from_millis(100)).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2));
        assert!(!state.acknowledged);
        assert_eq!(state.nodes["silent"].state, NodeState::Pending);
        assert_eq!(state.nodes["silent"].lagging.len(), TYPES.len());
    }
}
