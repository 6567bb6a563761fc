//! Start-up pieces of `serve`: the TLS configuration (creating the
//! self-signed pair when none is given), the store, this server as a node
//! with its peer listener, and binding listeners with the address in the
//! error.

use crate::certs;
use crate::error::{Error, Result};
use crate::files;
use crate::server::config::Config;
use crate::server::nodes;
use crate::server::peer::peers::Peers;
use crate::server::security::SecurityState;
use crate::server::store::Store;
use crate::tls;
use rustls::ServerConfig;
use std::net::TcpListener;
use std::sync::Arc;

/// The registrar's TLS configuration (`None` with `--plaintext`).
pub fn load_tls(cfg: &Config) -> Result<Option<Arc<ServerConfig>>> {
    if cfg.plaintext {
        return Ok(None);
    }
    let (cert, key) = (&cfg.paths.cert, &cfg.paths.key);
    if !cfg.explicit_cert {
        let (fp, created) = certs::ensure_pair(cert, key)?;
        if created {
            log::info!(target: "rendezvous::server", "created self-signed certificate {}", cert.display());
        }
        log::info!(target: "rendezvous::server", "certificate sha256={fp}");
    } else {
        log::info!(target: "rendezvous::server", "certificate sha256={}", certs::file_fingerprint(cert)?);
    }
    if let Some(w) = files::mode_warning(key) {
        log::warn!(target: "rendezvous::server", "{w}");
    }
    Ok(Some(tls::server_config(cert, key)?))
}


/// The store `cfg` names: the embedded one, loaded from the state folder,
/// or a shared one (`--store`), which must answer now.
pub fn open_store(cfg: &Config, clock: &Arc<dyn crate::clock::Clock>) -> Result<Store> {
    let Some(args) = &cfg.store else {
        let (security, warning) = SecurityState::load(&cfg.paths.state);
        if let Some(w) = warning {
            log::warn!(target: "rendezvous::server", "{w}");
        }
        return Ok(Store::Embedded(Box::new(security.with_clock(clock.clone()))));
    };
    #[cfg(feature = "store-redis")]
    {
        let store = crate::server::store::redis::RedisStore::connect(args, clock.clone())?;
        log::info!(target: "rendezvous::server", "store {}", store.describe());
        Ok(Store::Redis(Arc::new(store)))
    }
    #[cfg(not(feature = "store-redis"))]
    Err(crate::error::Error::Usage(format!(
        "--store {}: this rendezvousd was built without the store-redis feature",
        args.describe()
    )))
}

/// What joining the nodes gives: the node, and its side of the links
/// between nodes with the bound peer listener.
pub type Joined = (Option<Arc<nodes::Node>>, Option<(Peers, TcpListener)>);

/// With a shared store, this server is a node: claim its id (`--node-id`,
/// else the host name), naming its peer listener (`--peer-advertise`, else
/// `--public-host` and the port `--peer-listen` bound) when it has one.
pub fn join_nodes(cfg: &Config, store: &Store, port: Option<u16>) -> Result<Joined> {
    #[cfg(feature = "store-redis")]
    if let Store::Redis(r) = store {
        let id = cfg.node_id.clone().or_else(certs::system_hostname);
        let host = cfg.public_host.clone().unwrap_or_default();
        let listener = match &cfg.peer_listen {
            Some(a) => Some(bind(a, "bind peer listener")?),
            None => None,
        };
        let keys = match &cfg.cluster_secret_file {
            Some(f) => Some(crate::server::peer::keys::ClusterKeys::load(f)?),
            None => None,
        };
        let advertise = match (&cfg.peer_advertise, &listener) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(l)) => {
                let port = l.local_addr().map_err(|e| Error::io("peer listener address", e))?.port();
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                Some(format!("{host}:{port}"))
            }
            (None, None) => None,
        };
        let place = ((host, port.unwrap_or(0)), advertise);
        let node = Arc::new(nodes::Node::claim(id.unwrap_or_else(|| "node".into()), place, cfg.node_ttl, r.clone())?);
        let peers = match (keys, listener) {
            (Some(keys), Some(l)) => Some((Peers { keys, node: node.clone() }, l)),
            _ => None,
        };
        return Ok((Some(node), peers));
    }
    let _ = (cfg, store, port);
    Ok((None, None))
}

/// Bind `addr`, naming it in the error.
pub fn bind(addr: &str, what: &'static str) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| Error::Io {
        op: what,
        source: std::io::Error::new(e.kind(), format!("{addr}: {e}")),
    })
}

