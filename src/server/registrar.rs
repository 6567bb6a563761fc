//! The registrar: one HTTPS (or, with `--plaintext`, HTTP) connection per
//! thread, a keep-alive loop of request heads, and the dispatcher that applies
//! DESIGN's rules in order — CONNECT (hidden server, HTTP-specific),
//! Authorization (mobile client), Upgrade with `uuid=` (WebSocket mobile
//! client), `/.well-known/rendezvous/`, the generic API (`uuid=`), and
//! otherwise the 401 challenge. Every error response is written from here.

use crate::certs;
use crate::limits::{KEEPALIVE_IDLE, MAX_BODY_BYTES};
use crate::secret::{Cookie, Token};
use crate::server::accept::Accepted;
use crate::server::auth::authenticate;
use crate::server::conn::Conn;
use crate::server::http_protocol;
use crate::server::metrics::Metrics;
use crate::server::shared::Shared;
use crate::tls::{self};
use crate::wire::{ChunkError, Chunked, Framing, Head, HeadError, HeadReader, Response};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;
use uuid::Uuid;

const T: &str = "rendezvous::server::registrar";

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
    let mut pre_auth = Some(pre_auth);
    let mut slot = Some(slot);
    let deadline = Instant::now() + shared.cfg.handshake_timeout;
    let _ = stream.set_nodelay(true);
    let mut conn = match shared.tls() {
        None => Conn::Plain(stream),
        Some(config) => match tls::accept(stream, config, deadline) {
            Ok(s) => {
                log::debug!(target: T, "conn={id} tls handshake ok version={:?} suite={:?}",
                    s.conn.protocol_version(), s.conn.negotiated_cipher_suite().map(|c| c.suite()));
                Conn::Tls(Box::new(s))
            }
            Err(e) => {
                log::debug!(target: T, "conn={id} peer={peer} tls handshake failed: {e}");
                return;
            }
        },
    };
    let mut reader = HeadReader::new();
    let mut deadline = deadline;
    let mut first = true;
    loop {
        // Between keep-alive requests the connection may be closed to make
        // room at the global cap (the one idle longest goes first).
        let idle = (!first)
            .then(|| shared.conns.idle(id, conn.tcp()))
            .flatten();
        let read = reader.read_head(&mut conn, deadline);
        drop(idle);
        first = false;
        let head = match read {
            Ok(h) => h,
            Err(e) => {
                if let Some(status) = e.status() {
                    let _ = Response::error(status, true, e.reason()).write_to(&mut conn);
                }
                if !matches!(e, HeadError::Eof) {
                    log::debug!(target: T, "conn={id} peer={peer} closing: {}", e.reason());
                }
                close(conn);
                return;
            }
        };
        log::debug!(target: T, "conn={id} head {:?}", head.summary());
        // Where the body ends must be certain, or the next request's start
        // is not (RFC 9112 §6.3): refuse and close.
        let framing = match head.framing() {
            Ok(f) => f,
            Err(e) => {
                log::debug!(target: T, "conn={id} peer={peer} closing: {}", e.reason());
                let _ = Response::error(e.status(), true, e.reason()).write_to(&mut conn);
                close(conn);
                return;
            }
        };
        let response = match route(&head) {
            r @ (Route::HiddenConnect | Route::MobileAuthorization | Route::MobileUpgrade) => {
                let handed = match r {
                    Route::HiddenConnect => match slot.take() {
                        Some(slot) => http_protocol::hidden_connect(
                            shared,
                            &head,
                            conn,
                            &mut reader,
                            peer,
                            id,
                            slot,
                        ),
                        None => Some((conn, Response::error(500, false, "internal error"))),
                    },
                    Route::MobileAuthorization => {
                        match head
                            .header("authorization")
                            .and_then(crate::wire::authorization_uuid)
                        {
                            Some(uuid) => http_protocol::mobile(
                                shared,
                                &head,
                                uuid,
                                conn,
                                &mut reader,
                                (peer, id),
                                &mut pre_auth,
                            ),
                            None => {
                                Some((conn, Response::error(400, true, "malformed authorization")))
                            }
                        }
                    }
                    _ => match upgrade_uuid(&head) {
                        Some(uuid) => http_protocol::mobile(
                            shared,
                            &head,
                            uuid,
                            conn,
                            &mut reader,
                            (peer, id),
                            &mut pre_auth,
                        ),
                        None => Some((conn, Response::error(400, true, "malformed uuid"))),
                    },
                };
                // Handed off (parked or relayed): this thread is done.
                let Some((c, response)) = handed else {
                    return;
                };
                conn = c;
                response
            }
            other => match discard_body(framing, &mut reader, &mut conn, deadline) {
                Err(r) => r,
                Ok(()) => match other {
                    Route::WellKnown => well_known(shared, &head, peer),
                    Route::Api => api(shared, &head, peer, conn.tcp(), id),
                    _ => challenge(),
                },
            },
        };
        let close_after = response.close || !head.keep_alive();
        if response.write_to(&mut conn).is_err() || close_after {
            close(conn);
            return;
        }
        deadline = Instant::now() + KEEPALIVE_IDLE;
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
    let too_large = || Response::error(413, true, "body too large");
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
                    ChunkError::Malformed => Response::error(400, true, "malformed chunked body"),
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
            return Err(Response::error(408, true, "body timed out"));
        }
        match conn.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(Response::error(408, true, "body timed out"))
            }
            Ok(0) | Err(_) => return Err(Response::error(400, true, "body cut short")),
            Ok(n) => return Ok(n),
        }
    }
}

