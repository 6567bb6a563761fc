//! The asking side of a link: the node that received a mobile request asks
//! each other node holding the UUID's parked `CONNECT`s, in turn, for one.

use super::keys::PEER_NAME;
use super::peers::Peers;
use super::wire::{request, T};
use crate::error::{Error, IoResultExt, Result};
use crate::limits::{ACK_PROOF_MAX, MAX_STATUS_LINE, PEER_CONNECT_TIMEOUT, PEER_FIRST_MAX, PEER_TAKE_WAIT};
use crate::ratelimit::RateLimit;
use crate::relay::{Leg, TlsLeg};
use crate::server::metrics::Metrics;
use crate::server::pairing::Pairing;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A link's answer: a relay leg to the hidden server, or not ready.
type Answer = Option<Arc<dyn Leg>>;

/// Ask the other nodes holding `uuid`'s parked `CONNECT`s, in random order,
/// for one that takes `first`; the link to relay with and the node's
/// address, or `None` when none had one ready (or the store did not say
/// who holds it). Stops at `deadline`.
pub fn take_remote(
    pairing: &Pairing,
    peers: &Peers,
    uuid: &Uuid,
    first: &[u8],
    deadline: Instant,
) -> Option<(Arc<dyn Leg>, String)> {
    if first.len() > PEER_FIRST_MAX {
        return None;
    }
    for at in peers.node.http_holders(uuid) {
        if Instant::now() >= deadline {
            return None;
        }
        match ask(pairing, peers, &at, (uuid, first)) {
            Ok(Some(leg)) => {
                Metrics::bump(&pairing.metrics.peer_forwarded);
                return Some((leg, at));
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
    None
}

/// One link: connect, TLS pinned to the cluster key, the request, and the
/// status line (read byte by byte, so no relayed byte is consumed).
fn ask(pairing: &Pairing, peers: &Peers, at: &str, (uuid, first): (&Uuid, &[u8])) -> Result<Answer> {
    let addrs: Vec<_> = at.to_socket_addrs().map_err(|e| Error::io("resolve peer", e))?.collect();
    let mut last = None;
    let mut sock = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, PEER_CONNECT_TIMEOUT) {
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
        (None, None) => return Err(Error::Other(format!("{at}: no address"))),
    };
    let _ = sock.set_nodelay(true);
    let _ = pairing.keepalive.apply(&sock);
    // The other node waits for a parked CONNECT of its own, then proves it
    // alive: answer within those and a few round trips.
    let wait = PEER_TAKE_WAIT + ACK_PROOF_MAX + PEER_CONNECT_TIMEOUT;
    sock.set_read_timeout(Some(wait)).op("set timeout")?;
    sock.set_write_timeout(Some(wait)).op("set timeout")?;
    let mut tls = crate::tls::connect(sock, peers.keys.client.clone(), PEER_NAME, Instant::now() + PEER_CONNECT_TIMEOUT)?;
    tls.write_all(&request(&peers.keys, uuid, first)).op("send link request")?;
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
