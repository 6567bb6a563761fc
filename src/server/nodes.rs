//! Several servers on one store, each a *node* (`--node-id`): a node holds
//! a lease in the store, renewed by a heartbeat every third of
//! `--node-ttl`, and says with it which UUIDs have sockets parked here. A
//! lookup at any node names the node that holds the UUID's parked
//! sockets, so a mobile client goes where its hidden server waits; there
//! is no relay between nodes for the generic protocol. No consensus or
//! gossip of our own: a node whose lease lapsed is gone.
//!
//! The store is asked holding no lock; the registry is read (under its
//! lock) before and not during.

use crate::error::{Error, IoResultExt, Result};
use crate::secret::Cookie;
use crate::server::registry::{Proto, Registry};
use crate::server::store::ops::Unavailable;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uuid::Uuid;

const T: &str = "rendezvous::nodes";

/// A node's host and port, as triples name them.
pub type Place = (String, u16);

/// Where leases and holdings are kept (the Redis store implements it).
pub trait Leases: Send + Sync {
    /// Claim or renew the lease of node `id` for `instance`, naming
    /// `place` in triples and `peer` as its peer listener; `false` when
    /// another instance holds it.
    fn claim_node(&self, id: &str, instance: &str, place: (&str, u16), peer: Option<&str>, ttl: Duration) -> std::result::Result<bool, Unavailable>;
    /// Give the lease up if `instance` holds it.
    fn release_node(&self, id: &str, instance: &str) -> std::result::Result<(), Unavailable>;
    /// Say that node `id` holds `held` (`g` generic or `h` HTTP, and a
    /// UUID) for `ttl`.
    fn hold(&self, id: &str, held: &[(char, Uuid)], ttl: Duration) -> std::result::Result<(), Unavailable>;
    /// A lookup of `uuid` in one round trip: its `I` cookie, and a live
    /// node other than `me` that holds its sockets for `p`, not the one at
    /// `avoid` (`HOST:PORT`).
    fn locate(&self, uuid: &Uuid, p: char, me: &str, avoid: Option<&str>) -> std::result::Result<Located, Unavailable>;
    /// The peer listeners (`HOST:PORT`) of the live nodes other than `me`
    /// holding `uuid`'s sockets for `p`, in one round trip.
    fn peers_holding(&self, uuid: &Uuid, p: char, me: &str) -> std::result::Result<Vec<String>, Unavailable>;
}

/// What the store knows of a UUID for a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The registration's `I` cookie.
    pub initiator: Option<Cookie>,
    /// A live node, not this one, holding the UUID's sockets: its id and
    /// place.
    pub holder: Option<(String, Place)>,
}

/// This server as a node.
pub struct Node {
    /// `--node-id`.
    pub id: String,
    /// Which process holds the id: another with the same id is refused.
    instance: String,
    place: Place,
    /// `--peer-advertise`: where other nodes reach this one's peer listener.
    peer: Option<String>,
    ttl: Duration,
    leases: Arc<dyn Leases>,
    /// The lease was renewed at the last heartbeat.
    leased: AtomicBool,
}

fn letter(p: Proto) -> char {
    match p {
        Proto::Generic => 'g',
        Proto::Http => 'h',
    }
}