fn challenge() -> Response {
    let mut nonce = [0u8; 16];
    crate::random::fill(&mut nonce);
    let mut opaque = [0u8; 16];
    crate::random::fill(&mut opaque);
    let mut r = Response::error(401, false, "name the hidden server: user name = its UUID");
    r.close = false;
    r.with_header(
        "WWW-Authenticate",
        format!(
            "Digest realm=\"rendezvous\", qop=\"auth, auth-int\", nonce=\"{}\", opaque=\"{}\"",
            certs::hex(&nonce),
            certs::hex(&opaque)
        ),
    )
    .with_header("WWW-Authenticate", "Basic realm=\"rendezvous\"")
}

fn well_known(shared: &Shared, head: &Head, peer: SocketAddr) -> Response {
    match head.path() {
        "/.well-known/rendezvous/health" => Response::result(serde_json::json!({ "status": "ok" })),
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
        _ => Response::error(404, true, "no such endpoint"),
    }
}

/// The host a triple names: `--public-host`, else the client's `Host` (without
/// its port), else the address the client reached us on.
fn triple_host(shared: &Shared, head: &Head, sock: &TcpStream) -> Result<String, Response> {
    if let Some(h) = &shared.cfg.public_host {
        return Ok(h.clone());
    }
    if let Some(host) = head.header("host") {
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or("")
        } else {
            host.rsplit_once(':').map_or(host, |(h, _)| h)
        };
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
        return if ok {
            Ok(name.to_string())
        } else {
            Err(Response::error(400, true, "malformed Host"))
        };
    }
    sock.local_addr()
        .map(|a| a.ip().to_string())
        .map_err(|_| Response::error(500, false, "no local address"))
}

fn api(shared: &Shared, head: &Head, peer: SocketAddr, sock: &TcpStream, id: u64) -> Response {
    let query = head.query();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(uuid) = get("uuid").and_then(|u| Uuid::try_parse(u).ok()) else {
        return Response::error(400, true, "malformed uuid");
    };
    let Some(port) = shared.triple_port else {
        return Response::error(404, true, "not configured for the generic protocol");
    };
    let (response, cookie) = (get("response"), get("cookie"));
    if response.is_some() && cookie.is_some() {
        return Response::error(400, true, "give response or cookie, not both");
    }
    let allowed = if response.is_some() || cookie.is_some() {
        "PUT"
    } else {
        "GET"
    };
    if head.method != allowed {
        return Response::error(405, true, &format!("use {allowed} here"))
            .with_header("Allow", allowed);
    }
    let host = match triple_host(shared, head, sock) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let triple = |cookie: &Cookie, ttl: bool| {
        let mut v = serde_json::json!({ "host": host, "port": port, "cookie": cookie.expose() });
        if ttl {
            v["ttl"] = serde_json::json!(shared.cfg.cookie_ttl.as_secs());
        }
        Response::result(v)
    };
    if let Some(token) = response {
        return match authenticate(shared, uuid, &Token::new(token), peer.ip(), id) {
            Ok(c) => triple(&c, true),
            Err(r) => r,
        };
    }
    if let Some(text) = cookie {
        return match Cookie::parse(text).filter(|c| shared.registry.refresh(uuid, c).is_ok()) {
            Some(c) => {
                shared.security.cookie_success(uuid, peer.ip());
                log::debug!(target: T, "conn={id} cookie refreshed uuid={uuid}");
                triple(&c, true)
            }
            None => {
                Metrics::bump(&shared.metrics.auth_bad_cookie);
                log::info!(target: T, "conn={id} auth failed uuid={uuid} peer={peer} reason=bad-cookie");
                Response::error(401, false, "unknown or expired cookie")
            }
        };
    }
    match shared.registry.initiator_cookie(&uuid) {
        Some(c) => triple(&c, false),
        None => Response::error(404, false, "not registered"),
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
