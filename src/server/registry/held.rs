//! What this server holds: the UUIDs with sockets parked here, which a
//! node's heartbeat publishes in the store (`server::nodes`).

use super::{Proto, Registry};
use crossbeam_channel::Sender;
use uuid::Uuid;

impl Registry {
    /// The UUIDs with sockets parked here, and for which protocol (what
    /// the heartbeat announces).
    pub fn held(&self) -> Vec<(Uuid, Proto)> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for (uuid, reg) in &inner.regs {
            for proto in [Proto::Generic, Proto::Http] {
                if !reg.pools[proto.index()].rx.is_empty() {
                    out.push((*uuid, proto));
                }
            }
        }
        inner.holding.announced = out.iter().copied().collect();
        out
    }

    /// Wake `wake` (try_send, never blocking) when a pool not announced at
    /// the last heartbeat gets a socket.
    pub fn on_newly_held(&self, wake: Sender<()>) {
        self.lock().holding.wake = Some(wake);
    }

    /// Take new parks (`true`, the default) or refuse them as not
    /// registered: a node that lost its lease keeps pairing what it holds
    /// but takes nothing new, so its hidden servers move to a live node.
    pub fn set_parking(&self, on: bool) {
        self.lock().holding.parking_off = !on;
    }

    /// Whether sockets of `uuid` for `proto` are parked here.
    pub fn holds(&self, uuid: &Uuid, proto: Proto) -> bool {
        self.lock()
            .regs
            .get(uuid)
            .is_some_and(|r| !r.pools[proto.index()].rx.is_empty())
    }
}
