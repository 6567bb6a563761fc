//! What every connection thread of the server shares: the configuration,
//! the registry, the security state, the connection count, the active
//! pairs, the counters, and the users table and TLS configuration a reload
//! swaps whole.

use crate::relay::ActivePairs;
use crate::server::accept::Conns;
use crate::server::config::Config;
use crate::server::metrics::{Metrics, Snapshot};
use crate::server::registry::Registry;
use crate::server::security::SecurityState;
use crate::users::Users;
use rustls::ServerConfig;
use std::sync::{Arc, PoisonError, RwLock};

/// What every connection thread shares.
pub struct Shared {
    /// The configuration.
    pub cfg: Config,
    /// Registrations and pools.
    pub registry: Registry,
    /// Replay floors, guessing limits and last good addresses.
    pub security: SecurityState,
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
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
        self.metrics.render(&self.snapshot())
    }
}
