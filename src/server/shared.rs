//! What every connection thread of the server shares: the configuration,
//! the registry, the security state, the connection count, the active
//! pairs, the counters, and the users table and TLS configuration a reload
//! swaps whole. The registrar's dispatch and `serve` hold all of it; the
//! handlers get narrow views lent from it: [`Authn`] for authentication,
//! [`Api`] for the generic API, [`Pairing`] for both protocols' pairing.

use crate::relay::ActivePairs;
use crate::server::accept::Conns;
use crate::server::api::Api;
use crate::server::auth::Authn;
use crate::server::config::Config;
use crate::server::metrics::{Metrics, Snapshot};
use crate::server::nodes::Node;
use crate::server::pairing::Pairing;
use crate::server::peer::peers::Peers;
use crate::server::registry::Registry;
use crate::server::store::Store;
use crate::users::Users;
use rustls::ServerConfig;
use std::sync::{Arc, PoisonError, RwLock};

/// What every connection thread shares.
pub struct Shared {
    /// The configuration.
    pub cfg: Config,
    /// This server as a node, with a shared store.
    pub node: Option<Arc<Node>>,
    /// Links to the other nodes (`--peer-listen`).
    pub peers: Option<Peers>,
    /// Registrations and pools.
    pub registry: Registry,
    /// Replay floors, guessing limits and last good addresses.
    pub store: Store,
    /// Connection count and ids.
    pub conns: Arc<Conns>,
    /// Pairs relaying now.
    pub pairs: ActivePairs,
    /// Event counters.
    pub metrics: Metrics,
    /// The port triples name (`None`: generic protocol disabled).
    pub triple_port: Option<u16>,
    pub(super) users: RwLock<Arc<Users>>,
    pub(super) tls: RwLock<Option<Arc<ServerConfig>>>,
}

impl Shared {
    /// The current users table (swapped whole on reload).
    pub fn users(&self) -> Arc<Users> {
        self.authn().users()
    }

    /// What authentication needs.
    pub fn authn(&self) -> Authn<'_> {
        Authn {
            users: &self.users,
            store: &self.store,
            registry: &self.registry,
            metrics: &self.metrics,
        }
    }

    /// What the generic protocol's API needs.
    pub fn api(&self) -> Api<'_> {
        Api {
            authn: self.authn(),
            public_host: self.cfg.public_host.as_deref(),
            node: self.node.as_deref(),
            triple_port: self.triple_port,
            cookie_ttl: self.cfg.cookie_ttl,
        }
    }

    /// What pairing needs (both protocols).
    pub fn pairing(&self) -> Pairing<'_> {
        Pairing {
            registry: &self.registry,
            pairs: &self.pairs,
            metrics: &self.metrics,
            keepalive: self.cfg.keepalive,
            pair_timeout: self.cfg.pair_timeout,
            pool_max: self.cfg.pool_max,
            peers: self.peers.as_ref(),
        }
    }

    /// The current TLS configuration (`None` with `--plaintext`).
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The values of the metrics page other than the counters, now.
    pub fn snapshot(&self) -> Snapshot {
        let stats = self.registry.stats();
        let (pairs_total, bytes_up, bytes_down) = self.pairs.totals();
        let (refused_cap, refused_per_addr) = self.conns.refused_by_limit();
        Snapshot {
            registrations: stats.registrations,
            parked_generic: stats.parked_generic,
            parked_http: stats.parked_http,
            active_pairs: self.pairs.active(),
            pairs_total,
            bytes_up,
            bytes_down,
            open: self.conns.open(),
            refused_cap,
            refused_per_addr,
            reclaimed: self.conns.reclaimed(),
        }
    }

    /// The metrics page.
    pub fn metrics_page(&self) -> String {
        let node = self.node.as_ref().map(|n| n.id.as_str());
        self.metrics.render(&self.snapshot(), node)
    }
}
