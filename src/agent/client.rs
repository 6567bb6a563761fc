//! The client's view of the registrar: requests (register with a token,
//! refresh with a cookie, look up, health) with the registrar's clock read
//! from its `Date`. The rendezvous server's side is `rendezvous.rs`.

use crate::agent::settings::ServerUrl;
use crate::error::{AuthFailure, Error, IoResultExt, Result, Timeout};
use crate::limits::{CLIENT_TIMEOUT, REGISTRAR_FAILOVER_CONNECT};
use crate::tls::{self, Trust};
use crate::wire::TakeError;
use crate::wire::{read_response, ClientResponse};
use crate::wire::{Refusal, Triple};
use rustls::ClientConfig;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Talks to the registrar: one connection per request. With several
/// registrar URLs (several nodes and no load balancer in front) it starts
/// at a random one and moves on to the next when one cannot be reached.
#[derive(Clone)]
pub struct Registrar {
    urls: Arc<[ServerUrl]>,
    /// The URL that answered last (where the next request goes first).
    current: Arc<AtomicUsize>,
    tls: Option<Arc<ClientConfig>>,
    /// The registrar's clock minus ours, in seconds, from the `Date` of its
    /// last answer; [`NO_SKEW`] until one carried a date.
    skew: Arc<AtomicI64>,
}

const NO_SKEW: i64 = i64::MIN;

/// The `Host` header value naming `url`.
fn host_header(url: &ServerUrl) -> String {
    if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    }
}

pub(super) fn connect_any(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    match crate::agent::resolve::connect_host(host, port, timeout) {
        Ok(s) => Ok(s),
        Err(Ok(e)) => Err(Error::io("resolve host", e)),
        Err(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Err(Error::Timeout(Timeout::Connect)),
        Err(Err(e)) => Err(Error::io("connect", e)),
    }
}

/// A connection to the registrar: plain (`http://`) or TLS.
#[derive(Debug)]
pub enum ClientConn {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<tls::ClientStream>),
}

impl ClientConn {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientConn::Plain(s) => s,
            ClientConn::Tls(s) => s.get_ref(),
        }
    }

    /// Turn it into a relay leg.
    pub fn into_leg(self) -> Arc<dyn crate::relay::Leg> {
        match self {
            ClientConn::Plain(s) => Arc::new(s),
            ClientConn::Tls(s) => {
                let s = *s;
                Arc::new(crate::relay::TlsLeg::new(s.conn, s.sock))
            }
        }
    }
}

impl Read for ClientConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientConn::Plain(s) => s.read(buf),
            ClientConn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ClientConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientConn::Plain(s) => s.write(buf),
            ClientConn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientConn::Plain(s) => s.flush(),
            ClientConn::Tls(s) => s.flush(),
        }
    }
}

impl Registrar {
    /// Open a connection (TCP, then TLS for `https://`), with timeouts set,
    /// to the registrar that answered last, else to the next that does;
    /// with the `Host` header value naming it.
    /// The index of the registrar is for [`Registrar::failed`].
    pub fn open(&self) -> Result<(ClientConn, String, usize)> {
        let (conn, host) = self.each(|url| Ok((self.open_url(url)?, host_header(url))), |_| None)?;
        Ok((conn, host, self.current.load(Ordering::Relaxed)))
    }

