//! The answering side of a link: `--peer-listen`. A connection must finish
//! its TLS handshake and send an authentic request within
//! `--handshake-timeout`, like any other before it proved a credential;
//! then it gets one of this node's parked `CONNECT`s, relayed, or
//! `-ERR not ready`.

use super::peers::Peers;
use super::wire::{Take, T};
use crate::limits::PEER_LINE_MAX;
use crate::ratelimit::RateLimit;
use crate::relay;
use crate::server::accept::Accepted;
use crate::server::conn::Conn;
use crate::server::http_protocol::{deliver, into_leg};
use crate::server::metrics::Metrics;
use crate::server::shared::Shared;
use std::io::{self, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One read by `deadline` (one socket read at a time: a peer trickling
/// bytes is cut at the deadline, not per read).
fn read_by(conn: &mut Conn, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        conn.tcp().set_read_timeout(Some(left))?;
        match conn.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// The request line and the bytes it announces, by `deadline`; `None` for
/// anything short, long or malformed.
fn read_request(conn: &mut Conn, deadline: Instant) -> Option<(Take, Vec<u8>)> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match read_by(conn, &mut b, deadline) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) if line.len() < PEER_LINE_MAX => line.push(b[0]),
            _ => return None,
        }
    }
    let take = Take::parse(std::str::from_utf8(&line).ok()?)?;
    // Grown as bytes arrive: a peer that has not proved the secret yet
    // holds no more memory than it sent.
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while first.len() < take.len {
        let want = (take.len - first.len()).min(buf.len());
        match read_by(conn, &mut buf[..want], deadline) {
            Ok(0) | Err(_) => return None,
            Ok(n) => first.extend_from_slice(&buf[..n]),
        }
    }
    Some((take, first))
}

/// A refused link request: counted, and warned about at most every 10 s
/// (a node with another cluster secret, or clocks far apart).
fn refused(shared: &Shared, peer: std::net::SocketAddr, id: u64) {
    Metrics::bump(&shared.metrics.peer_refused);
    static W: OnceLock<RateLimit> = OnceLock::new();
    if W.get_or_init(|| RateLimit::new(Duration::from_secs(10))).ready() {
        log::warn!(target: T,
            "link request refused peer={peer}: malformed, or not signed with this cluster's secret, or its clock is more than 30 s off");
    }
    log::debug!(target: T, "conn={id} link request refused");
}

/// Serve one connection of the peer listener.
pub fn handle(acc: Accepted, shared: &Shared) {
    let Accepted {
        stream,
        peer,
        id,
        slot: _slot,
        pre_auth,
    } = acc;
    let Some(peers): Option<&Peers> = shared.peers.as_ref() else {
        return;
    };
    let deadline = Instant::now() + shared.cfg.handshake_timeout;
    let mut conn = match crate::tls::accept(stream, peers.keys.server.clone(), deadline) {
        Ok(s) => Conn::Tls(Box::new(s)),
        Err(e) => {
            log::debug!(target: T, "conn={id} peer={peer} link handshake failed: {e}");
            return;
        }
    };
    let Some((take, first)) = read_request(&mut conn, deadline).filter(|(t, f)| t.authentic(&peers.keys, f)) else {
        refused(shared, peer, id);
        return;
    };
    drop(pre_auth);
    let uuid = take.uuid;
    let pairing = shared.pairing();
    // No delivery starts after the asker's budget: it stops waiting soon
    // after, and a request written then would be answered to nobody.
    let Some(d) = deliver(&pairing, &uuid, &first, Instant::now() + take.budget(), id) else {
        let _ = conn.write_all(b"-ERR not ready\n").and_then(|_| conn.flush());
        return;
    };
    if conn.write_all(b"+OK\n").and_then(|_| conn.flush()).is_err() {
        // The request went to the hidden server, but the asking node is
        // gone: the pair cannot be made; close the hidden server's side.
        let _ = d.leg.socket().shutdown(std::net::Shutdown::Both);
        return;
    }
    Metrics::bump(&shared.metrics.peer_served);
    let _ = conn.tcp().set_read_timeout(None);
    let _ = pairing.keepalive.apply(conn.tcp());
    let mut totals = relay::relay(into_leg(conn), d.leg, Some(pairing.pairs));
    totals.up += first.len() as u64;
    pairing.pairs.account(&totals);
    log::info!(target: T,
        "pair done conn={id} uuid={uuid} proto=http initiator=node:{peer} responder={} up={} down={} secs={:.3}",
        d.peer, totals.up, totals.down, totals.duration.as_secs_f64());
}
