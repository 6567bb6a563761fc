//! `rendezvousd serve`: start-up (state folder, users file, certificate,
//! the store), the accept loops and the reaper, reload (SIGHUP) and
//! shutdown with a drain (SIGTERM/SIGINT). The configuration is `config`,
//! what the connection threads share `shared`.
//!
//! # Locks
//!
//! Where two are held at once they are taken in this order, and no lock is
//! held across a blocking socket read or write:
//!
//! | first | then | where |
//! |---|---|---|
//! | registry | users table (read) | token authentication, `registry::register_offered` |
//! | TLS leg's connection | its writer | `relay::tls_leg`, before the socket write |
//!
//! Taken alone: the embedded store's state (judging a token: the shared
//! store is asked holding no lock), the users table and TLS configuration
//! for a reload's swap,
//! the connection counts (`accept::Conns`: per address, idle keep-alive),
//! the active pairs, the rate limiters, the thread pool. The reaper takes a
//! pool's parked sockets out under the registry lock and peeks at them
//! outside it.

pub mod accept;
pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod conn;
pub mod http_protocol;
pub mod metrics;
pub mod nodes;
pub mod pairing;
pub mod parked;
pub mod peer;
pub mod registrar;
pub mod registry;
pub mod rendezvous;
pub mod security;
pub mod shared;
pub mod start;
pub mod store;
pub mod user_table;

pub use config::Config;
pub use shared::Shared;

use crate::certs;
use crate::error::{IoResultExt, Result};
use crate::files;
use crate::files::ensure_dir;
use crate::limits;
use crate::relay::ActivePairs;
use crate::server::accept::{AcceptLoop, Conns};
use crate::server::registry::{Registry, RegistryConfig};
#[cfg(feature = "store-redis")]
use crate::server::store::Store;
use crate::tls;
use start::{bind, join_nodes, load_tls, open_store};
use crossbeam_channel::{bounded, Sender};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread;
use std::time::Duration;

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    loops: Vec<AcceptLoop>,
    reaper: Option<(Sender<()>, thread::JoinHandle<()>)>,
    watch: user_table::Watch,
    heartbeat: user_table::Watch,
}

/// Write the security state to the state folder if it changed. A failure
/// is logged (rate-limited) and retried at the next change.
fn save_security(shared: &Shared) {
    let Some(security) = shared.store.embedded() else {
        return;
    };
    if !security.take_dirty() {
        return;
    }
    if let Err(e) = security.save(&shared.cfg.paths.state) {
        static W: std::sync::OnceLock<crate::ratelimit::RateLimit> = std::sync::OnceLock::new();
        if W.get_or_init(|| crate::ratelimit::RateLimit::new(Duration::from_secs(60)))
            .ready()
        {
            log::warn!(target: "rendezvous::server", "cannot save the security state: {e}");
        }
    }
}

/// Start the accept loops: the registrar, the rendezvous listener, and the
/// metrics listener when `--metrics-listen` is given.
fn start_listeners(
    shared: &Arc<Shared>,
    registrar: TcpListener,
    rendezvous: Option<TcpListener>,
    peer: Option<TcpListener>,
) -> Result<Vec<AcceptLoop>> {
    let mut loops = Vec::new();
    let max = shared.cfg.max_connections;
    let s = shared.clone();
    let reg_loop = AcceptLoop::spawn(
        "registrar",
        registrar,
        shared.conns.clone(),
        max,
        move |a| crate::server::registrar::handle(a, &s),
    )
    .op("start registrar accept thread")?;
    log::info!(target: "rendezvous::server", "listening on {} (registrar, {})", reg_loop.local_addr(),
        if shared.cfg.plaintext { "plain HTTP" } else { "HTTPS" });
    loops.push(reg_loop);
    if let Some(l) = rendezvous {
        let s = shared.clone();
        let rv = AcceptLoop::spawn("rendezvous", l, shared.conns.clone(), max, move |a| {
            crate::server::rendezvous::handle(a, s.cfg.handshake_timeout, &s.pairing())
        })
        .op("start rendezvous accept thread")?;
        log::info!(target: "rendezvous::server", "listening on {} (rendezvous)", rv.local_addr());
        loops.push(rv);
    }
    if let Some(addr) = &shared.cfg.metrics_listen {
        let l = bind(addr, "bind metrics listener")?;
        let s = shared.clone();
        let ml = AcceptLoop::spawn("metrics", l, shared.conns.clone(), max, move |a| {
            let deadline = std::time::Instant::now() + s.cfg.handshake_timeout;
            metrics::handle(a, deadline, || s.metrics_page())
        })
        .op("start metrics accept thread")?;
        log::info!(target: "rendezvous::server", "listening on {} (metrics, plain HTTP)", ml.local_addr());
        loops.push(ml);
    }
    if let Some(l) = peer {
        let s = shared.clone();
        let pl = AcceptLoop::spawn("peer", l, shared.conns.clone(), max, move |a| crate::server::peer::serve::handle(a, &s))
            .op("start peer accept thread")?;
        log::info!(target: "rendezvous::server", "listening on {} (peer, TLS pinned to the cluster key)", pl.local_addr());
        loops.push(pl);
    }
    Ok(loops)
}

