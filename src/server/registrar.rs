//! The registrar: one HTTPS (or, with `--plaintext`, HTTP) connection per
//! thread, a keep-alive loop of request heads, and the dispatcher that applies
//! DESIGN's rules in order — CONNECT (hidden server, HTTP-specific),
//! Authorization (mobile client), Upgrade with `uuid=` (WebSocket mobile
//! client), `/.well-known/rendezvous/`, the generic API (`uuid=`), and
//! otherwise the 401 challenge. Rules 1-3 are handed to `http_protocol`,
//! rule 5 to `api`; every error response comes from `wire::status`.

use crate::certs;
use crate::limits::{KEEPALIVE_IDLE, MAX_BODY_BYTES};
use crate::server::accept::Accepted;
use crate::server::accept::ConnSlot;
use crate::server::accept::PreAuth;
use crate::server::conn::Conn;
use crate::server::http_protocol;
use crate::server::shared::Shared;
use crate::tls::{self};
use crate::wire::Refusal;
use crate::wire::{ChunkError, Chunked, Framing, Head, HeadError, HeadReader, Response};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;
use uuid::Uuid;

const T: &str = "rendezvous::registrar";

/// Which rule a request head matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// 1: `CONNECT uuid:ID?…` — a hidden server (HTTP-specific).
    HiddenConnect,
    /// 2: `Authorization: Basic|Digest` naming a UUID — a mobile client.
    MobileAuthorization,
    /// 3: `Upgrade:` with `uuid=`/`rendezvous=` — a WebSocket mobile client.
    MobileUpgrade,
    /// 4: `/.well-known/rendezvous/…`.
    WellKnown,
    /// 5: `uuid=` in the query — the generic registrar API.
    Api,
    /// 6: anything else — the 401 challenge.
    Challenge,
}

/// Rule 1: a `CONNECT` (its target is checked by the handler: 403 if it is
/// not `uuid:ID`).
fn is_hidden_connect(head: &Head) -> bool {
    head.method.eq_ignore_ascii_case("CONNECT")
}

/// Rule 2: `Authorization: Basic …` or `Digest …` (the UUID inside is
/// checked by the handler: 400 if malformed).
fn has_mobile_authorization(head: &Head) -> bool {
    head.header("authorization").is_some_and(|auth| {
        let scheme = auth.split_whitespace().next().unwrap_or("");
        scheme.eq_ignore_ascii_case("basic") || scheme.eq_ignore_ascii_case("digest")
    })
}

/// Rule 3: `Upgrade:` with a `uuid=` or `rendezvous=` query parameter (a
/// browser's WebSocket API cannot set `Authorization`).
fn is_mobile_upgrade(head: &Head) -> bool {
    head.header("upgrade").is_some() && {
        let query = head.query();
        query.iter().any(|(n, _)| n == "uuid" || n == "rendezvous")
    }
}

/// Rule 4: the server's own endpoints.
fn is_well_known(head: &Head) -> bool {
    head.path().starts_with("/.well-known/rendezvous/")
}

/// Rule 5: a `uuid=` query parameter: the generic registrar API.
fn names_uuid(head: &Head) -> bool {
    head.query().iter().any(|(n, _)| n == "uuid")
}

/// A dispatch rule: whether a head is its kind.
type Rule = fn(&Head) -> bool;

/// Rules 1 to 5, in order; the first that matches decides.
const RULES: [(Rule, Route); 5] = [
    (is_hidden_connect, Route::HiddenConnect),
    (has_mobile_authorization, Route::MobileAuthorization),
    (is_mobile_upgrade, Route::MobileUpgrade),
    (is_well_known, Route::WellKnown),
    (names_uuid, Route::Api),
];

/// Apply the dispatch rules, in order; rule 6 (the 401 challenge) takes
/// whatever the others leave.
pub fn route(head: &Head) -> Route {
    RULES
        .iter()
        .find(|(matches, _)| matches(head))
        .map_or(Route::Challenge, |(_, r)| *r)
}

