//! The HTTP-specific protocol on the registrar. Hidden side: `CONNECT
//! uuid:ID?response=TKN` (or `?cookie=R…`) is answered `200 OK` with a
//! `Rendezvous-Cookie` header and the connection is parked in the UUID's HTTP
//! pool. Mobile side: a request naming a UUID in `Authorization` (Basic or
//! Digest) or, for WebSocket, in a `uuid=`/`rendezvous=` query parameter is
//! written to a waiting hidden server exactly as received minus
//! `Authorization`, followed by any body bytes already read; then the two
//! connections are relayed. Only that first head is rewritten.

use crate::relay::{self, Leg, TlsLeg};
use crate::secret::Cookie;
use crate::server::accept::{ConnSlot, PreAuth};
use crate::server::auth::Authn;
use crate::server::conn::Conn;
use crate::server::parked::{Parked, ParkedStream};
use crate::server::registry::Proto;
use crate::server::pairing::Pairing;
use crate::server::peer::link::{take_remote, Remote};
use crate::wire::parse_connect_target;
use crate::wire::strip_authorization;
use crate::wire::ConnectAuth;
use crate::wire::ConnectError;
use crate::wire::Refusal;
use crate::limits::FIRST_REQUEST_PAUSE;
use crate::wire::{Head, HeadReader, Response};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

const T: &str = "rendezvous::connect";

/// Turn a registrar connection into a relay leg.
pub fn into_leg(conn: Conn) -> Arc<dyn Leg> {
    match conn {
        Conn::Plain(s) => Arc::new(s),
        Conn::Tls(s) => {
            let s = *s;
            Arc::new(TlsLeg::new(s.conn, s.sock))
        }
    }
}

fn parked_into_leg(p: ParkedStream) -> Arc<dyn Leg> {
    match p {
        ParkedStream::Tcp(s) => Arc::new(s),
        ParkedStream::Tls(s) => {
            let s = *s;
            Arc::new(TlsLeg::new(s.conn, s.sock))
        }
    }
}

/// Whether any byte beyond the head has arrived (a 409 for `CONNECT`).
fn has_early_data(conn: &mut Conn, reader: &mut HeadReader) -> bool {
    if !reader.take_buffered().is_empty() {
        return true;
    }
    match conn {
        Conn::Tls(s) => {
            let mut b = [0u8; 1];
            matches!(s.conn.reader().read(&mut b), Ok(n) if n > 0)
        }
        Conn::Plain(_) => false,
    }
}

/// Whether the hidden server that sent `head` reads its `200` head exactly,
/// byte by byte, so a request written right behind it is safe: our own
/// agent, by its `User-Agent`. Others get [`FIRST_REQUEST_PAUSE`]: it cost
/// a request to a pool just refilled 45 to 49 ms at p99 (`cargo bench
/// --bench relay -- --chain-only`).
fn reads_head_exactly(head: &Head) -> bool {
    head.header("user-agent").is_some_and(|ua| ua.starts_with("rendezvous/"))
}

/// Handle `CONNECT` from a hidden server. Returns `Some(conn)` with a
/// response to write when the connection is refused; `None` once it is parked.
pub fn hidden_connect(
    (authn, pairing): (&Authn, &Pairing),
    head: &Head,
    mut conn: Conn,
    reader: &mut HeadReader,
    peer: SocketAddr,
    id: u64,
    slot: ConnSlot,
) -> Option<(Conn, Response)> {
    let (uuid, auth) = match parse_connect_target(&head.target) {
        Ok(x) => x,
        Err(e) => return Some((conn, e.response())),
    };
    if has_early_data(&mut conn, reader) {
        return Some((conn, ConnectError::EarlyData.response()));
    }
    let cookie = match auth {
        ConnectAuth::Token(token) => authn.token(uuid, &token, peer.ip(), id),
        ConnectAuth::Cookie(text) => {
            let valid = Cookie::parse(&text).filter(|c| pairing.registry.refresh(uuid, c, peer.ip()).is_ok());
            authn.cookie(valid, uuid, peer, id, T)
        }
    };
    let cookie = match cookie {
        Ok(c) => c,
        Err(r) => return Some((conn, r)),
    };
    // A 2xx answer to CONNECT carries no Content-Length (RFC 9110 §9.3.6).
    let ok = format!(
        "HTTP/1.1 200 OK\r\nRendezvous-Cookie: {}\r\n\r\n",
        cookie.expose()
    );
    if conn
        .write_all(ok.as_bytes())
        .and_then(|_| conn.flush())
        .is_err()
    {
        return None;
    }
    let _ = conn.tcp().set_read_timeout(None);
    let _ = pairing.keepalive.apply(conn.tcp());
    let stream = match conn {
        Conn::Plain(s) => ParkedStream::Tcp(s),
        Conn::Tls(s) => ParkedStream::Tls(s),
    };
    let parked = Parked {
        stream,
        early: Vec::new(),
        peer,
        conn: id,
        slot,
        pause_until: (!reads_head_exactly(head)).then(|| Instant::now() + FIRST_REQUEST_PAUSE),
    };
    match pairing.registry.park_uuid(uuid, Proto::Http, parked) {
        Ok(evicted) => {
            log::debug!(target: T, "conn={id} parked uuid={uuid} proto=http");
            if let Some(old) = evicted {
                pairing.evicted(uuid, old.conn, T);
            }
        }
        Err((why, p)) => {
            log::debug!(target: T, "conn={id} cannot park: {why:?}");
            let _ = p.stream.tcp().shutdown(std::net::Shutdown::Both);
        }
    }
    None
}