/// The reaper: every [`limits::STATE_SAVE_INTERVAL`] it saves the security
/// state if it changed, and every [`limits::REAP_INTERVAL`] it sweeps
/// expired cookies, dead parked sockets and forgotten lockouts. It saves
/// once more when told to stop.
fn start_reaper(shared: &Arc<Shared>) -> Result<(Sender<()>, thread::JoinHandle<()>)> {
    let (tx, rx) = bounded::<()>(1);
    let s = shared.clone();
    let reaper = crate::threads::start("reaper", move || {
            let mut last_sweep = std::time::Instant::now();
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                rx.recv_timeout(limits::STATE_SAVE_INTERVAL)
            {
                save_security(&s);
                if last_sweep.elapsed() < limits::REAP_INTERVAL {
                    continue;
                }
                last_sweep = std::time::Instant::now();
                let swept = s.registry.sweep();
                if let Some(security) = s.store.embedded() {
                    security.sweep();
                }
                if swept != Default::default() {
                    log::debug!(target: "rendezvous::registry",
                        "reaper swept cookies={} dead={} lapsed={}", swept.cookies, swept.dead, swept.lapsed);
                }
            }
            save_security(&s);
        })
        .op("start reaper thread")?;
    Ok((tx, reaper))
}

impl Server {
    /// Start serving on already-bound listeners (tests bind port 0 first).
    pub fn start(
        cfg: Config,
        registrar: TcpListener,
        rendezvous: Option<TcpListener>,
    ) -> Result<Server> {
        Server::start_with_clock(cfg, registrar, rendezvous, crate::clock::system())
    }

    /// [`Server::start`] with the time of cookie lifetimes and lockouts
    /// read from `clock` (tests move it instead of sleeping).
    pub fn start_with_clock(
        cfg: Config,
        registrar: TcpListener,
        rendezvous: Option<TcpListener>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Server> {
        cfg.validate()?;
        ensure_dir(&cfg.paths.dir)?;
        if let Some(w) = crate::files::dir_mode_warning(&cfg.paths.dir) {
            log::warn!(target: "rendezvous::server", "{w}");
        }
        let store = open_store(&cfg, &clock)?;
        let table = user_table::initial(&cfg.paths.users, &store)?;
        log::info!(target: "rendezvous::server", "users loaded n={}", table.len());
        let tls_config = load_tls(&cfg)?;
        let rendezvous_port = match &rendezvous {
            Some(l) => Some(l.local_addr().op("rendezvous listener address")?.port()),
            None => None,
        };
        let registry = Registry::with_clock(
            RegistryConfig {
                cookie_ttl: cfg.cookie_ttl,
                pool_max: cfg.pool_max.max(1),
            },
            clock,
        );
        #[cfg(feature = "store-redis")]
        let registry = match &store {
            Store::Redis(r) => registry.with_shared(r.clone()),
            Store::Embedded(_) => registry,
        };
        let triple_port = rendezvous_port.map(|p| cfg.public_port.unwrap_or(p));
        let (node, peering) = join_nodes(&cfg, &store, triple_port)?;
        let (peers, peer_listener) = peering.map_or((None, None), |(p, l)| (Some(p), Some(l)));
        let shared = Arc::new(Shared {
            node,
            peers,
            registry,
            store,
            conns: Arc::new(Conns::default()),
            pairs: ActivePairs::new(),
            metrics: Default::default(),
            triple_port,
            users: RwLock::new(Arc::new(table)),
            tls: RwLock::new(tls_config),
            cfg,
        });
        let loops = start_listeners(&shared, registrar, rendezvous, peer_listener)?;
        let reaper = start_reaper(&shared)?;
        let watch = user_table::start_watch(&shared)?;
        let heartbeat = match &shared.node {
            Some(n) => {
                let (s, t) = (shared.clone(), shared.clone());
                let leased = move |on| t.registry.set_parking(on);
                let (wake, woken) = crossbeam_channel::bounded(1);
                shared.registry.on_newly_held(wake);
                Some(nodes::start_heartbeat(n.clone(), move || s.registry.held(), leased, woken)?)
            }
            None => None,
        };
        Ok(Server {
            shared,
            loops,
            reaper: Some(reaper),
            watch,
            heartbeat,
        })
    }

    /// The shared state (for tests and metrics).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The registrar's bound address.
    pub fn registrar_addr(&self) -> SocketAddr {
        self.loops[0].local_addr()
    }

    /// The rendezvous listener's bound address, if enabled.
    pub fn rendezvous_addr(&self) -> Option<SocketAddr> {
        self.loops
            .iter()
            .find(|l| l.name() == "rendezvous")
            .map(AcceptLoop::local_addr)
    }

    /// The metrics listener's bound address, if `--metrics-listen` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.loops
            .iter()
            .find(|l| l.name() == "metrics")
            .map(AcceptLoop::local_addr)
    }

