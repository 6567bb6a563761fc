//! This node's side of the links between nodes.

use super::keys::ClusterKeys;
use crate::server::nodes::Node;
use std::sync::Arc;

/// This node's side of the links: the cluster's keys, and the node (which
/// names the others holding a UUID).
pub struct Peers {
    /// From `--cluster-secret-file`.
    pub keys: ClusterKeys,
    /// This server as a node.
    pub node: Arc<Node>,
}
