//! Where the store is: one server named by `--store` (plain, TLS with
//! `rediss://`, or a Unix socket), or the primary that Redis Sentinels
//! name (`--store-sentinel`, `--store-service`). Every connection made here
//! has [`STORE_TIMEOUT`] to connect, read and write.
//!
//! With sentinels, each new connection asks for the primary: the one found
//! last is tried first and kept only while it answers `ROLE` as the
//! primary; otherwise each sentinel in turn is asked
//! `SENTINEL get-master-addr-by-name`. So after a failover the first new
//! connection finds the new primary, without a subscription to the
//! sentinels' events.

use crate::error::{Error, Result};
use crate::limits::STORE_TIMEOUT;
use crate::server::store::args::StoreArgs;
use redis::{Client, Connection, ConnectionInfo, IntoConnectionInfo, RedisResult, TlsCertificates};
use std::sync::{Mutex, PoisonError};

/// A host and port.
type Addr = (String, u16);

/// How connections to the store are made.
pub struct Target {
    kind: Kind,
    described: String,
}

enum Kind {
    Fixed(Client),
    Sentinel(Sentinels),
}

struct Sentinels {
    /// The sentinels, each `(host, port)`.
    nodes: Vec<(String, u16)>,
    service: String,
    /// TLS trust for the sentinels and the primary (`--store-ca`).
    tls: Option<Vec<u8>>,
    password: Option<crate::secret::Password>,
    /// The primary found last: its address, and a client for it.
    last: Mutex<Option<(Addr, Client)>>,
}

impl Target {
    /// The target `args` name, checked: a URL with a password or an
    /// unknown scheme, `--store-ca` without TLS, or sentinels without a
    /// service (or beside `--store`) are refused.
    pub fn new(args: &StoreArgs) -> Result<Target> {
        let described = args.describe();
        let tls = match &args.ca {
            Some(p) => Some(std::fs::read(p).map_err(|e| Error::config(p, None, format!("cannot read --store-ca: {e}")))?),
            None => None,
        };
        if !args.sentinels.is_empty() || args.service.is_some() {
            return Ok(Target {
                kind: Kind::Sentinel(sentinels(args, tls)?),
                described,
            });
        }
        let is_tls = check_url(&args.url)?;
        if tls.is_some() && !is_tls {
            return Err(Error::Usage(
                "--store-ca needs a TLS store: rediss://HOST:PORT, or --store-sentinel".into(),
            ));
        }
        let info = with_password(
            args.url
                .as_str()
                .into_connection_info()
                .map_err(|e| Error::Usage(format!("--store {described}: {e}")))?,
            args.password.as_ref(),
        );
        let client = client(info, is_tls, tls.as_deref()).map_err(|e| Error::Other(format!("store {described}: {e}")))?;
        Ok(Target {
            kind: Kind::Fixed(client),
            described,
        })
    }

    /// The store for logs and errors, without credentials.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// A new connection to the store (to its primary, with sentinels).
    pub fn open(&self) -> RedisResult<Connection> {
        match &self.kind {
            Kind::Fixed(c) => connect(c),
            Kind::Sentinel(s) => s.open(),
        }
    }

    /// Whether the sentinels now name another primary than the one the
    /// last connection was made to (asking them; `false` when none
    /// answers, and always for a store named by URL). A primary demoted
    /// without failing keeps taking writes until the sentinels reconfigure
    /// it, so connections to it are dropped as soon as this says so.
    pub fn moved(&self) -> bool {
        match &self.kind {
            Kind::Fixed(_) => false,
            Kind::Sentinel(s) => s.moved(),
        }
    }
}

impl Sentinels {
    fn open(&self) -> RedisResult<Connection> {
        let cached = self.last.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some((_, c)) = cached {
            if let Ok(con) = primary(&c) {
                return Ok(con);
            }
        }
        let mut last_error = None;
        for (host, port) in &self.nodes {
            match self.ask(host, *port) {
                Ok((found, con)) => {
                    *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
                    return Ok(con);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Io, "no sentinel given"))
        }))
    }

    /// Ask the sentinel at `host:port` for the primary, and connect to it.
    fn ask(&self, host: &str, port: u16) -> RedisResult<((Addr, Client), Connection)> {
        let tls = self.tls.is_some();
        let addr = self.primary_addr(host, port)?;
        let info = with_password(
            url_for(&addr.0, addr.1, tls).as_str().into_connection_info()?,
            self.password.as_ref(),
        );
        let c = client(info, tls, self.tls.as_deref())?;
        let con = primary(&c)?;
        Ok(((addr, c), con))
    }

    /// The primary's address as the sentinel at `host:port` names it.
    fn primary_addr(&self, host: &str, port: u16) -> RedisResult<Addr> {
        let tls = self.tls.is_some();
        let sentinel = client(
            url_for(host, port, tls).as_str().into_connection_info()?,
            tls,
            self.tls.as_deref(),
        )?;
        let mut con = connect(&sentinel)?;
        let addr: Option<Addr> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.service)
            .query(&mut con)?;
        addr.ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Io,
                "the sentinel does not monitor this service",
            ))
        })
    }

    fn moved(&self) -> bool {
        let Some(now) = self
            .nodes
            .iter()
            .find_map(|(h, p)| self.primary_addr(h, *p).ok())
        else {
            return false;
        };
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((addr, _)) if *addr != now => {
                *last = None;
                true
            }
            _ => false,
        }
    }
}