    /// The peer listener's bound address (`--peer-listen`).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.loops.iter().find(|l| l.name() == "peer").map(AcceptLoop::local_addr)
    }

    /// Reload the users file and the certificate (SIGHUP). A file with an
    /// error is logged with its line and the old table kept.
    pub fn reload(&self) {
        let cfg = &self.shared.cfg;
        user_table::reload(&self.shared);
        if !cfg.plaintext {
            if let Some(w) = files::mode_warning(&cfg.paths.key) {
                log::warn!(target: "rendezvous::server", "{w}");
            }
            match tls::server_config(&cfg.paths.cert, &cfg.paths.key) {
                Ok(c) => {
                    *self
                        .shared
                        .tls
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Some(c);
                    if let Ok(fp) = certs::file_fingerprint(&cfg.paths.cert) {
                        log::info!(target: "rendezvous::server", "certificate reloaded sha256={fp}");
                    }
                }
                Err(e) => {
                    log::warn!(target: "rendezvous::server", "certificate reload failed, old one kept: {e}")
                }
            }
        }
    }

    /// Stop: close the listeners and every parked socket, let active pairs run
    /// for up to `--drain-timeout`, then abort the rest. Returns how many were aborted.
    pub fn shutdown(&mut self) -> usize {
        log::info!(target: "rendezvous::server", "shutdown begun");
        for l in &mut self.loops {
            l.stop();
        }
        let parked = self.shared.registry.close_all();
        let aborted = self.shared.pairs.drain(self.shared.cfg.drain_timeout);
        for (tx, t) in [self.reaper.take(), self.watch.take(), self.heartbeat.take()].into_iter().flatten() {
            let _ = tx.send(());
            let _ = t.join();
        }
        log::info!(target: "rendezvous::server",
            "shutdown finished parked_closed={parked} pairs_aborted={aborted}");
        aborted
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.reaper.is_some() {
            self.shutdown();
        }
    }
}

/// Raise the soft limit on open files to the hard limit: a relayed pair
/// holds two sockets and, with splice, two pipes.
fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            log::debug!(target: "rendezvous::server", "open files limit raised from {:?} to {:?}",
                lim.current, lim.maximum);
        }
    }
}

/// `rendezvousd serve`: bind, start, then wait for signals: SIGHUP reloads,
/// SIGTERM or SIGINT shuts down (exit 0).
pub fn serve(cfg: Config) -> Result<()> {
    cfg.validate()?;
    raise_nofile_limit();
    let signals = crate::signals::listen()?;
    let registrar = bind(&cfg.registrar, "bind registrar")?;
    let rendezvous = match &cfg.rendezvous {
        Some(a) => Some(bind(a, "bind rendezvous")?),
        None => None,
    };
    let mut server = Server::start(cfg, registrar, rendezvous)?;
    crate::notify::notify("READY=1");
    for sig in signals.iter() {
        match sig {
            crate::signals::Signal::Reload => {
                crate::notify::notify("RELOADING=1");
                server.reload();
                crate::notify::notify("READY=1");
            }
            crate::signals::Signal::Stop => break,
        }
    }
    crate::notify::notify("STOPPING=1");
    server.shutdown();
    Ok(())
}
