//! The HTTP-specific agent: parked `CONNECT`s at the registrar (the first
//! with a token, the rest with the pool's `Rendezvous-Cookie`), each
//! waiting for a mobile client's request, then relayed to the local service.

use super::{backoff, Agent, Client, Waited, T};
use crate::agent::client::ClientConn;
use crate::error::{AuthFailure, Error, Result};
use crate::liveness;
use crate::relay;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

impl Agent {
    /// `CONNECT uuid:ID?QUERY` and read the response head byte by byte (the
    /// mobile client's request may follow it at once). Returns the connection
    /// and its `Rendezvous-Cookie`, if it sent one.
    pub(super) fn connect_park(
        &self,
        query: &str,
        auth: AuthFailure,
    ) -> Result<(ClientConn, Option<String>)> {
        let (conn, host, at) = self.registrar.open()?;
        let got = self.connect_exchange(conn, &host, query, auth, at);
        // A registrar that took the connection but did not answer, or
        // answered 5xx (it lost its store), is left for the next.
        if matches!(&got, Err(Error::Io { .. } | Error::Protocol(_) | Error::Timeout(_))) {
            self.registrar.failed(at);
        }
        got
    }

    fn connect_exchange(
        &self,
        mut conn: ClientConn,
        host: &str,
        query: &str,
        auth: AuthFailure,
        at: usize,
    ) -> Result<(ClientConn, Option<String>)> {
        let req = format!(
            "CONNECT uuid:{}?{query} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rendezvous/{}\r\n\r\n",
            self.uuid.hyphenated(),
            env!("CARGO_PKG_VERSION")
        );
        conn.write_all(req.as_bytes())
            .and_then(|_| conn.flush())
            .map_err(|e| Error::io("send CONNECT", e))?;
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > crate::limits::MAX_HEAD_BYTES {
                return Err(Error::Protocol("response head too large".into()));
            }
            match conn.read(&mut b) {
                Ok(0) => return Err(Error::Protocol("registrar closed before answering".into())),
                Ok(_) => head.push(b[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read CONNECT response", e)),
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; crate::limits::MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(&head)
            .map_err(|_| Error::Protocol("malformed CONNECT response".into()))?;
        self.registrar.note_date(
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("date"))
                .and_then(|h| std::str::from_utf8(h.value).ok()),
        );
        match resp.code {
            Some(200) => {}
            Some(401) => return Err(Error::Auth(auth)),
            Some(429) => return Err(Error::Auth(AuthFailure::LockedOut)),
            Some(c) if c >= 500 => {
                self.registrar.failed(at);
                return Err(Error::Other(format!("registrar answered CONNECT with {c}")));
            }
            Some(c) => return Err(Error::Other(format!("registrar answered CONNECT with {c}"))),
            None => return Err(Error::Protocol("malformed CONNECT response".into())),
        }
        // An older registrar (the original) answers a bare 200: parked all
        // the same, with no cookie to grow the pool by.
        let cookie = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("rendezvous-cookie"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        let _ = conn.tcp().set_read_timeout(None);
        Ok((conn, cookie))
    }

    /// One parked `CONNECT`: with the pool's cookie, or (the first, or after
    /// the cookie lapsed) with a token.
    pub(super) fn http_park(&self) -> Result<(ClientConn, u64)> {
        let (cookie, generation) = {
            let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (st.cookie.clone(), st.generation)
        };
        if let Some(c) = cookie {
            return match self.connect_park(&format!("cookie={c}"), AuthFailure::BadCookie) {
                Ok((conn, _)) => Ok((conn, generation)),
                Err(e) => {
                    if matches!(e, Error::Auth(AuthFailure::BadCookie)) {
                        log::info!(target: T, "cookie refused (expired, or the server restarted); registering again");
                        self.invalidate(generation);
                    }
                    Err(e)
                }
            };
        }
        // Only one worker authenticates with a token; the others wait for
        // its cookie (the state lock is never held across the exchange).
        let one = self
            .registering
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (cookie, generation) = {
            let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (st.cookie.clone(), st.generation)
        };
        if let Some(c) = cookie {
            drop(one);
            let (conn, _) = self.connect_park(&format!("cookie={c}"), AuthFailure::BadCookie)?;
            return Ok((conn, generation));
        }
        self.check_clock()?;
        let (token, step) = self.next_token()?;
        let (conn, cookie) = self
            .connect_park(&format!("response={token}"), AuthFailure::BadToken)
            .map_err(|e| self.refused(e, step))?;
        log::info!(target: T, "registered uuid={} proto=http", self.uuid);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.generation += 1;
        // Without a cookie (an older registrar), each CONNECT takes a token.
        st.cookie = cookie;
        Ok((conn, st.generation))
    }

    /// Park a `CONNECT` until a request arrives (returned) or the agent
    /// stops (`None`).
    #[inline(never)]
    pub(super) fn http_worker(self: &Arc<Self>) -> Option<Client> {
        let mut failures = 0u32;
        while !self.stopped() {
            let conn = match self.http_park() {
                Ok((c, _)) => c,
                // The pool's cookie lapsed while idle: register again at once.
                Err(Error::Auth(AuthFailure::BadCookie)) => continue,
                Err(e) => {
                    if !self.stopped() {
                        log::warn!(target: T, "CONNECT failed: {e}");
                        self.nap(backoff(failures));
                    }
                    failures = failures.saturating_add(1);
                    continue;
                }
            };
            failures = 0;
            let parked_at = Instant::now();
            match self.wait_for_request(conn) {
                Ok(Waited::Client((conn, first))) => return Some(Client::Http(conn, first)),
                Ok(Waited::Retired) => {
                    log::debug!(target: T, "parked CONNECT retired after {} s; replacing",
                        parked_at.elapsed().as_secs());
                }
                // Closed or failed while waiting (a NAT forgot it, a server
                // restart, shutdown, eviction).
                Err(e) => self.lost(&e, parked_at, &mut failures),
            }
        }
        None
    }

    /// Wait on a parked `CONNECT` for the mobile client's request, at most
    /// until it reaches its age; keepalive and the user timeout end the wait
    /// on a connection that died silently.
    fn wait_for_request(&self, mut conn: ClientConn) -> Result<Waited<(ClientConn, Vec<u8>)>> {
        let _ = self.keepalive.apply(conn.tcp());
        liveness::quickack(conn.tcp());
        conn.tcp()
            .set_read_timeout(Some(self.park_age()))
            .map_err(|e| Error::io("set timeout", e))?;
        let id = self.watch(conn.tcp());
        let mut first = vec![0u8; 16 * 1024];
        let got = loop {
            match conn.read(&mut first) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        self.unwatch(id);
        match got {
            Ok(n) if n > 0 => {
                first.truncate(n);
                let _ = conn.tcp().set_read_timeout(None);
                Ok(Waited::Client((conn, first)))
            }
            Ok(_) => Err(Error::Protocol(
                "parked CONNECT closed by the server".into(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = conn.tcp().shutdown(Shutdown::Both);
                Ok(Waited::Retired)
            }
            Err(e) => Err(Error::io("wait on parked CONNECT", e)),
        }
    }

    pub(super) fn serve_http(&self, remote: ClientConn, first: Vec<u8>) {
        let Some(mut local) = self.dial_local() else {
            log::warn!(target: T, "cannot connect to {}: closing the mobile client's connection", self.opts.to);
            let _ = remote.tcp().shutdown(Shutdown::Both);
            return;
        };
        if local.write_all(&first).is_err() {
            let _ = remote.tcp().shutdown(Shutdown::Both);
            return;
        }
        let t = relay::relay(remote.into_leg(), Arc::new(local), None);
        log::info!(target: T, "connection done proto=http to={} up={} down={} secs={:.3}",
            self.opts.to, t.up as usize + first.len(), t.down, t.duration.as_secs_f64());
    }
}