/// Serve one registrar connection until it closes.
pub fn handle(acc: Accepted, shared: &Shared) {
    let Accepted {
        stream,
        peer,
        id,
        slot,
        pre_auth,
    } = acc;
    let deadline = Instant::now() + shared.cfg.handshake_timeout;
    let Some(conn) = handshake(shared, stream, (peer, id), deadline) else {
        return;
    };
    let mut session = Session {
        shared,
        peer,
        id,
        slot: Some(slot),
        pre_auth: Some(pre_auth),
        reader: HeadReader::new(),
    };
    session.serve(conn, deadline);
}

/// The TLS handshake (none with `--plaintext`) by `deadline`.
fn handshake(
    shared: &Shared,
    stream: TcpStream,
    (peer, id): (SocketAddr, u64),
    deadline: Instant,
) -> Option<Conn> {
    let _ = stream.set_nodelay(true);
    let Some(config) = shared.tls() else {
        return Some(Conn::Plain(stream));
    };
    match tls::accept(stream, config, deadline) {
        Ok(s) => {
            log::debug!(target: T, "conn={id} tls handshake ok version={:?} suite={:?}",
                s.conn.protocol_version(), s.conn.negotiated_cipher_suite().map(|c| c.suite()));
            Some(Conn::Tls(Box::new(s)))
        }
        Err(e) => {
            log::debug!(target: T, "conn={id} peer={peer} tls handshake failed: {e}");
            None
        }
    }
}

/// One registrar connection after its handshake: its keep-alive loop of
/// requests, until it closes or is handed off (parked or paired).
struct Session<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    id: u64,
    /// Its `--max-connections` slot, which a parked CONNECT takes along.
    slot: Option<ConnSlot>,
    /// Its place among the unauthenticated connections of its address.
    pre_auth: Option<PreAuth>,
    reader: HeadReader,
}

impl Session<'_> {
    fn serve(&mut self, mut conn: Conn, mut deadline: Instant) {
        let (id, peer) = (self.id, self.peer);
        let mut first = true;
        loop {
            // Between keep-alive requests the connection may be closed to
            // make room at the global cap (the one idle longest goes first).
            let idle = (!first)
                .then(|| self.shared.conns.idle(id, conn.tcp()))
                .flatten();
            let read = self.reader.read_head(&mut conn, deadline);
            drop(idle);
            first = false;
            let head = match read {
                Ok(h) => h,
                Err(e) => {
                    if let Some(refusal) = e.refusal() {
                        let _ = refusal.response().write_to(&mut conn);
                    }
                    if !matches!(e, HeadError::Eof) {
                        log::debug!(target: T, "conn={id} peer={peer} closing: {e}");
                    }
                    return close(conn);
                }
            };
            log::debug!(target: T, "conn={id} head {:?}", head.summary());
            // Where the body ends must be certain, or the next request's
            // start is not (RFC 9112 §6.3): refuse and close.
            let framing = match head.framing() {
                Ok(f) => f,
                Err(e) => {
                    log::debug!(target: T, "conn={id} peer={peer} closing: {}", e.reason());
                    let _ = e.refusal().response().write_to(&mut conn);
                    return close(conn);
                }
            };
            let response = match route(&head) {
                r @ (Route::HiddenConnect | Route::MobileAuthorization | Route::MobileUpgrade) => {
                    // Handed off (parked or relayed): this thread is done.
                    let Some((c, response)) = self.hand_off(r, &head, conn) else {
                        return;
                    };
                    conn = c;
                    response
                }
                other => self.answer(other, &head, framing, &mut conn, deadline),
            };
            let close_after = response.close || !head.keep_alive();
            if response.write_to(&mut conn).is_err() || close_after {
                return close(conn);
            }
            deadline = Instant::now() + KEEPALIVE_IDLE;
        }
    }

    /// Rules 1 to 3, the HTTP-specific protocol: `None` once the connection
    /// is parked or paired, else the connection and the response to write.
    fn hand_off(&mut self, route: Route, head: &Head, conn: Conn) -> Option<(Conn, Response)> {
        let (shared, peer, id) = (self.shared, self.peer, self.id);
        let uuid = match route {
            Route::HiddenConnect => {
                return match self.slot.take() {
                    Some(slot) => http_protocol::hidden_connect(
                        (&shared.authn(), &shared.pairing()),
                        head,
                        conn,
                        &mut self.reader,
                        peer,
                        id,
                        slot,
                    ),
                    None => Some((conn, Refusal::Internal.response())),
                };
            }
            Route::MobileAuthorization => head
                .header("authorization")
                .and_then(crate::wire::authorization_uuid)
                .ok_or(Refusal::MalformedAuthorization),
            _ => upgrade_uuid(head).ok_or(Refusal::MalformedUuid),
        };
        match uuid {
            Ok(uuid) => http_protocol::mobile(
                &shared.pairing(),
                head,
                uuid,
                conn,
                &mut self.reader,
                (peer, id),
                &mut self.pre_auth,
            ),
            Err(why) => Some((conn, why.response())),
        }
    }

    /// Rules 4 to 6, answered here after the body is read.
    fn answer(
        &mut self,
        route: Route,
        head: &Head,
        framing: Framing,
        conn: &mut Conn,
        deadline: Instant,
    ) -> Response {
        if let Err(r) = discard_body(framing, &mut self.reader, conn, deadline) {
            return r;
        }
        match route {
            Route::WellKnown => well_known(self.shared, head, self.peer),
            Route::Api => {
                crate::server::api::api(&self.shared.api(), head, self.peer, conn.tcp(), self.id)
            }
            _ => challenge(),
        }
    }
}

