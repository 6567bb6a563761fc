//! The generic protocol's registrar API (rule 5, a `uuid=` query):
//! `PUT ?uuid=&response=` registers with a token, `PUT ?uuid=&cookie=`
//! refreshes an `R` cookie, `GET ?uuid=` looks up the `I` triple; the
//! method follows from the query, as in the original.

use crate::secret::{Cookie, Role};
use crate::secret::Token;
use crate::server::auth::Authn;
use crate::server::nodes::{Node, Place};
use crate::server::registry::Proto;
use crate::wire::Head;
use crate::wire::Refusal;
use crate::wire::Response;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::time::Duration;
use uuid::Uuid;

const T: &str = "rendezvous::registrar";

/// What the API may touch: authentication's context, and what a triple
/// names. `Shared::api` lends one.
pub struct Api<'a> {
    /// Tokens and cookies.
    pub authn: Authn<'a>,
    /// `--public-host`.
    pub public_host: Option<&'a str>,
    /// This server as a node: a lookup names the node holding the UUID.
    pub node: Option<&'a Node>,
    /// The port triples name (`None`: the generic protocol is off).
    pub triple_port: Option<u16>,
    /// The `R` cookie's lifetime, reported as a triple's `ttl`.
    pub cookie_ttl: Duration,
}

/// The host a triple names: `--public-host`, else the client's `Host` (without
/// its port), else the address the client reached us on.
fn triple_host(public_host: Option<&str>, head: &Head, sock: &TcpStream) -> Result<String, Response> {
    if let Some(h) = public_host {
        return Ok(h.to_string());
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
    ctx: &Api,
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
    let Some(port) = ctx.triple_port else {
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
    let host = match triple_host(ctx.public_host, head, sock) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let triple_at = |cookie: &Cookie, at: Option<Place>| {
        triple_json(cookie, at.unwrap_or_else(|| (host.clone(), port)), ctx.cookie_ttl)
    };
    let registry = ctx.authn.registry;
    // A registration or refresh names the node that holds the UUID's
    // parked sockets when another live node does (several nodes), so the
    // agent's whole pool waits at one place; else this node.
    // A refresh by an agent that could not reach the place its triple
    // named (`avoid=HOST:PORT`: a node that died, whose lease has not
    // lapsed yet) names another holder, or this node.
    let avoid = get("avoid").filter(|a| a.len() <= 262);
    let holder = || {
        ctx.node.and_then(|n| match avoid {
            Some(a) => n.holder_avoiding(&uuid, a),
            None => n.lookup(registry, &uuid, Proto::Generic).1,
        })
    };
    let triple = |cookie: &Cookie| triple_at(cookie, holder());
    if let Some(token) = response {
        return match ctx.authn.token(uuid, &Token::new(token), peer.ip(), id) {
            Ok(c) => triple(&c),
            Err(r) => r,
        };
    }
    if let Some(text) = cookie {
        let valid = Cookie::parse(text).filter(|c| ctx.authn.registry.refresh(uuid, c, peer.ip()).is_ok());
        return match ctx.authn.cookie(valid, uuid, peer, id, T) {
            Ok(c) => {
                log::debug!(target: T, "conn={id} cookie refreshed uuid={uuid}");
                triple(&c)
            }
            Err(r) => r,
        };
    }
    let (initiator, at) = match ctx.node {
        Some(n) => n.lookup(registry, &uuid, Proto::Generic),
        None => (registry.initiator_cookie(&uuid), None),
    };
    match initiator {
        Some(c) => triple_at(&c, at),
        None => Refusal::NotRegistered.response(),
    }
}

/// A triple as answered: a hidden server's says how long its cookie lives
/// (`ttl`), a mobile client's that its first bytes may come with its
/// cookie line (`early`: this server forwards them with the `+OK`).
fn triple_json(cookie: &Cookie, (host, port): Place, ttl: Duration) -> Response {
    let mut v = serde_json::json!({ "host": host, "port": port, "cookie": cookie.expose() });
    match cookie.role() {
        Role::Responder => v["ttl"] = serde_json::json!(ttl.as_secs()),
        Role::Initiator => v["early"] = serde_json::json!(true),
    }
    Response::result(v)
}