    /// `attempt` at the registrar that answered last; on an error, or an
    /// answer `moves_on` rejects, at the next, each once. The last one's
    /// answer is returned whatever it is.
    fn each<A>(&self, attempt: impl Fn(&ServerUrl) -> Result<A>, moves_on: impl Fn(&A) -> Option<String>) -> Result<A> {
        let n = self.urls.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let at = (first + i) % n;
            let url = &self.urls[at];
            let failed = match attempt(url) {
                Ok(a) => match moves_on(&a) {
                    Some(why) if i + 1 < n => Error::Other(why),
                    _ => {
                        if i > 0 {
                            log::info!(target: "rendezvous::client", "registrar {url} answers; using it");
                        }
                        self.current.store(at, Ordering::Relaxed);
                        return Ok(a);
                    }
                },
                Err(e) if n > 1 => e,
                Err(e) => return Err(e),
            };
            log::warn!(target: "rendezvous::client", "registrar {url}: {failed}; trying the next");
            last = Some(failed);
        }
        Err(last.unwrap_or_else(|| Error::Usage("no registrar URL".into())))
    }

    fn open_url(&self, url: &ServerUrl) -> Result<ClientConn> {
        let connect = if self.urls.len() > 1 {
            REGISTRAR_FAILOVER_CONNECT
        } else {
            CLIENT_TIMEOUT
        };
        let sock = connect_any(&url.host, url.port, connect)?;
        let _ = sock.set_nodelay(true);
        sock.set_read_timeout(Some(CLIENT_TIMEOUT))
            .op("set timeout")?;
        sock.set_write_timeout(Some(CLIENT_TIMEOUT))
            .op("set timeout")?;
        Ok(match &self.tls {
            Some(cfg) => {
                let deadline = Instant::now() + CLIENT_TIMEOUT;
                ClientConn::Tls(Box::new(tls::connect(sock, cfg.clone(), &url.host, deadline)?))
            }
            None => ClientConn::Plain(sock),
        })
    }

    /// A client for `url` trusting `trust` (tests and the benchmark).
    #[cfg(any(test, feature = "internals"))]
    pub fn new(url: ServerUrl, trust: &Trust) -> Result<Registrar> {
        Registrar::several(vec![url], trust)
    }

    /// A client for several registrars (the nodes of one cluster), trusting
    /// `trust`; it starts at a random one.
    pub fn several(urls: Vec<ServerUrl>, trust: &Trust) -> Result<Registrar> {
        if urls.is_empty() {
            return Err(Error::Usage("no registrar URL".into()));
        }
        if urls.iter().any(|u| u.tls != urls[0].tls) {
            return Err(Error::Usage("registrar URLs must all be https:// or all http://".into()));
        }
        let tls = if urls[0].tls {
            Some(tls::client_config(trust)?)
        } else {
            None
        };
        let start = (crate::random::u64() % urls.len() as u64) as usize;
        Ok(Registrar {
            urls: urls.into(),
            current: Arc::new(AtomicUsize::new(start)),
            tls,
            skew: Arc::new(AtomicI64::new(NO_SKEW)),
        })
    }

    /// One request, at the registrar that answered last; after a failure to
    /// connect, a failed or timed-out exchange, or a 5xx (a node that lost
    /// its store), at the next, each once.
    fn exchange(&self, method: &str, target: &str) -> Result<ClientResponse> {
        self.each(
            |url| self.exchange_at(url, method, target),
            |r| (r.status >= 500).then(|| format!("answered {}", r.status)),
        )
    }

    fn exchange_at(&self, url: &ServerUrl, method: &str, target: &str) -> Result<ClientResponse> {
        self.send(self.open_url(url)?, url, method, target)
    }

    /// A request spending a token (`PUT ?response=`): once sent it is not
    /// sent again elsewhere, where the token, used at the first registrar
    /// through the shared store, would be refused as replayed (and count
    /// towards the lockout). Only a registrar that cannot be connected to
    /// is left for the next.
    fn exchange_once(&self, method: &str, target: &str) -> Result<ClientResponse> {
        let (conn, _, at) = self.open()?;
        self.send(conn, &self.urls[at], method, target)
    }

    fn send(&self, mut conn: ClientConn, url: &ServerUrl, method: &str, target: &str) -> Result<ClientResponse> {
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rendezvous/{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            host_header(url),
            env!("CARGO_PKG_VERSION")
        );
        conn.write_all(req.as_bytes()).op("send request")?;
        let resp = read_response(&mut conn).op("read response")?;
        self.note_date(resp.header("date"));
        Ok(resp)
    }

    /// Registrar `at` (as [`Registrar::open`] gave it) failed in a way only
    /// its connection shows (a `CONNECT` unanswered or answered 5xx): the
    /// next request starts at the next one. Several threads failing at the
    /// same registrar move on once, not once each (which could come round
    /// to it again).
    pub fn failed(&self, at: usize) {
        let n = self.urls.len();
        if n > 1 {
            let _ = self.current.compare_exchange(at, (at + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Record the registrar's clock from a `Date` header value (ignored when
    /// absent or not an IMF-fixdate).
    pub fn note_date(&self, date: Option<&str>) {
        if let Some(server) = date.and_then(crate::wire::parse_http_date) {
            let skew = i64::try_from(server).unwrap_or(i64::MAX)
                - i64::try_from(crate::totp::now()).unwrap_or(i64::MAX);
            self.skew.store(skew, Ordering::Relaxed);
        }
    }

    /// The registrar's clock minus ours, in seconds (±1 s), as its last
    /// answer with a `Date` showed; `None` before any.
    pub fn clock_skew(&self) -> Option<i64> {
        Some(self.skew.load(Ordering::Relaxed)).filter(|&s| s != NO_SKEW)
    }

    /// `GET /.well-known/rendezvous/health`: is the registrar up? Also
    /// measures [`Registrar::clock_skew`] without spending a token.
    pub fn health(&self) -> Result<()> {
        let resp = self.exchange("GET", "/.well-known/rendezvous/health")?;
        match resp.status {
            200 => Ok(()),
            s => Err(Error::Other(format!("registrar health answered {s}"))),
        }
    }

    fn triple(&self, method: &str, target: &str, auth: AuthFailure) -> Result<Triple> {
        // A token is spent once: see `exchange_once`.
        let resp = if auth == AuthFailure::BadToken {
            self.exchange_once(method, target)?
        } else {
            self.exchange(method, target)?
        };
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        // A body with an `error` member is that error whatever the status:
        // the original answers some errors (an unknown UUID) with 200.
        let error = body.get("error").filter(|e| !e.is_null());
        if resp.status == 200 && error.is_none() {
            return serde_json::from_value(body["result"].clone())
                .map_err(|_| Error::Protocol("registrar sent no triple".into()));
        }
        let diag: String = error
            .and_then(|e| e["diagnostic"].as_str().or(e.as_str()))
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let status = match resp.status {
            200 => Refusal::by_text(&diag).map_or(0, |r| r.status()),
            s => s,
        };
        // Read by the server's own status table; by the status alone for a
        // registrar that words its errors otherwise (the original).
        match (Refusal::parse(status, &diag), status) {
            (Some(Refusal::AuthenticationFailed), _) => Err(Error::Auth(AuthFailure::BadToken)),
            (Some(Refusal::UnknownCookie), _) => Err(Error::Auth(AuthFailure::BadCookie)),
            (Some(Refusal::TooManyFailures), _) | (None, 429) => {
                Err(Error::Auth(AuthFailure::LockedOut))
            }
            (None, 401) => Err(Error::Auth(auth)),
            (_, 404) => Err(Error::Other(format!("registrar: not registered ({diag})"))),
            (_, 0) => Err(Error::Other(format!("registrar: {diag}"))),
            (_, s) => Err(Error::Other(format!("registrar answered {s}: {diag}"))),
        }
    }

    /// `PUT ?uuid=&response=`: register with a token; returns an `R` triple.
    pub fn register(&self, uuid: &Uuid, token: &str) -> Result<Triple> {
        self.triple(
            "PUT",
            &format!("/?uuid={}&response={token}", uuid.hyphenated()),
            AuthFailure::BadToken,
        )
    }

    /// `PUT ?uuid=&cookie=`: renew an `R` cookie.
    pub fn refresh(&self, uuid: &Uuid, cookie: &str) -> Result<Triple> {
        self.refresh_avoiding(uuid, cookie, None)
    }

    /// `PUT ?uuid=&cookie=&avoid=HOST:PORT`: renew an `R` cookie, saying
    /// that the rendezvous server at `avoid` cannot be reached, so a triple
    /// naming another is wanted (a registrar that does not know `avoid`
    /// ignores it).
    pub fn refresh_avoiding(&self, uuid: &Uuid, cookie: &str, avoid: Option<&str>) -> Result<Triple> {
        let avoid = avoid.map_or(String::new(), |a| format!("&avoid={a}"));
        self.triple(
            "PUT",
            &format!("/?uuid={}&cookie={cookie}{avoid}", uuid.hyphenated()),
            AuthFailure::BadCookie,
        )
    }

    /// `GET ?uuid=`: the `I` triple of a registered hidden server.
    pub fn lookup(&self, uuid: &Uuid) -> Result<Triple> {
        self.triple(
            "GET",
            &format!("/?uuid={}", uuid.hyphenated()),
            AuthFailure::BadCookie,
        )
    }
}

/// Why dialling the rendezvous server did not give a paired socket.
#[derive(Debug)]
pub enum DialError {
    /// `-ERR not registered` / `-ERR not ready`.
    Refused(TakeError),
    /// `-ERR invalid cookie` or an unexpected line.
    Invalid(String),
    /// Connect, write or read failed (or the server closed).
    Io(Error),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Refused(TakeError::NotRegistered) => {
                f.write_str("rendezvous: not registered")
            }
            DialError::Refused(TakeError::NotReady) => {
                f.write_str("rendezvous: not ready (no hidden server waiting)")
            }
            DialError::Invalid(l) => write!(f, "rendezvous: {l}"),
            DialError::Io(e) => write!(f, "rendezvous: {e}"),
        }
    }
}

impl DialError {
    /// As the crate's error: a refusal stays one ([`Error::Refused`]), so
    /// the caller can tell it from a failure; the rest keep their text.
    pub fn into_error(self) -> Error {
        match self {
            DialError::Refused(t) => Error::Refused(t),
            other => Error::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triple_debug_hides_cookie() {
        let t = Triple {
            host: "h".into(),
            port: 1,
            cookie: "Isecret".into(),
            ttl: None,
            early: false,
        };
        assert!(!format!("{t:?}").contains("secret"));
        assert_eq!(
            serde_json::to_string(&t).expect("json"),
            r#"{"host":"h","port":1,"cookie":"Isecret"}"#
        );
        let ours: Triple =
            serde_json::from_str(r#"{"host":"h","port":1,"cookie":"I","early":true}"#).expect("json");
        assert!(ours.early);
        let original: Triple = serde_json::from_str(r#"{"host":"h","port":1,"cookie":"I"}"#).expect("json");
        assert!(!original.early);
    }
}