/// A parked `CONNECT` that took a request: its leg, peer, id and slot.
pub struct Delivered {
    /// The hidden server's connection, positioned after the request.
    pub leg: Arc<dyn Leg>,
    /// Its address.
    pub peer: SocketAddr,
    /// Its connection id.
    pub conn: u64,
    /// Its place in the connection count.
    pub slot: ConnSlot,
}

/// Write `first` (a request head and the body bytes read with it) to a
/// `CONNECT` of `uuid` parked here, taken by `deadline`. The head counts as
/// delivered only once the parked connection's peer acknowledged it (a NAT
/// may have forgotten it silently); until then the head is still ours, to
/// send to the next one. `None` when none took it by the deadline.
///
/// No delivery starts after `deadline` but the first (which may take one
/// already parked even when the deadline is now), so the answer comes at
/// most one [`FIRST_REQUEST_PAUSE`] and one proof
/// ([`ACK_PROOF_MAX`](crate::limits::ACK_PROOF_MAX)) after it: a node asked
/// over a link never writes a request after its asker stopped waiting.
pub fn deliver(pairing: &Pairing, uuid: &Uuid, first: &[u8], deadline: Instant, id: u64) -> Option<Delivered> {
    for tried in 0u64.. {
        if tried > 0 && Instant::now() >= deadline {
            return None;
        }
        let p = match pairing.registry.take_uuid(uuid, Proto::Http, deadline) {
            Ok(p) => p,
            Err(why) => {
                log::debug!(target: T, "conn={id} uuid={uuid} no hidden server here: {why:?}");
                return None;
            }
        };
        let (peer, conn, slot) = (p.peer, p.conn, p.slot);
        // A CONNECT taken as soon as it parked (a mobile client was
        // waiting) had its 200 written a moment ago: a hidden server that
        // reads the 200 and ignores what came with it (Node's `connect`
        // event) must get the request in a read of its own.
        if let Some(until) = p.pause_until {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        let leg = parked_into_leg(p.stream);
        if leg.write_all(first).is_err() {
            log::debug!(target: T, "conn={conn} parked connection failed on write");
            continue;
        }
        if pairing.proven(leg.socket(), conn) {
            return Some(Delivered { leg, peer, conn, slot });
        }
    }
    None
}

/// Where a mobile request went: a `CONNECT` parked here, or a link to the
/// node that holds one (whose address is given).
enum Responder {
    Here(Delivered),
    Linked(Arc<dyn Leg>, String),
}

/// Find a hidden server for `first`: this node's pool first, then the other
/// nodes holding `uuid` (with several nodes), in rounds until `deadline`,
/// waiting [`PEER_POLL`](crate::limits::PEER_POLL) on the own pool between
/// rounds; at once `None` when no node holds `uuid` and it is registered
/// nowhere.
fn find(pairing: &Pairing, uuid: &Uuid, first: &[u8], deadline: Instant, id: u64) -> Option<Responder> {
    let Some(peers) = pairing.peers else {
        return deliver(pairing, uuid, first, deadline, id).map(Responder::Here);
    };
    loop {
        if let Some(d) = deliver(pairing, uuid, first, Instant::now(), id) {
            return Some(Responder::Here(d));
        }
        match take_remote(pairing, peers, uuid, first, deadline) {
            Remote::Taken(leg, at) => return Some(Responder::Linked(leg, at)),
            // Registered nowhere (neither here nor in the store): no hidden
            // server will come within the pair timeout, so the slot is not
            // held for it. A registered one whose pool is empty for a
            // moment, or moving to another node, is waited for.
            Remote::NoHolder if pairing.registry.initiator_cookie(uuid).is_none() => return None,
            Remote::NoHolder | Remote::NotReady => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let until = (now + crate::limits::PEER_POLL).min(deadline);
        if let Some(d) = deliver(pairing, uuid, first, until, id) {
            return Some(Responder::Here(d));
        }
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
}

/// Hand a mobile client's request to a waiting hidden server and relay.
/// Returns a response to write (and the connection) when there is none.
/// `pre_auth` is the connection's place among the unauthenticated ones of
/// its address, given up once it is paired.
pub fn mobile(
    pairing: &Pairing,
    head: &Head,
    uuid: Uuid,
    conn: Conn,
    reader: &mut HeadReader,
    (peer, id): (SocketAddr, u64),
    pre_auth: &mut Option<PreAuth>,
) -> Option<(Conn, Response)> {
    let deadline = Instant::now() + pairing.pair_timeout;
    let mut first = strip_authorization(&head.raw);
    first.extend_from_slice(&reader.take_buffered());
    let Some(found) = find(pairing, &uuid, &first, deadline, id) else {
        log::debug!(target: T, "conn={id} uuid={uuid} no hidden server");
        return Some((conn, Refusal::NoHiddenServer.response()));
    };
    let _ = conn.tcp().set_read_timeout(None);
    let _ = pairing.keepalive.apply(conn.tcp());
    pre_auth.take();
    let (responder, rpeer, _rslot) = match found {
        Responder::Here(d) => {
            log::debug!(target: T, "conn={id} paired uuid={uuid} responder conn={}", d.conn);
            (d.leg, d.peer.to_string(), Some(d.slot))
        }
        Responder::Linked(leg, at) => {
            log::debug!(target: T, "conn={id} paired uuid={uuid} through node peer={at}");
            (leg, format!("node:{at}"), None)
        }
    };
    let initiator = into_leg(conn);
    let mut totals = relay::relay(initiator, responder, Some(pairing.pairs));
    // The forwarded head (and body bytes read with it) went up too.
    totals.up += first.len() as u64;
    pairing.pairs.account(&totals);
    log::info!(target: T,
        "pair done conn={id} uuid={uuid} proto=http initiator={peer} responder={rpeer} up={} down={} secs={:.3}",
        totals.up, totals.down, totals.duration.as_secs_f64());
    None
}