/// The sentinels `args` name, checked.
fn sentinels(args: &StoreArgs, tls: Option<Vec<u8>>) -> Result<Sentinels> {
    let Some(service) = args.service.clone().filter(|s| !s.is_empty()) else {
        return Err(Error::Usage("--store-sentinel needs --store-service NAME".into()));
    };
    if args.sentinels.is_empty() {
        return Err(Error::Usage("--store-service needs --store-sentinel HOST:PORT,...".into()));
    }
    if !args.url.is_empty() {
        return Err(Error::Usage(
            "--store and --store-sentinel exclude each other: the sentinels name the store".into(),
        ));
    }
    let nodes = args
        .sentinels
        .iter()
        .map(|s| {
            let (host, port) = s
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse().ok()?)))
                .filter(|(h, _)| !h.is_empty())
                .ok_or_else(|| Error::Usage(format!("--store-sentinel {s:?}: not HOST:PORT")))?;
            Ok((host.to_string(), port))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Sentinels {
        nodes,
        service,
        tls,
        password: args.password.clone(),
        last: Mutex::new(None),
    })
}

/// A connection through `c`, with the timeouts.
fn connect(c: &Client) -> RedisResult<Connection> {
    let con = c.get_connection_with_timeout(STORE_TIMEOUT)?;
    con.set_read_timeout(Some(STORE_TIMEOUT))?;
    con.set_write_timeout(Some(STORE_TIMEOUT))?;
    Ok(con)
}

/// A connection through `c` if it reaches a primary (`ROLE`).
fn primary(c: &Client) -> RedisResult<Connection> {
    let mut con = connect(c)?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con)?;
    match role.first() {
        Some(redis::Value::BulkString(r)) if r.as_slice() == b"master" => Ok(con),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "not the primary (a failover under way?)",
        ))),
    }
}

fn client(info: ConnectionInfo, tls: bool, ca: Option<&[u8]>) -> RedisResult<Client> {
    if !tls {
        return Client::open(info);
    }
    Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls: None,
            root_cert: ca.map(<[u8]>::to_vec),
        },
    )
}

fn with_password(info: ConnectionInfo, password: Option<&crate::secret::Password>) -> ConnectionInfo {
    match password {
        Some(p) => {
            let settings = info.redis_settings().clone().set_password(p.expose());
            info.set_redis_settings(settings)
        }
        None => info,
    }
}

fn url_for(host: &str, port: u16, tls: bool) -> String {
    let scheme = if tls { "rediss" } else { "redis" };
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// Check `url`: refused when it carries a password (which would sit on the
/// command line), turns verification off, or has a scheme this build does
/// not speak; whether it is TLS.
fn check_url(url: &str) -> Result<bool> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Usage("--store: not a URL (redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH)".into()))?;
    let tls = match scheme {
        "redis" | "valkey" | "unix" | "redis+unix" | "valkey+unix" => false,
        "rediss" | "valkeys" => true,
        other => {
            return Err(Error::Usage(format!(
                "--store: unknown scheme {other:?} (redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH)"
            )))
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || rest.contains("pass=") {
        return Err(Error::Usage(
            "--store: put no password in the URL (it would show in the process list); use $RENDEZVOUS_STORE_PASSWORD or --store-password-file".into(),
        ));
    }
    if rest.contains('#') {
        return Err(Error::Usage(
            "--store: no fragment: certificate checks stay on (give the store's CA with --store-ca)".into(),
        ));
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> StoreArgs {
        StoreArgs::new(url)
    }

    #[test]
    fn urls_with_passwords_fragments_or_unknown_schemes_are_refused() {
        for bad in [
            "redis://:hunter2@127.0.0.1:6379",
            "redis://user:pw@h:1/0",
            "unix:///tmp/r.sock?pass=x",
            "rediss://h:1/#insecure",
            "http://h:1",
            "h:1",
        ] {
            let e = Target::new(&args(bad)).err().expect(bad).to_string();
            assert!(!e.contains("hunter2") && !e.contains(":pw@"), "{e}");
        }
        assert!(check_url("rediss://h:1").expect("tls"));
        assert!(!check_url("unix:///tmp/r.sock").expect("unix"));
    }

    #[test]
    fn store_ca_needs_tls_and_sentinels_need_a_service() {
        let dir = std::env::temp_dir().join(format!("rdv-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not used").expect("write");
        let mut a = args("redis://127.0.0.1:1");
        a.ca = Some(ca);
        let e = Target::new(&a).err().expect("plain with ca").to_string();
        assert!(e.contains("--store-ca needs a TLS store"), "{e}");
        let mut s = args("");
        s.sentinels = vec!["127.0.0.1:26379".into()];
        let e = Target::new(&s).err().expect("no service").to_string();
        assert!(e.contains("--store-service"), "{e}");
        s.service = Some("main".into());
        s.url = "redis://h:1".into();
        let e = Target::new(&s).err().expect("both").to_string();
        assert!(e.contains("exclude each other"), "{e}");
        s.url.clear();
        s.sentinels = vec!["nocolon".into()];
        let e = Target::new(&s).err().expect("not host:port").to_string();
        assert!(e.contains("not HOST:PORT"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
