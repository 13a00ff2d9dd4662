//! How many Envoys the xDS side serves at once and remembers: the ADS server's stream cap and
//! the cache's node cap sized from it.

/// ADS streams open at once (one per Envoy; more are refused).
pub const MAX_STREAMS: usize = 1024;

/// Nodes remembered at most (node ids are chosen by peers): beyond it a disconnected node is
/// forgotten for a new one, and a new node is not recorded when all are connected (the ADS
/// server admits fewer streams than this).
pub const MAX_NODES: usize = 2 * MAX_STREAMS;
