//! The generic protocol's registrar API (rule 5, a `uuid=` query):
//! `PUT ?uuid=&response=` registers with a token, `PUT ?uuid=&cookie=`
//! refreshes an `R` cookie, `GET ?uuid=` looks up the `I` triple; the
//! method follows from the query, as in the original.

use crate::secret::Cookie;
use crate::secret::Token;
use crate::server::auth::authenticate;
use crate::server::metrics::Metrics;
use crate::server::shared::Shared;
use crate::wire::Head;
use crate::wire::Refusal;
use crate::wire::Response;
use std::net::SocketAddr;
use std::net::TcpStream;
use uuid::Uuid;

const T: &str = "rendezvous::registrar";

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
            Err(Refusal::MalformedHost.response())
        };
    }
    sock.local_addr()
        .map(|a| a.ip().to_string())
        .map_err(|_| Refusal::NoLocalAddress.response())
}

pub(crate) fn api(
    shared: &Shared,
    head: &Head,
    peer: SocketAddr,
    sock: &TcpStream,
    id: u64,
) -> Response {
    let query = head.query();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(uuid) = get("uuid").and_then(|u| Uuid::try_parse(u).ok()) else {
        return Refusal::MalformedUuid.response();
    };
    let Some(port) = shared.triple_port else {
        return Refusal::NotConfigured.response();
    };
    let (response, cookie) = (get("response"), get("cookie"));
    if response.is_some() && cookie.is_some() {
        return Refusal::ResponseAndCookie.response();
    }
    let (allowed, refusal) = if response.is_some() || cookie.is_some() {
        ("PUT", Refusal::UsePut)
    } else {
        ("GET", Refusal::UseGet)
    };
    if head.method != allowed {
        return refusal.response().with_header("Allow", allowed);
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
                Refusal::UnknownCookie.response()
            }
        };
    }
    match shared.registry.initiator_cookie(&uuid) {
        Some(c) => triple(&c, false),
        None => Refusal::NotRegistered.response(),
    }
}
