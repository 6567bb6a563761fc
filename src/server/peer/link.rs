//! The asking side of a link: the node that received a mobile request asks
//! each other node holding the UUID's parked `CONNECT`s, in turn, for one.

use super::keys::PEER_NAME;
use super::peers::Peers;
use super::wire::{request, T};
use crate::error::{Error, IoResultExt, Result};
use crate::limits::{
    ACK_PROOF_MAX, FIRST_REQUEST_PAUSE, MAX_STATUS_LINE, PEER_ANSWER_SLACK, PEER_CONNECT_TIMEOUT, PEER_FIRST_MAX,
    PEER_TAKE_WAIT,
};
use crate::ratelimit::RateLimit;
use crate::relay::{Leg, TlsLeg};
use crate::server::metrics::Metrics;
use crate::server::pairing::Pairing;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A link's answer: a relay leg to the hidden server, or not ready.
type Answer = Option<Arc<dyn Leg>>;

/// What asking the other nodes gave.
pub enum Remote {
    /// A link relaying to a hidden server, and the node's address.
    Taken(Arc<dyn Leg>, String),
    /// Some node holds the UUID, none had a `CONNECT` ready (or the link
    /// failed).
    NotReady,
    /// No other live node holds the UUID (or the store did not say).
    NoHolder,
}

/// Ask the other nodes holding `uuid`'s parked `CONNECT`s, in random order,
/// for one that takes `first`. No link starts at or after `deadline`, and
/// each is bounded by it (see [`ask`]).
pub fn take_remote(pairing: &Pairing, peers: &Peers, uuid: &Uuid, first: &[u8], deadline: Instant) -> Remote {
    if first.len() > PEER_FIRST_MAX {
        return Remote::NoHolder;
    }
    let holders = peers.node.http_holders(uuid);
    if holders.is_empty() {
        return Remote::NoHolder;
    }
    for at in holders {
        if Instant::now() >= deadline {
            break;
        }
        match ask(pairing, peers, &at, (uuid, first), deadline) {
            Ok(Some(leg)) => {
                Metrics::bump(&pairing.metrics.peer_forwarded);
                return Remote::Taken(leg, at);
            }
            Ok(None) => log::debug!(target: T, "uuid={uuid} peer={at}: not ready"),
            Err(e) => {
                Metrics::bump(&pairing.metrics.peer_failed);
                static W: OnceLock<RateLimit> = OnceLock::new();
                if W.get_or_init(|| RateLimit::new(Duration::from_secs(10))).ready() {
                    log::warn!(target: T, "link to node peer={at} failed: {e}");
                }
            }
        }
    }
    Remote::NotReady
}

/// The addresses of `at` (`HOST:PORT`) by `deadline`: an address at once;
/// a name on a thread of its own, so a slow resolver costs the request no
/// more than its deadline (the thread ends when the resolver answers).
fn resolve_by(at: &str, deadline: Instant) -> Result<Vec<SocketAddr>> {
    if let Ok(a) = at.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = at.to_string();
    crate::threads::spawn("peer-resolve".into(), move || {
        let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
    })
    .op("start resolver")?;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(r) => r.map_err(|e| Error::io("resolve peer", e)),
        Err(_) => Err(Error::Other(format!("{at}: no address by the pair timeout"))),
    }
}

/// One link, bounded by `deadline`: connect, TLS pinned to the cluster
/// key, the request with what is left of the deadline as its budget, and
/// the status line (read byte by byte, so no relayed byte is consumed).
/// The answer is awaited past `deadline` by one delivery's proof: the other
/// node may be proving a hidden server alive that has the request already,
/// and that pair must not be lost.
fn ask(pairing: &Pairing, peers: &Peers, at: &str, (uuid, first): (&Uuid, &[u8]), deadline: Instant) -> Result<Answer> {
    let within = |cap: Duration| deadline.saturating_duration_since(Instant::now()).min(cap);
    let mut last = None;
    let mut sock = None;
    for a in resolve_by(at, deadline)? {
        let left = within(PEER_CONNECT_TIMEOUT);
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let sock = match (sock, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(Error::io("connect to peer", e)),
        (None, None) => return Err(Error::Other(format!("{at}: no address, or no time left"))),
    };
    let _ = sock.set_nodelay(true);
    let _ = pairing.keepalive.apply(&sock);
    let handshake = Instant::now() + within(PEER_CONNECT_TIMEOUT);
    let mut tls = crate::tls::connect(sock, peers.keys.client.clone(), PEER_NAME, handshake)?;
    // The other node starts no delivery after the budget, and proves the
    // one it started within it: answer within those and a round trip.
    let budget = within(PEER_TAKE_WAIT);
    let wait = budget + FIRST_REQUEST_PAUSE + ACK_PROOF_MAX + PEER_ANSWER_SLACK;
    tls.sock.set_read_timeout(Some(wait)).op("set timeout")?;
    tls.sock.set_write_timeout(Some(wait)).op("set timeout")?;
    tls.write_all(&request(&peers.keys, uuid, budget, first)).op("send link request")?;
    tls.flush().op("send link request")?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() <= MAX_STATUS_LINE {
        match tls.read(&mut b) {
            Ok(0) => return Err(Error::Protocol("the node closed the link without an answer".into())),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read link answer", e)),
        }
    }
    match line.as_slice() {
        b"+OK" => {
            let _ = tls.sock.set_read_timeout(None);
            let _ = tls.sock.set_write_timeout(None);
            Ok(Some(Arc::new(TlsLeg::new(tls.conn, tls.sock))))
        }
        b"-ERR not ready" => Ok(None),
        _ => Err(Error::Protocol("unexpected link answer".into())),
    }
}
