//! What `rendezvousd serve` is told on its command line, with the ranges it
//! accepts (a value outside one is a usage error naming the option).

use crate::error::{Error, Result};
use crate::limits;
use crate::state::StatePaths;
use std::time::Duration;

/// Everything `serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Registrar listen address.
    pub registrar: String,
    /// Rendezvous listen address; `None` disables the generic protocol.
    pub rendezvous: Option<String>,
    /// Host put into triples (default: the client's `Host`).
    pub public_host: Option<String>,
    /// Port put into triples (default: the rendezvous listen port).
    pub public_port: Option<u16>,
    /// State folder and files.
    pub paths: StatePaths,
    /// `--cert`/`--key` were given (so a missing pair is an error, not created).
    pub explicit_cert: bool,
    /// Serve the registrar over plain HTTP.
    pub plaintext: bool,
    /// Parked sockets per UUID and protocol.
    pub pool_max: usize,
    /// How long an initiator waits for a responder.
    pub pair_timeout: Duration,
    /// TLS handshake plus first head, or the cookie line.
    pub handshake_timeout: Duration,
    /// Concurrent sockets, all listeners together.
    pub max_connections: usize,
    /// Lifetime of an unused `R` cookie.
    pub cookie_ttl: Duration,
    /// How long active pairs may run after a shutdown begins.
    pub drain_timeout: Duration,
    /// Who may read `/.well-known/rendezvous/metrics` on the registrar.
    pub metrics_from: Vec<crate::server::metrics::Cidr>,
    /// TCP keepalive and user timeout of parked and relayed sockets.
    pub keepalive: crate::liveness::Keepalive,
    /// A listener of its own for the metrics (plain HTTP); when set, the
    /// registrar's metrics path answers 404.
    pub metrics_listen: Option<String>,
    /// `--store` and the options beside it: a Redis or Valkey store;
    /// `None` keeps the state in this process (the embedded store).
    pub store: Option<crate::server::store::StoreArgs>,
    /// `--node-id`: this server's name among the nodes sharing the store
    /// (default: the host name).
    pub node_id: Option<String>,
    /// `--node-ttl`: the node's lease in the store.
    pub node_ttl: Duration,
    /// `--peer-listen`: the listener other nodes take parked `CONNECT`s
    /// from (the HTTP-specific protocol across nodes).
    pub peer_listen: Option<String>,
    /// `--peer-advertise`: `HOST:PORT` other nodes reach it at (default:
    /// `--public-host` and the listen port).
    pub peer_advertise: Option<String>,
    /// `--cluster-secret-file`: the secret the links' keys derive from.
    pub cluster_secret_file: Option<std::path::PathBuf>,
}

impl Config {
    /// The defaults of rendezvousd(8), with the state folder `paths`.
    pub fn new(paths: StatePaths) -> Config {
        Config {
            registrar: limits::DEFAULT_REGISTRAR_ADDR.into(),
            rendezvous: Some(limits::DEFAULT_RENDEZVOUS_ADDR.into()),
            public_host: None,
            public_port: None,
            paths,
            explicit_cert: false,
            plaintext: false,
            pool_max: limits::POOL_MAX,
            pair_timeout: limits::PAIR_TIMEOUT,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT,
            max_connections: limits::MAX_CONNECTIONS,
            cookie_ttl: limits::COOKIE_TTL,
            drain_timeout: limits::DRAIN_TIMEOUT,
            metrics_from: crate::server::metrics::Cidr::loopback(),
            metrics_listen: None,
            keepalive: crate::liveness::Keepalive::default(),
            store: None,
            node_id: None,
            node_ttl: limits::NODE_TTL,
            peer_listen: None,
            peer_advertise: None,
            cluster_secret_file: None,
        }
    }

    /// Refuse values outside the ranges rendezvousd(8) gives, naming the
    /// option: no deadline computed from them can overflow, and no pool is
    /// larger than memory allows.
    pub fn validate(&self) -> Result<()> {
        let secs = |flag: &str, d: Duration, min: u64, max: Duration| {
            // The command line takes whole seconds; the library may go below one.
            if (min > 0 && d.is_zero()) || d > max {
                Err(Error::Usage(format!(
                    "--{flag} must be from {min} to {} seconds",
                    max.as_secs()
                )))
            } else {
                Ok(())
            }
        };
        secs("pair-timeout", self.pair_timeout, 1, limits::MAX_TIMEOUT)?;
        secs(
            "handshake-timeout",
            self.handshake_timeout,
            1,
            limits::MAX_TIMEOUT,
        )?;
        secs("drain-timeout", self.drain_timeout, 0, limits::MAX_TIMEOUT)?;
        secs("cookie-ttl", self.cookie_ttl, 1, limits::MAX_COOKIE_TTL)?;
        secs("keepalive", self.keepalive.idle, 1, limits::MAX_TIMEOUT)?;
        if !(1..=limits::MAX_POOL_MAX).contains(&self.pool_max) {
            return Err(Error::Usage(format!(
                "--pool-max must be from 1 to {}",
                limits::MAX_POOL_MAX
            )));
        }
        if self.max_connections == 0 {
            return Err(Error::Usage("--max-connections must be at least 1".into()));
        }
        self.validate_node()
    }

