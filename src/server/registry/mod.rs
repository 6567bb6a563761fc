//! Registrations and pairing: `Mutex<HashMap<Uuid, Registration>>`. Each
//! registration holds its initiator (`I`) cookie, its responder (`R`) cookies
//! with their expiry, and one pool of parked sockets per protocol — a bounded
//! crossbeam channel, oldest first. Responders park without a thread;
//! initiators wait on the channel outside the lock. Cookies are independent
//! random values. Replay floors live in the security state (`authn`).

use crate::error::AuthFailure;
use crate::secret::{Cookie, Role};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::HashMap;
use std::net::IpAddr;

use crate::server::parked::alive;
mod cookies;
mod held;
mod holding;
mod proto;
pub use proto::Proto;
mod register;
mod shared;
mod sweep;
pub use cookies::SharedCookies;
use crate::clock::Clock;
use crate::server::parked::Parked;
use crate::wire::TakeError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

struct Pool {
    tx: Sender<Parked>,
    rx: Receiver<Parked>,
}

impl Pool {
    fn new(max: usize) -> Pool {
        let (tx, rx) = bounded(max.max(1));
        Pool { tx, rx }
    }
}

struct Registration {
    initiator: Cookie,
    responders: HashMap<Cookie, Instant>,
    pools: [Pool; 2],
    /// Parked sockets a sweep has taken out to peek at.
    out: usize,
}

impl Registration {
    fn new(initiator: Cookie, pool_max: usize) -> Registration {
        Registration {
            initiator,
            responders: HashMap::new(),
            pools: [Pool::new(pool_max), Pool::new(pool_max)],
            out: 0,
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.responders.values().any(|exp| *exp > now)
            || self.out > 0
            || self.pools.iter().any(|p| !p.rx.is_empty())
    }
}

#[derive(Default)]
struct Inner {
    regs: HashMap<Uuid, Registration>,
    cookies: HashMap<Cookie, Uuid>,
    closed: bool,
    /// What this server says of its pools as a node (`held`).
    holding: holding::Holding,
    /// When each `R` cookie was last renewed in a shared store (`shared`).
    renewed: HashMap<Cookie, Instant>,
}

/// Registry settings.
#[derive(Debug, Clone, Copy)]
pub struct RegistryConfig {
    /// Lifetime of an unused `R` cookie (renewed on every use).
    pub cookie_ttl: Duration,
    /// Parked sockets per UUID and protocol.
    pub pool_max: usize,
}

/// What a sweep found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// `R` cookies that expired.
    pub cookies: usize,
    /// Parked sockets found closed.
    pub dead: usize,
    /// Registrations that lapsed.
    pub lapsed: usize,
}

/// Counts for the log and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Live registrations.
    pub registrations: usize,
    /// Parked generic sockets.
    pub parked_generic: usize,
    /// Parked HTTP connections.
    pub parked_http: usize,
}

/// The registry. Share it behind an `Arc`.
pub struct Registry {
    cfg: RegistryConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    /// The store that shares registrations between servers, if any.
    shared: Option<Arc<dyn SharedCookies>>,
}

impl Registry {
    /// An empty registry.
    pub fn new(cfg: RegistryConfig) -> Registry {
        Registry::with_clock(cfg, crate::clock::system())
    }

    /// An empty registry reading time from `clock` (cookie lifetimes).
    pub fn with_clock(cfg: RegistryConfig, clock: Arc<dyn Clock>) -> Registry {
        Registry {
            cfg,
            clock,
            inner: Mutex::new(Inner::default()),
            shared: None,
        }
    }

    /// The same registry, sharing registrations through `shared`.
    pub fn with_shared(mut self, shared: Arc<dyn SharedCookies>) -> Registry {
        self.shared = Some(shared);
        self
    }

    /// Whether registrations are shared through a store.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // One panicked connection thread must not wedge the daemon.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Renew a live `R` cookie of `uuid` presented from `from` (the
    /// registrar's `PUT ?cookie=`, `CONNECT ?cookie=`). A shared store
    /// records `from` as the UUID's last good address in the same round
    /// trip.
    pub fn refresh(&self, uuid: Uuid, cookie: &Cookie, from: IpAddr) -> Result<(), AuthFailure> {
        self.learn(cookie, Some((uuid, from)));
        let mut inner = self.lock();
        match self.renew(&mut inner, cookie, self.clock.now()) {
            Some(owner) if owner == uuid => Ok(()),
            _ => Err(AuthFailure::BadCookie),
        }
    }

