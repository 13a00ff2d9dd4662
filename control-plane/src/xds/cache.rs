//! Versioned snapshots and what each Envoy node has accepted.
//!
//! Every node is served the same desired state today; the cache still tracks ACKs and NACKs per
//! node id so operators and tests can see which configuration each gateway runs.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::google::protobuf::Any;
use serde::Serialize;
use tokio::sync::watch;

use super::acks::{self, AckState};
use super::bounds::MAX_NODES;
use super::build::{self, Resources};
use crate::snapshot::content_version;

/// The resources of one type with their version (derived from their content).
#[derive(Debug, Clone, Default)]
pub struct TypeSnapshot {
    pub version: String,
    pub resources: Vec<(String, Any)>,
}

/// A consistent set of resources of all types.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub serial: u64,
    pub types: BTreeMap<&'static str, TypeSnapshot>,
}

impl Snapshot {
    pub fn new(serial: u64, r: Resources) -> Snapshot {
        let mut types = BTreeMap::new();
        for (type_url, resources) in [
            (build::LISTENER_TYPE, r.listeners),
            (build::ROUTE_TYPE, r.routes),
            (build::CLUSTER_TYPE, r.clusters),
            (build::ECDS_TYPE, r.extension_configs),
        ] {
            let mut bytes = Vec::new();
            for (name, any) in &resources {
                bytes.extend_from_slice(name.as_bytes());
                bytes.push(0);
                bytes.extend_from_slice(&any.value);
            }
            types.insert(
                type_url,
                TypeSnapshot {
                    version: content_version(&bytes),
                    resources,
                },
            );
        }
        Snapshot { serial, types }
    }

    /// What the listener refers to must exist, and names must be unique per type.
    pub fn check(&self) -> Result<(), String> {
        for (type_url, t) in &self.types {
            let mut seen = HashSet::new();
            for (name, _) in &t.resources {
                if !seen.insert(name.as_str()) {
                    return Err(format!("duplicate {type_url} resource {name}"));
                }
            }
        }
        let has = |type_url: &str, name: &str| {
            self.types
                .get(type_url)
                .is_some_and(|t| t.resources.iter().any(|(n, _)| n == name))
        };
        if has(build::LISTENER_TYPE, build::LISTENER_NAME) {
            if !has(build::ROUTE_TYPE, build::ROUTE_NAME) {
                return Err(format!(
                    "listener refers to missing route {}",
                    build::ROUTE_NAME
                ));
            }
            if !has(build::ECDS_TYPE, build::FILTER_NAME) {
                return Err(format!(
                    "listener refers to missing filter config {}",
                    build::FILTER_NAME
                ));
            }
        }
        Ok(())
    }
}

/// What one node has accepted or refused, by resource type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    pub connected: bool,
    pub acked: BTreeMap<String, String>,
    pub nacked: BTreeMap<String, Nack>,
    /// By resource type, the latest snapshot serial whose resources of that type the node
    /// runs (it ACKed their version).
    pub acked_serials: BTreeMap<String, u64>,
    /// ADS streams open under this node id (normally one; a reconnection may overlap).
    #[serde(skip)]
    pub streams: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    pub version: String,
    pub message: String,
    /// The latest snapshot serial that carries the refused version.
    pub serial: u64,
}

#[derive(Debug)]
pub struct SnapshotCache {
    tx: watch::Sender<Arc<Snapshot>>,
    nodes: Mutex<BTreeMap<String, NodeStatus>>,
    /// Bumped at every change of a node's status: what [`SnapshotCache::wait_acked`] waits on.
    progress: watch::Sender<u64>,
}

impl Default for SnapshotCache {
    fn default() -> Self {
        SnapshotCache {
            tx: watch::channel(Arc::new(Snapshot::default())).0,
            nodes: Mutex::default(),
            progress: watch::channel(0).0,
        }
    }
}

impl SnapshotCache {
    /// Publishes a snapshot after checking it; every open stream sends what changed.
    pub fn set(&self, resources: Resources) -> Result<u64, String> {
        let serial = self.tx.borrow().serial + 1;
        let snapshot = Snapshot::new(serial, resources);
        snapshot.check()?;
        self.tx.send_replace(Arc::new(snapshot));
        Ok(serial)
    }