/// The UUID a WebSocket request names in `uuid=` (or `rendezvous=`).
fn upgrade_uuid(head: &Head) -> Option<Uuid> {
    let q = head.query();
    q.iter()
        .find(|(k, _)| k == "uuid")
        .or_else(|| q.iter().find(|(k, _)| k == "rendezvous"))
        .and_then(|(_, v)| Uuid::try_parse(v).ok())
}

fn close(mut conn: Conn) {
    if let Conn::Tls(s) = &mut conn {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    let _ = conn.tcp().shutdown(std::net::Shutdown::Write);
}

/// Read and drop a request body, `Content-Length` or chunked, at most
/// [`MAX_BODY_BYTES`] of data by `deadline`. Bytes read past its end (a
/// pipelined request) go back to `reader`.
fn discard_body(
    framing: Framing,
    reader: &mut HeadReader,
    conn: &mut Conn,
    deadline: Instant,
) -> Result<(), Response> {
    let too_large = || Refusal::BodyTooLarge.response();
    match framing {
        Framing::None => Ok(()),
        Framing::Length(len) => {
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_BODY_BYTES)
                .ok_or_else(too_large)?;
            let mut left = len - reader.consume(len);
            let mut buf = [0u8; 4096];
            while left > 0 {
                let n = read_body(conn, &mut buf[..left.min(4096)], deadline)?;
                left -= n;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut dec = Chunked::new(MAX_BODY_BYTES as u64);
            let mut bytes = reader.take_buffered();
            let mut buf = [0u8; 4096];
            loop {
                let used = dec.feed(&bytes).map_err(|e| match e {
                    ChunkError::TooLarge => too_large(),
                    ChunkError::Malformed => Refusal::MalformedChunkedBody.response(),
                })?;
                if dec.done() {
                    reader.unread(&bytes[used..]);
                    return Ok(());
                }
                let n = read_body(conn, &mut buf, deadline)?;
                bytes.clear();
                bytes.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// One read of body bytes by `deadline`; `Ok(n)` with `n > 0`.
fn read_body(conn: &mut Conn, buf: &mut [u8], deadline: Instant) -> Result<usize, Response> {
    loop {
        let t = deadline.saturating_duration_since(Instant::now());
        if t.is_zero() || conn.tcp().set_read_timeout(Some(t)).is_err() {
            return Err(Refusal::BodyTimedOut.response());
        }
        match conn.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(Refusal::BodyTimedOut.response())
            }
            Ok(0) | Err(_) => return Err(Refusal::BodyCutShort.response()),
            Ok(n) => return Ok(n),
        }
    }
}

fn challenge() -> Response {
    let mut nonce = [0u8; 16];
    crate::random::fill(&mut nonce);
    let mut opaque = [0u8; 16];
    crate::random::fill(&mut opaque);
    Refusal::Challenge
        .response()
        .with_header(
            "WWW-Authenticate",
            format!(
                "Digest realm=\"rendezvous\", qop=\"auth, auth-int\", nonce=\"{}\", opaque=\"{}\"",
                certs::hex(&nonce),
                certs::hex(&opaque)
            ),
        )
        .with_header("WWW-Authenticate", "Basic realm=\"rendezvous\"")
}

/// `{"status": "ok"}`; a node adds its id and whether it holds its lease
/// (which it renewed through the store), and answers 503 without one, so a
/// load balancer takes it out.
fn health(shared: &Shared) -> Response {
    let Some(node) = &shared.node else {
        return Response::result(serde_json::json!({ "status": "ok" }));
    };
    let leased = node.leased();
    let status = if leased { "ok" } else { "no-lease" };
    let store = shared.store.reachable();
    let mut r = Response::result(serde_json::json!({ "status": status, "node": node.id, "lease": leased, "store": store }));
    if !leased {
        r.status = 503;
    }
    r
}

fn well_known(shared: &Shared, head: &Head, peer: SocketAddr) -> Response {
    match head.path() {
        "/.well-known/rendezvous/health" => health(shared),
        "/.well-known/rendezvous/metrics"
            if shared.cfg.metrics_listen.is_none()
                && shared
                    .cfg
                    .metrics_from
                    .iter()
                    .any(|c| c.contains(peer.ip())) =>
        {
            crate::server::metrics::response(shared.metrics_page())
        }
        // Outside --metrics-from, or with a metrics listener of its own, the
        // endpoint does not exist here.
        _ => Refusal::NoSuchEndpoint.response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::HeadReader;

    fn head(text: &str) -> Head {
        HeadReader::new()
            .feed(text.replace('\n', "\r\n").as_bytes())
            .expect("well-formed")
            .expect("complete")
    }

    /// Where two rules could both apply, the earlier one decides.
    #[test]
    fn the_first_matching_rule_decides() {
        let u = "35b1f781-d9a7-4fd2-8331-ffb56d9c1a6e";
        let cases = [
            // 1 before 2 and 5.
            (
                format!("CONNECT uuid:{u}?uuid={u} HTTP/1.1\nAuthorization: Basic eA==\n\n"),
                Route::HiddenConnect,
            ),
            // 1 whatever the target: the handler answers 403.
            (
                "CONNECT example.com:443 HTTP/1.1\n\n".to_string(),
                Route::HiddenConnect,
            ),
            // 2 before 3, 4 and 5.
            (
                format!("GET /.well-known/rendezvous/health?uuid={u} HTTP/1.1\nAuthorization: Digest username=\"{u}\"\nUpgrade: websocket\n\n"),
                Route::MobileAuthorization,
            ),
            // Another scheme is not rule 2.
            (
                format!("GET /?uuid={u} HTTP/1.1\nAuthorization: Bearer x\n\n"),
                Route::Api,
            ),
            // 3 before 4 and 5, by either parameter.
            (
                format!("GET /.well-known/rendezvous/x?uuid={u} HTTP/1.1\nUpgrade: websocket\n\n"),
                Route::MobileUpgrade,
            ),
            (
                format!("GET /chat?rendezvous={u} HTTP/1.1\nUpgrade: websocket\n\n"),
                Route::MobileUpgrade,
            ),
            // Upgrade without a UUID is not rule 3.
            (
                "GET /chat HTTP/1.1\nUpgrade: websocket\n\n".to_string(),
                Route::Challenge,
            ),
            // 4 before 5.
            (
                format!("GET /.well-known/rendezvous/health?uuid={u} HTTP/1.1\n\n"),
                Route::WellKnown,
            ),
            (format!("PUT /?uuid={u}&response=1 HTTP/1.1\n\n"), Route::Api),
            // `rendezvous=` alone is not rule 5.
            (
                format!("GET /?rendezvous={u} HTTP/1.1\n\n"),
                Route::Challenge,
            ),
            ("GET / HTTP/1.1\n\n".to_string(), Route::Challenge),
        ];
        for (text, want) in cases {
            assert_eq!(route(&head(&text)), want, "{text}");
        }
    }
}