impl Node {
    /// Claim the id. A lease another process holds may be a crashed
    /// predecessor's: wait up to one TTL for it to lapse, then refuse.
    pub fn claim(id: String, (place, peer): (Place, Option<String>), ttl: Duration, leases: Arc<dyn Leases>) -> Result<Node> {
        let node = Node {
            id,
            instance: Uuid::new_v4().simple().to_string(),
            place,
            peer,
            ttl,
            leases,
            leased: AtomicBool::new(false),
        };
        let give_up = Instant::now() + ttl + Duration::from_secs(1);
        let mut said = false;
        loop {
            match node.renew() {
                Ok(true) => break,
                Ok(false) if Instant::now() < give_up => {
                    if !said {
                        log::warn!(target: T, "node {} is held by another server; waiting up to {} s for its lease to lapse",
                            node.id, ttl.as_secs());
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Ok(false) => {
                    return Err(Error::Other(format!(
                        "node id {} is held by another running server; give each node its own --node-id",
                        node.id
                    )))
                }
                Err(Unavailable) => return Err(Error::Other("the store did not answer the node's lease".into())),
            }
        }
        node.leased.store(true, Ordering::Release);
        log::info!(target: T, "node {} joined place={}:{} ttl={}s", node.id, node.place.0, node.place.1, ttl.as_secs());
        Ok(node)
    }

    fn renew(&self) -> std::result::Result<bool, Unavailable> {
        let place = (self.place.0.as_str(), self.place.1);
        self.leases.claim_node(&self.id, &self.instance, place, self.peer.as_deref(), self.ttl)
    }

    /// Whether the lease was renewed at the last heartbeat.
    pub fn leased(&self) -> bool {
        self.leased.load(Ordering::Acquire)
    }

    /// One heartbeat: renew the lease, and say what is parked here;
    /// whether the lease is held.
    pub fn beat(&self, held: &[(Uuid, Proto)]) -> bool {
        let renewed = self.renew();
        let ok = renewed == Ok(true);
        let was = self.leased.swap(ok, Ordering::AcqRel);
        if ok {
            if !was {
                log::info!(target: T, "node {} holds its lease again; parks are taken", self.id);
            }
            self.publish(held);
        } else if was {
            let why = if renewed.is_ok() { "another server took the id" } else { "the store did not answer" };
            log::warn!(target: T, "node {}: lease not renewed ({why}); new parks are refused until it is", self.id);
        }
        ok
    }

    /// Say what is held now, between heartbeats (a pool newly held), if
    /// the lease is held; the store not answering waits for the next beat.
    pub fn publish(&self, held: &[(Uuid, Proto)]) {
        if self.leased() {
            let held: Vec<(char, Uuid)> = held.iter().map(|(u, p)| (letter(*p), *u)).collect();
            let _ = self.leases.hold(&self.id, &held, self.ttl);
        }
    }

    /// A lookup of `uuid` for `proto`: the `I` cookie (this server's, else
    /// the store's) and where a mobile client should go: `None` for here
    /// (the sockets are parked here, no other node holds them, or the
    /// store does not answer), else the place of the node holding them.
    /// No store round trip when they are parked here, else one.
    pub fn lookup(&self, registry: &Registry, uuid: &Uuid, proto: Proto) -> (Option<Cookie>, Option<Place>) {
        let local = registry.local_initiator(uuid);
        if local.is_some() && registry.holds(uuid, proto) {
            return (local, None);
        }
        match self.leases.locate(uuid, letter(proto), &self.id, None) {
            Ok(found) => (local.or(found.initiator), found.holder.map(|(_, place)| place)),
            Err(Unavailable) => (local, None),
        }
    }

    /// The peer listeners of the other live nodes holding parked
    /// `CONNECT`s of `uuid`, in random order (so the load spreads); none
    /// when the store does not answer.
    pub fn http_holders(&self, uuid: &Uuid) -> Vec<String> {
        let mut peers = self.leases.peers_holding(uuid, 'h', &self.id).unwrap_or_default();
        for i in (1..peers.len()).rev() {
            let j = (crate::random::u64() % (i as u64 + 1)) as usize;
            peers.swap(i, j);
        }
        peers
    }

    /// Where a hidden server that cannot reach `avoid` (`HOST:PORT`, the
    /// place its triple named) should wait: another live node holding
    /// `uuid`'s generic sockets, or `None` for here. One round trip.
    pub fn holder_avoiding(&self, uuid: &Uuid, avoid: &str) -> Option<Place> {
        let found = self.leases.locate(uuid, 'g', &self.id, Some(avoid)).ok()?;
        found.holder.map(|(_, place)| place)
    }

    /// Give the lease up (a clean stop), so the id is free at once.
    pub fn release(&self) {
        let _ = self.leases.release_node(&self.id, &self.instance);
    }
}

/// The heartbeat thread: every third of the TTL, `node.beat` with what
/// `held` reports, telling `leased` whether the lease is held, until told
/// to stop (then the lease is given up). A message on `wake` (a pool newly
/// held) says what is held at once, between beats.
pub fn start_heartbeat(
    node: Arc<Node>,
    held: impl Fn() -> Vec<(Uuid, Proto)> + Send + 'static,
    leased: impl Fn(bool) + Send + 'static,
    wake: Receiver<()>,
) -> Result<(Sender<()>, JoinHandle<()>)> {
    let (tx, rx) = bounded::<()>(1);
    let every = node.ttl / 3;
    let t = crate::threads::start("heartbeat", move || {
        // The claim took the lease, and nothing is parked yet.
        let mut next = Instant::now() + every;
        let mut wake = wake;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(rx) -> _ => break,
                recv(wake) -> woke => match woke {
                    Ok(()) => node.publish(&held()),
                    Err(_) => wake = crossbeam_channel::never(),
                },
                default(left) => {
                    leased(node.beat(&held()));
                    next = Instant::now() + every;
                }
            }
        }
        node.release();
    })
    .op("start heartbeat thread")?;
    Ok((tx, t))
}