    /// Like [`SnapshotCache::set`], but leaves the current snapshot when every type's version
    /// is the same (nothing for Envoy to do); returns the new serial if it published.
    pub fn set_if_changed(&self, resources: Resources) -> Result<Option<u64>, String> {
        let current = self.current();
        let snapshot = Snapshot::new(current.serial + 1, resources);
        let same = current.types.len() == snapshot.types.len()
            && current.types.iter().all(|(t, s)| {
                snapshot
                    .types
                    .get(t)
                    .is_some_and(|n| n.version == s.version)
            });
        if same {
            return Ok(None);
        }
        snapshot.check()?;
        let serial = snapshot.serial;
        self.tx.send_replace(Arc::new(snapshot));
        Ok(Some(serial))
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    pub fn update_node(&self, node: &str, f: impl FnOnce(&mut NodeStatus)) {
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        if !nodes.contains_key(node) && nodes.len() >= MAX_NODES {
            let gone = nodes
                .iter()
                .find(|(_, s)| !s.connected)
                .map(|(id, _)| id.clone());
            match gone {
                Some(id) => {
                    nodes.remove(&id);
                }
                None => return,
            }
        }
        f(nodes.entry(node.to_owned()).or_default());
        drop(nodes);
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A stream of `node` opened: the node counts for acknowledgements from now on.
    pub fn node_connected(&self, node: &str) {
        self.update_node(node, |n| {
            if n.streams == 0 {
                // What an earlier connection ACKed says nothing about this one.
                n.acked_serials.clear();
            }
            n.streams += 1;
            n.connected = true;
        });
    }

    /// A stream of `node` ended: with its last stream the node stops counting.
    pub fn node_disconnected(&self, node: &str) {
        self.update_node(node, |n| {
            n.streams = n.streams.saturating_sub(1);
            n.connected = n.streams > 0;
            if !n.connected {
                n.acked_serials.clear();
            }
        });
    }

    pub fn nodes(&self) -> BTreeMap<String, NodeStatus> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Whether every connected node runs snapshot `serial` (or a later one), and each one's
    /// state (see [`acks::of`]).
    pub fn ack_state(&self, serial: u64) -> AckState {
        let Ok(nodes) = self.nodes.lock() else {
            return AckState::default();
        };
        acks::of(serial, &self.current(), &nodes)
    }

    /// Waits until every connected node runs snapshot `serial` or a later one, or every node
    /// that does not has refused it (NACK: waiting longer would not help), or `timeout`
    /// passed; returns the state then. With no node connected there is nothing to wait for.
    pub async fn wait_acked(&self, serial: u64, timeout: Duration) -> AckState {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut progress = self.progress.subscribe();
        loop {
            progress.borrow_and_update();
            let state = self.ack_state(serial);
            if state.settled() {
                return state;
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return state },
                () = tokio::time::sleep_until(deadline) => return self.ack_state(serial),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(v: &[u8]) -> Any {
        Any {
            type_url: "t".into(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn versions_follow_content_and_references_are_checked() {
        let r = Resources {
            listeners: vec![(build::LISTENER_NAME.into(), any(b"l"))],
            routes: vec![(build::ROUTE_NAME.into(), any(b"r"))],
            clusters: vec![("c".into(), any(b"c1"))],
            extension_configs: vec![(build::FILTER_NAME.into(), any(b"f"))],
        };
        let cache = SnapshotCache::default();
        assert_eq!(cache.set(r.clone()), Ok(1));
        let v1 = cache.current();
        let mut r2 = r.clone();
        r2.clusters[0].1 = any(b"c2");
        assert_eq!(cache.set(r2), Ok(2));
        let v2 = cache.current();
        assert_eq!(
            v1.types[build::LISTENER_TYPE].version,
            v2.types[build::LISTENER_TYPE].version
        );
        assert_ne!(
            v1.types[build::CLUSTER_TYPE].version,
            v2.types[build::CLUSTER_TYPE].version
        );

        let mut broken = r.clone();
        broken.routes.clear();
        assert!(cache.set(broken).is_err());
        let mut dup = r;
        dup.clusters.push(("c".into(), any(b"x")));
        assert!(cache.set(dup).is_err());
        assert_eq!(
            cache.current().serial,
            2,
            "a rejected snapshot is not published"
        );
    }

    #[test]
    fn nodes_are_capped_and_disconnected_ones_make_room() {
        let cache = SnapshotCache::default();
        for i in 0..MAX_NODES {
            cache.update_node(&format!("n{i}"), |n| n.connected = true);
        }
        cache.update_node("late", |n| n.connected = true);
        assert!(
            !cache.nodes().contains_key("late"),
            "all connected: not recorded"
        );
        cache.update_node("n7", |n| n.connected = false);
        cache.update_node("late", |n| n.connected = true);
        let nodes = cache.nodes();
        assert_eq!(nodes.len(), MAX_NODES);
        assert!(nodes.contains_key("late") && !nodes.contains_key("n7"));
    }

    #[test]
    fn an_unchanged_snapshot_is_not_published_again() {
        let cache = SnapshotCache::default();
        let resources = || Resources {
            clusters: vec![("c".into(), any(b"cluster"))],
            ..Default::default()
        };
        let first = cache.set_if_changed(resources()).unwrap();
        assert_eq!(first, Some(1));
        assert_eq!(cache.set_if_changed(resources()).unwrap(), None);
        assert_eq!(cache.current().serial, 1);
        let changed = Resources {
            clusters: vec![("c".into(), any(b"cluster v2"))],
            ..Default::default()
        };
        assert_eq!(cache.set_if_changed(changed).unwrap(), Some(2));
    }
}
