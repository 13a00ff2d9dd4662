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