    /// If `cookie` is a live `R` cookie, renew it and return its UUID.
    fn renew(&self, inner: &mut Inner, cookie: &Cookie, now: Instant) -> Option<Uuid> {
        if cookie.role() != Role::Responder {
            return None;
        }
        let uuid = *inner.cookies.get(cookie)?;
        let reg = inner.regs.get_mut(&uuid)?;
        let exp = reg.responders.get_mut(cookie)?;
        if *exp <= now {
            reg.responders.remove(cookie);
            inner.cookies.remove(cookie);
            return None;
        }
        *exp = now + self.cfg.cookie_ttl;
        Some(uuid)
    }

    /// The `I` cookie of a live registration: this server's, else the
    /// store's.
    pub fn initiator_cookie(&self, uuid: &Uuid) -> Option<Cookie> {
        self.local_initiator(uuid).or_else(|| self.shared_initiator(uuid))
    }

    /// The `I` cookie of a live registration here (never asking a store);
    /// a lapsed one is dropped.
    pub fn local_initiator(&self, uuid: &Uuid) -> Option<Cookie> {
        {
            let mut inner = self.lock();
            let now = self.clock.now();
            match inner.regs.get(uuid) {
                Some(reg) if reg.live(now) => return Some(reg.initiator),
                Some(_) => {
                    if let Some(old) = inner.regs.remove(uuid) {
                        drop_registration(&mut inner.cookies, old);
                    }
                }
                None => {}
            }
        }
        None
    }

    /// Park a responder under its `R` cookie. The pool's oldest socket is
    /// closed when it is full. On failure the socket is handed back.
    pub fn park(
        &self,
        cookie: &Cookie,
        proto: Proto,
        parked: Parked,
    ) -> Result<(Uuid, Option<Parked>), (TakeError, Parked)> {
        self.learn(cookie, None);
        let mut inner = self.lock();
        if inner.closed || inner.holding.parking_off {
            return Err((TakeError::NotRegistered, parked));
        }
        let Some(uuid) = self.renew(&mut inner, cookie, self.clock.now()) else {
            return Err((TakeError::NotRegistered, parked));
        };
        self.park_locked(&mut inner, uuid, proto, parked)
            .map(|evicted| (uuid, evicted))
    }

    /// Park a responder already authenticated for `uuid` (a `CONNECT` with a token).
    pub fn park_uuid(
        &self,
        uuid: Uuid,
        proto: Proto,
        parked: Parked,
    ) -> Result<Option<Parked>, (TakeError, Parked)> {
        let mut inner = self.lock();
        if inner.closed || inner.holding.parking_off {
            return Err((TakeError::NotRegistered, parked));
        }
        self.park_locked(&mut inner, uuid, proto, parked)
    }

    fn park_locked(
        &self,
        inner: &mut Inner,
        uuid: Uuid,
        proto: Proto,
        parked: Parked,
    ) -> Result<Option<Parked>, (TakeError, Parked)> {
        let Some(reg) = inner.regs.get_mut(&uuid) else {
            return Err((TakeError::NotRegistered, parked));
        };
        let pool = &reg.pools[proto.index()];
        // Sends happen only under the registry lock, so after taking the
        // oldest out there is room for this one.
        match pool.tx.try_send(parked) {
            Ok(()) => {
                inner.holding.parked(uuid, proto);
                Ok(None)
            }
            Err(TrySendError::Full(parked)) => {
                let evicted = pool.rx.try_recv().ok();
                match pool.tx.try_send(parked) {
                    Ok(()) => Ok(evicted),
                    Err(TrySendError::Full(p)) | Err(TrySendError::Disconnected(p)) => {
                        Err((TakeError::NotReady, p))
                    }
                }
            }
            Err(TrySendError::Disconnected(p)) => Err((TakeError::NotRegistered, p)),
        }
    }

    /// Take the oldest live responder for an `I` cookie, waiting until `deadline`.
    pub fn take(
        &self,
        cookie: &Cookie,
        proto: Proto,
        deadline: Instant,
    ) -> Result<(Uuid, Parked), TakeError> {
        let (uuid, rx) = {
            let inner = self.lock();
            if cookie.role() != Role::Initiator {
                return Err(TakeError::NotRegistered);
            }
            let uuid = *inner.cookies.get(cookie).ok_or(TakeError::NotRegistered)?;
            let reg = inner.regs.get(&uuid).ok_or(TakeError::NotRegistered)?;
            if reg.initiator != *cookie || !reg.live(self.clock.now()) {
                return Err(TakeError::NotRegistered);
            }
            (uuid, reg.pools[proto.index()].rx.clone())
        };
        wait_live(&rx, deadline).map(|p| (uuid, p))
    }