    /// The node options: only with a store, which needs `--public-host`
    /// (other nodes hand out this node's address).
    fn validate_node(&self) -> Result<()> {
        let peering = self.peer_listen.is_some() || self.peer_advertise.is_some() || self.cluster_secret_file.is_some();
        if self.store.is_none() {
            if self.node_id.is_some() {
                return Err(Error::Usage("--node-id needs --store".into()));
            }
            if peering {
                return Err(Error::Usage("--peer-listen, --peer-advertise and --cluster-secret-file need --store".into()));
            }
            return Ok(());
        }
        if peering && (self.peer_listen.is_none() || self.cluster_secret_file.is_none()) {
            return Err(Error::Usage("--peer-listen and --cluster-secret-file go together".into()));
        }
        if let Some(a) = &self.peer_advertise {
            let ok = a.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(Error::Usage(format!("--peer-advertise {a:?} is not HOST:PORT")));
            }
        }
        if self.public_host.is_none() {
            return Err(Error::Usage(
                "--store needs --public-host: other nodes name this one by it in their answers".into(),
            ));
        }
        if let Some(id) = &self.node_id {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(Error::Usage(format!(
                    "--node-id {id:?}: 1 to 64 letters, digits, '.', '_' or '-'"
                )));
            }
        }
        if self.node_ttl < limits::NODE_TTL_MIN || self.node_ttl > limits::MAX_TIMEOUT {
            return Err(Error::Usage(format!(
                "--node-ttl must be from {} to {} seconds",
                limits::NODE_TTL_MIN.as_secs(),
                limits::MAX_TIMEOUT.as_secs()
            )));
        }
        Ok(())
    }
}

/// The shared store's password: the first line of `file`, else
/// `$RENDEZVOUS_STORE_PASSWORD`, else none. Never taken from the command
/// line, where every user of the machine could read it.
pub fn store_password(file: Option<&std::path::Path>) -> Result<Option<crate::secret::Password>> {
    let text = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| Error::config(f, None, format!("cannot read the store password: {e}")))?,
        None => match std::env::var("RENDEZVOUS_STORE_PASSWORD") {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    Ok((!first.is_empty()).then(|| crate::secret::Password::new(first)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StatePaths;

    fn cfg() -> Config {
        Config::new(StatePaths::resolve(
            Some(std::path::Path::new("/nonexistent")),
            None,
            None,
            None,
        ))
    }

    #[test]
    fn validate_takes_the_bounds_and_the_defaults() {
        assert!(cfg().validate().is_ok(), "defaults");
        let mut c = cfg();
        c.pair_timeout = limits::MAX_TIMEOUT;
        c.handshake_timeout = limits::MAX_TIMEOUT;
        c.drain_timeout = Duration::ZERO;
        c.cookie_ttl = limits::MAX_COOKIE_TTL;
        c.pool_max = limits::MAX_POOL_MAX;
        c.max_connections = 1;
        assert!(c.validate().is_ok(), "largest and smallest allowed");
        // The library may use less than a second (the tests do).
        c.pair_timeout = Duration::from_millis(500);
        assert!(c.validate().is_ok(), "sub-second");
        c.pair_timeout = Duration::ZERO;
        assert!(matches!(c.validate(), Err(Error::Usage(m)) if m.contains("--pair-timeout")));
        let mut c = cfg();
        c.drain_timeout = limits::MAX_TIMEOUT + Duration::from_nanos(1);
        assert!(matches!(c.validate(), Err(Error::Usage(m)) if m.contains("--drain-timeout")));
        let mut c = cfg();
        c.pool_max = limits::MAX_POOL_MAX + 1;
        assert!(matches!(c.validate(), Err(Error::Usage(m)) if m.contains("--pool-max")));
    }
}
