//! The rendezvous server (plain TCP): a connection's first line, at most
//! [`MAX_COOKIE_LINE`] bytes, is `R<cookie>` (a hidden server's socket, parked
//! in its UUID's pool) or `I<cookie>` (a mobile client, paired with the oldest
//! live parked socket, then relayed). Answers `+OK` to both sides, or one of
//! `-ERR invalid cookie`, `-ERR not registered`, `-ERR not ready`, then closes.

use crate::limits::{MAX_COOKIE_LINE, REFUSAL_DRAIN, REFUSAL_DRAIN_BYTES};
use crate::relay::{self, First};
use crate::secret::{Cookie, Role};
use crate::server::accept::{Accepted, PreAuth, Unproven};
use crate::server::parked::{Parked, ParkedStream};
use crate::server::registry::Proto;
use crate::server::pairing::Pairing;
use crate::wire::err_line;
use crate::wire::parse_first_line;
use crate::wire::FirstLine;
use crate::wire::OK;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: &str = "rendezvous::rendezvous";

/// Why the first line could not be read.
#[derive(Debug)]
enum LineError {
    /// Too long, no newline, or not a cookie.
    Invalid,
    /// Timed out, closed or failed: nothing to answer.
    Gone(&'static str),
}

/// Read the first line by `deadline`. Returns the cookie and the bytes that
/// came after its line.
///
/// Never inlined: its 512-byte read buffer would otherwise sit in
/// `handle`'s frame, under the relay, for as long as the pair lasts, and
/// push the idle connection thread's stack onto a third page (measured with
/// `make bench`: 21.7 KiB of RSS per idle pair with it out of line, 24.9
/// KiB inlined).
#[inline(never)]
fn read_line(sock: &mut TcpStream, deadline: Instant) -> Result<(Cookie, Vec<u8>), LineError> {
    let mut buf = Vec::with_capacity(MAX_COOKIE_LINE);
    let mut chunk = [0u8; 512];
    loop {
        match parse_first_line(&buf) {
            FirstLine::Cookie { cookie, rest } => return Ok((cookie, buf.split_off(rest))),
            FirstLine::Invalid => return Err(LineError::Invalid),
            FirstLine::Incomplete => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return Err(LineError::Gone("cookie line timed out"));
        }
        match sock.read(&mut chunk) {
            Ok(0) => return Err(LineError::Gone("closed before the cookie line")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(LineError::Gone("cookie line timed out"))
            }
            Err(_) => return Err(LineError::Gone("read failed")),
        }
    }
}

/// Answer `line` (a `-ERR`) and close ([`end`]).
fn refuse(stream: &mut TcpStream, line: &[u8], drain: bool) {
    if stream.write_all(line).is_ok() {
        end(stream, drain);
    }
}

/// Close a connection whose cookie line was read gently: the FIN goes at
/// once (it acknowledges the line, so a client knows the line was read),
/// and, when `drain` (the connection holds a place among its address's
/// unauthenticated ones), what the client still sends is read and dropped
/// for a while (at most [`REFUSAL_DRAIN`], [`REFUSAL_DRAIN_BYTES`]), so the
/// close is no reset, which would kill a `-ERR` line still to be resent.
#[inline(never)]
fn end(stream: &mut TcpStream, drain: bool) {
    if stream.shutdown(Shutdown::Write).is_err() || !drain {
        return;
    }
    let until = Instant::now() + REFUSAL_DRAIN;
    let mut chunk = [0u8; 512];
    let mut left = REFUSAL_DRAIN_BYTES;
    while left > 0 {
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Serve one rendezvous connection.
pub fn handle(acc: Accepted, handshake_timeout: Duration, pairing: &Pairing) {
    let Accepted {
        mut stream,
        peer,
        id,
        slot,
        pre_auth,
    } = acc;
    let deadline = Instant::now() + handshake_timeout;
    let line = read_line(&mut stream, deadline);
    let (cookie, early) = match line {
        Ok(x) => x,
        Err(LineError::Invalid) => {
            log::debug!(target: T, "conn={id} peer={peer} invalid cookie line");
            refuse(&mut stream, err_line(None), true);
            return;
        }
        Err(LineError::Gone(why)) => {
            log::debug!(target: T, "conn={id} peer={peer} {why}");
            return;
        }
    };
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_nodelay(true);
    // The place among the address's unauthenticated connections is given
    // up once parked or paired, and held while a refusal drains.
    match cookie.role() {
        Role::Responder => park(pairing, cookie, (stream, pre_auth), early, peer, id, slot),
        Role::Initiator => pair(pairing, cookie, (stream, pre_auth), early, peer, id),
    }
}

fn park(
    pairing: &Pairing,
    cookie: Cookie,
    (stream, pre_auth): (TcpStream, PreAuth),
    early: Vec<u8>,
    peer: std::net::SocketAddr,
    id: u64,
    slot: crate::server::accept::ConnSlot,
) {
    let _ = pairing.keepalive.apply(&stream);
    let parked = Parked {
        stream: ParkedStream::Tcp(stream),
        early,
        peer,
        conn: id,
        slot,
        pause_until: None,
    };
    match pairing.registry.park(&cookie, Proto::Generic, parked) {
        Ok((uuid, evicted)) => {
            drop(pre_auth);
            log::debug!(target: T, "conn={id} parked uuid={uuid} proto=generic");
            if let Some(old) = evicted {
                pairing.evicted(uuid, old.conn, T);
            }
        }
        Err((why, mut p)) => {
            log::debug!(target: T, "conn={id} peer={peer} refused: {why:?}");
            if let ParkedStream::Tcp(s) = &mut p.stream {
                refuse(s, err_line(Some(why)), true);
            }
        }
    }
}

/// The responder for an initiator (`stream`, which sent `early` after its
/// cookie line), proven alive, with `early` sent to it; `None` once the
/// initiator was refused or closed.
///
/// A parked socket may be dead while the peek says it is open (a NAT
/// forgot it silently): the initiator gets +OK only once the responder
/// acknowledged its own +OK. Otherwise take the next one, within the same
/// deadline. The initiator's early bytes go to the proven one only: sent
/// before the proof, they could reach a hidden server whose
/// acknowledgement came late and then go again to the next one.
fn responder(
    pairing: &Pairing,
    cookie: &Cookie,
    stream: &mut TcpStream,
    early: &[u8],
    unproven: &Unproven,
    (peer, id): (std::net::SocketAddr, u64),
) -> Option<(uuid::Uuid, Parked)> {
    let deadline = Instant::now() + pairing.pair_timeout;
    loop {
        match pairing.registry.take(cookie, Proto::Generic, deadline) {
            Err(why) => {
                log::debug!(target: T, "conn={id} peer={peer} initiator refused: {why:?}");
                let place = unproven.again();
                refuse(stream, err_line(Some(why)), place.is_some());
                return None;
            }
            Ok((uuid, p)) => {
                let ParkedStream::Tcp(mut rs) = p.stream else {
                    continue;
                };
                if rs.write_all(OK).is_err() {
                    log::debug!(target: T, "conn={} parked socket failed on write", p.conn);
                    continue;
                }
                if pairing.proven(&rs, p.conn) {
                    // Failed, some may have arrived: no status, so the
                    // initiator does not send them again elsewhere (the
                    // FIN acknowledges its line: it was read).
                    if rs.write_all(early).is_err() {
                        let place = unproven.again();
                        end(stream, place.is_some());
                        return None;
                    }
                    let stream = ParkedStream::Tcp(rs);
                    return Some((uuid, Parked { stream, ..p }));
                }
            }
        }
    }
}

fn pair(
    pairing: &Pairing,
    cookie: Cookie,
    (mut stream, pre_auth): (TcpStream, PreAuth),
    early: Vec<u8>,
    peer: std::net::SocketAddr,
    id: u64,
) {
    // No place held while waiting for a responder; one again to drain.
    let unproven = pre_auth.release();
    let Some((uuid, responder)) = responder(pairing, &cookie, &mut stream, &early, &unproven, (peer, id))
    else {
        return;
    };
    let (early_up, early_down) = (early.len() as u64, responder.early.len() as u64);
    let mut hello = OK.to_vec();
    hello.extend_from_slice(&responder.early);
    if stream.write_all(&hello).is_err() {
        return;
    }
    // Keepalive once paired, not before: its five calls were on the path
    // to the +OK lines (the wait for a responder is bounded by the pair
    // timeout either way).
    let _ = pairing.keepalive.apply(&stream);
    let Parked {
        stream: ParkedStream::Tcp(rs),
        peer: rpeer,
        conn: rconn,
        slot: _rslot,
        ..
    } = responder
    else {
        return;
    };
    log::debug!(target: T, "conn={id} paired uuid={uuid} responder conn={rconn}");
    // Bytes that came with the cookie went with the +OK: the answer is next.
    let first = if early_up > 0 { First::Down } else { First::Up };
    let mut totals = relay::relay_first(Arc::new(stream), Arc::new(rs), Some(pairing.pairs), first);
    // Bytes sent before the pairing, forwarded with the +OK lines.
    totals.up += early_up;
    totals.down += early_down;
    pairing.pairs.account(&totals);
    log::info!(target: T,
        "pair done conn={id} uuid={uuid} proto=generic initiator={peer} responder={rpeer} up={} down={} secs={:.3}",
        totals.up, totals.down, totals.duration.as_secs_f64());
}
