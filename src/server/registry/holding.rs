//! What a registry says of its pools as a node's (`server::nodes`): whether
//! it takes new parks, which pools the last heartbeat announced, and the
//! wake that announces a newly held one at once.

use super::proto::Proto;
use crossbeam_channel::Sender;
use std::collections::HashSet;
use uuid::Uuid;

/// What this server, as a node, says of its pools.
#[derive(Default)]
pub struct Holding {
    /// New parks refused: a node that lost its lease (`server::nodes`).
    pub(super) parking_off: bool,
    /// The pools held at the last heartbeat, which the store names this
    /// node for.
    pub(super) announced: HashSet<(Uuid, Proto)>,
    /// Wakes the heartbeat to say at once that a pool is newly held.
    pub(super) wake: Option<Sender<()>>,
}

impl Holding {
    /// A socket was parked for `uuid`: if the store does not name this
    /// node for it yet, wake the heartbeat, so lookups at other nodes find
    /// it within a round trip rather than a third of the lease (an agent
    /// that moved here after its node died is reached at once).
    pub(super) fn parked(&self, uuid: Uuid, proto: Proto) {
        if !self.announced.contains(&(uuid, proto)) {
            if let Some(w) = &self.wake {
                let _ = w.try_send(());
            }
        }
    }
}
