//! What pairing needs, and nothing more: the registry (to park and take),
//! the set of active pairs, the counters, and three settings. Both
//! protocols' pairing code (`rendezvous` for the generic one,
//! `http_protocol` for the HTTP-specific one) takes a [`Pairing`];
//! `Shared::pairing` lends one.

use crate::liveness::{self, Keepalive, Undelivered};
use crate::ratelimit::RateLimit;
use crate::relay::ActivePairs;
use crate::server::metrics::Metrics;
use crate::server::registry::Registry;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;
use uuid::Uuid;

/// What a pairing handler may touch.
pub struct Pairing<'a> {
    /// Registrations and pools.
    pub registry: &'a Registry,
    /// Pairs relaying now (counted, and drained at shutdown).
    pub pairs: &'a ActivePairs,
    /// Event counters.
    pub metrics: &'a Metrics,
    /// Set on both sockets of a pair and on every parked one.
    pub keepalive: Keepalive,
    /// How long an initiator waits for a parked socket (`--pair-timeout`).
    pub pair_timeout: Duration,
    /// The pool size, for the warning when one overflows (`--pool-max`).
    pub pool_max: usize,
    /// Links to the other nodes, which may hold a UUID's parked `CONNECT`s.
    pub peers: Option<&'a crate::server::peer::peers::Peers>,
}

impl Pairing<'_> {
    /// The liveness proof of a parked socket the server just wrote its first
    /// bytes to: true once the peer acknowledged them. A socket that does not
    /// prove alive (silent, closed or reset) is closed with an RST and
    /// counted; the caller takes the next one, and the other side never
    /// sees it. Logged under the generic protocol's target for both, as
    /// since the proof was written.
    pub fn proven(&self, sock: &TcpStream, conn: u64) -> bool {
        let m = self.metrics;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match liveness::prove_delivered(sock) {
            Ok(took) => {
                Metrics::bump(&m.proofs_acked);
                m.proof_micros.fetch_add(micros(took), Ordering::Relaxed);
                true
            }
            Err(why) => {
                Metrics::bump(&m.proofs_failed);
                if let Undelivered::Timeout(t) = why {
                    m.proof_micros.fetch_add(micros(t), Ordering::Relaxed);
                }
                log::debug!(target: "rendezvous::rendezvous", "conn={conn} parked socket failed its liveness proof: {why:?}");
                liveness::abort(sock);
                false
            }
        }
    }

    /// A pool overflowed and its oldest socket, `conn`, was closed: warned
    /// about at most once per 10 s for both protocols together.
    pub fn evicted(&self, uuid: Uuid, conn: u64, target: &str) {
        static W: OnceLock<RateLimit> = OnceLock::new();
        if W.get_or_init(|| RateLimit::new(Duration::from_secs(10))).ready() {
            log::warn!(target: target, "pool full uuid={uuid}: closed oldest conn={conn} (--pool-max {})",
                self.pool_max);
        }
    }
}