    /// Take the oldest live responder of `uuid` (HTTP-specific mobile clients).
    pub fn take_uuid(
        &self,
        uuid: &Uuid,
        proto: Proto,
        deadline: Instant,
    ) -> Result<Parked, TakeError> {
        let rx = {
            let inner = self.lock();
            let reg = inner.regs.get(uuid).ok_or(TakeError::NotRegistered)?;
            if !reg.live(self.clock.now()) {
                return Err(TakeError::NotRegistered);
            }
            reg.pools[proto.index()].rx.clone()
        };
        wait_live(&rx, deadline)
    }

    /// Forget the registrations of UUIDs that `keep` rejects (users removed
    /// from the file), closing their parked sockets. Returns how many.
    pub fn retain_users(&self, keep: impl Fn(&Uuid) -> bool) -> usize {
        let mut inner = self.lock();
        let gone: Vec<Uuid> = inner.regs.keys().filter(|u| !keep(u)).copied().collect();
        for uuid in &gone {
            if let Some(reg) = inner.regs.remove(uuid) {
                for pool in &reg.pools {
                    for p in pool.rx.try_iter() {
                        let _ = p.stream.tcp().shutdown(std::net::Shutdown::Both);
                    }
                }
                drop_registration(&mut inner.cookies, reg);
            }
        }
        gone.len()
    }

    /// Refuse new parks and close every parked socket (shutdown). Returns how many.
    pub fn close_all(&self) -> usize {
        let mut inner = self.lock();
        inner.closed = true;
        let mut n = 0;
        for reg in inner.regs.values() {
            for pool in &reg.pools {
                for p in pool.rx.try_iter() {
                    let _ = p.stream.tcp().shutdown(std::net::Shutdown::Both);
                    n += 1;
                }
            }
        }
        n
    }

    /// Counts for the log and metrics.
    pub fn stats(&self) -> Stats {
        let inner = self.lock();
        let mut s = Stats::default();
        for reg in inner.regs.values() {
            s.registrations += 1;
            s.parked_generic += reg.pools[0].rx.len();
            s.parked_http += reg.pools[1].rx.len();
        }
        s
    }
}

fn drop_registration(cookies: &mut HashMap<Cookie, Uuid>, reg: Registration) {
    cookies.remove(&reg.initiator);
    for c in reg.responders.keys() {
        cookies.remove(c);
    }
}

fn wait_live(rx: &Receiver<Parked>, deadline: Instant) -> Result<Parked, TakeError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(p) if alive(p.stream.tcp()) => return Ok(p),
            Ok(p) => {
                log::debug!(target: "rendezvous::registry", "conn={} parked socket dead on peek", p.conn);
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                return Err(TakeError::NotReady)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `R` cookie lives `cookie_ttl` from its last use, not from its
    /// issue; once lapsed it is gone for good.
    #[test]
    fn a_cookie_lives_its_ttl_from_its_last_use() {
        let ttl = Duration::from_secs(600);
        let reg = Registry::new(RegistryConfig {
            cookie_ttl: ttl,
            pool_max: 4,
        });
        let uuid = Uuid::new_v4();
        let t0 = Instant::now();
        let c = reg
            .register_with(uuid, || Ok::<(), ()>(()))
            .expect("registered");
        let s = Duration::from_secs;
        let mut inner = reg.lock();
        assert_eq!(reg.renew(&mut inner, &c, t0 + s(599)), Some(uuid));
        // Past the first expiry (t0 + 600 s): the use above renewed it.
        assert_eq!(reg.renew(&mut inner, &c, t0 + s(1100)), Some(uuid));
        // More than a TTL after the last use: lapsed, and stays so.
        assert_eq!(reg.renew(&mut inner, &c, t0 + s(1100) + ttl + s(1)), None);
        assert_eq!(reg.renew(&mut inner, &c, t0 + s(1100)), None);
        // An I cookie is never renewed as an R cookie.
        let i = inner
            .regs
            .get(&uuid)
            .map(|r| r.initiator)
            .expect("registration");
        assert_eq!(reg.renew(&mut inner, &i, t0), None);
    }
}
