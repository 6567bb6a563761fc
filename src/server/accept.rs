//! The accept loop: one thread per listener that only accepts. It enforces
//! `--max-connections` (a slot per socket, held until the socket closes, parked
//! or not) and, per source address, a cap on connections that have proved no
//! credential yet; at the global cap it closes the registrar connection idle
//! longest between keep-alive requests before it refuses anybody. It backs off
//! on errors such as EMFILE instead of exiting, names each connection thread
//! `conn-<id>` with a small explicit stack, and is woken for shutdown by a
//! connection to itself. No TLS and no reads happen here.

use crate::limits::MAX_UNAUTH_PER_ADDR;
use crate::ratelimit::RateLimit;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The shared connection count and id source.
#[derive(Debug, Default)]
pub struct Conns {
    open: AtomicUsize,
    next_id: AtomicU64,
    refused: AtomicU64,
    refused_per_addr: AtomicU64,
    reclaimed: AtomicU64,
    unauth: std::sync::Mutex<HashMap<IpAddr, usize>>,
    /// Registrar connections idle between keep-alive requests: when they
    /// went idle, and a handle to close them with.
    idle: std::sync::Mutex<HashMap<u64, (Instant, TcpStream)>>,
}

impl Conns {
    /// Sockets open now (including parked ones).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Sockets refused at a limit so far (both limits together).
    pub fn refused(&self) -> u64 {
        let (a, b) = self.refused_by_limit();
        a + b
    }

    /// Sockets refused at `--max-connections`, and at the per-address cap.
    pub fn refused_by_limit(&self) -> (u64, u64) {
        (
            self.refused.load(Ordering::Relaxed),
            self.refused_per_addr.load(Ordering::Relaxed),
        )
    }

    /// Idle keep-alive connections closed to make room at the global cap.
    pub fn reclaimed(&self) -> u64 {
        self.reclaimed.load(Ordering::Relaxed)
    }

    /// Mark connection `id` idle between keep-alive requests until the guard
    /// drops: at the global cap it may be closed to make room for a new one.
    /// `None` if its socket cannot be shared (it is then never reclaimed).
    pub fn idle(self: &Arc<Self>, id: u64, sock: &TcpStream) -> Option<IdleGuard> {
        let handle = sock.try_clone().ok()?;
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, (Instant::now(), handle));
        Some(IdleGuard {
            conns: self.clone(),
            id,
        })
    }

    /// Close the connection idle longest, if there is one. Its thread sees
    /// the socket closed and ends, freeing its slot.
    fn reclaim_idle(&self) -> bool {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(oldest) = idle
            .iter()
            .min_by_key(|(_, (since, _))| *since)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some((_, sock)) = idle.remove(&oldest) {
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        self.reclaimed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A fresh connection id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn try_unauth(self: &Arc<Self>, ip: IpAddr) -> Option<PreAuth> {
        let place = self.unauth_place(ip);
        if place.is_none() {
            self.refused_per_addr.fetch_add(1, Ordering::Relaxed);
        }
        place
    }

    /// A place among `ip`'s unauthenticated connections, if it has one left.
    fn unauth_place(self: &Arc<Self>, ip: IpAddr) -> Option<PreAuth> {
        let mut m = self
            .unauth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_UNAUTH_PER_ADDR {
            return None;
        }
        *n += 1;
        Some(PreAuth {
            conns: self.clone(),
            ip,
        })
    }

    fn try_slot(self: &Arc<Self>, max: usize) -> Option<ConnSlot> {
        let mut cur = self.open.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return None;
            }
            match self
                .open
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(ConnSlot(self.clone())),
                Err(now) => cur = now,
            }
        }
    }

    /// A slot past the cap, for a connection let in because an idle one was
    /// closed: the count is back under the cap once that one's thread ends.
    fn force_slot(self: &Arc<Self>) -> ConnSlot {
        self.open.fetch_add(1, Ordering::AcqRel);
        ConnSlot(self.clone())
    }

    /// Take a slot: under the cap, or by closing the idle connection idle
    /// longest. `None` (counted as refused) when neither is possible.
    fn admit(self: &Arc<Self>, max: usize) -> Option<ConnSlot> {
        if let Some(slot) = self.try_slot(max) {
            return Some(slot);
        }
        if self.reclaim_idle() {
            return Some(self.force_slot());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A connection marked idle between keep-alive requests; unmarked on drop.
#[derive(Debug)]
pub struct IdleGuard {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for IdleGuard {
    fn drop(&mut self) {
        self.conns
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// One socket's place in the `--max-connections` count; freed on drop.
#[derive(Debug)]
pub struct ConnSlot(Arc<Conns>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection from `ip` that has proved no credential yet (TLS handshake,
/// request heads, idle between keep-alive requests, the cookie line);
/// counted against [`MAX_UNAUTH_PER_ADDR`] until dropped, which its owner
/// does once the connection is parked or paired.
#[derive(Debug)]
pub struct PreAuth {
    conns: Arc<Conns>,
    ip: IpAddr,
}

impl PreAuth {
    /// Give the place up (an initiator waiting for a responder holds none),
    /// keeping what takes one again for the same address.
    pub fn release(self) -> Unproven {
        Unproven {
            conns: self.conns.clone(),
            ip: self.ip,
        }
    }
}

/// A connection that gave its [`PreAuth`] place up for a while.
#[derive(Debug)]
pub struct Unproven {
    conns: Arc<Conns>,
    ip: IpAddr,
}

impl Unproven {
    /// A place again (a refused initiator, while it is drained), unless
    /// the address has none left.
    pub fn again(&self) -> Option<PreAuth> {
        self.conns.unauth_place(self.ip)
    }
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        let mut m = self
            .conns
            .unauth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// An accepted socket handed to a connection thread.
#[derive(Debug)]
pub struct Accepted {
    /// The socket.
    pub stream: TcpStream,
    /// The peer.
    pub peer: SocketAddr,
    /// The connection id (for `conn=` in the log).
    pub id: u64,
    /// Its connection slot.
    pub slot: ConnSlot,
    /// Its place in the per-address count of connections that proved no
    /// credential; drop it once the connection is parked or paired.
    pub pre_auth: PreAuth,
}

/// A running accept loop.
pub struct AcceptLoop {
    name: &'static str,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

fn transient_resource_error(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for descriptors or memory to free up.
    matches!(e.raw_os_error(), Some(23) | Some(24) | Some(105) | Some(12))
}

impl AcceptLoop {
    /// Start accepting on `listener` (already bound). Each accepted socket gets
    /// a slot and its own thread running `handle`.
    pub fn spawn<F>(
        name: &'static str,
        listener: TcpListener,
        conns: Arc<Conns>,
        max_connections: usize,
        handle: F,
    ) -> io::Result<AcceptLoop>
    where
        F: Fn(Accepted) + Send + Sync + 'static,
    {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle: Arc<dyn Fn(Accepted) + Send + Sync> = Arc::new(handle);
        let thread = crate::threads::start(format!("accept-{name}"), move || {
            run(name, &listener, &conns, max_connections, &stop2, &handle)
        })?;
        Ok(AcceptLoop {
            name,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The listener's name (`registrar`, `rendezvous`, `metrics`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting: set the flag, wake the blocked `accept()` by connecting
    /// to ourselves, and join the thread. The listener closes with it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

/// The accept loop of one listener, until `stop` is set (and a connection
/// wakes the blocked `accept`).
fn run(
    name: &'static str,
    listener: &TcpListener,
    conns: &Arc<Conns>,
    max_connections: usize,
    stop: &AtomicBool,
    handle: &Arc<dyn Fn(Accepted) + Send + Sync>,
) {
    let cap_warn = RateLimit::new(Duration::from_secs(10));
    let err_warn = RateLimit::new(Duration::from_secs(10));
    let addr_warn = RateLimit::new(Duration::from_secs(10));
    let mut backoff = Duration::from_millis(10);
    loop {
        let res = listener.accept();
        if stop.load(Ordering::Acquire) {
            break;
        }
        let (stream, peer) = match res {
            Ok(x) => {
                backoff = Duration::from_millis(10);
                x
            }
            Err(e) if transient_resource_error(&e) => {
                if err_warn.ready() {
                    log::warn!(target: "rendezvous::accept", "accept on {name} failed: {e}; backing off");
                }
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                log::debug!(target: "rendezvous::accept", "accept on {name}: {e}");
                continue;
            }
        };
        let Some(slot) = conns.admit(max_connections) else {
            if cap_warn.ready() {
                log::warn!(target: "rendezvous::accept", "connection cap reached ({max_connections}); refusing peer={peer}");
            }
            drop(stream);
            continue;
        };
        let Some(pre_auth) = conns.try_unauth(peer.ip()) else {
            if addr_warn.ready() {
                log::warn!(target: "rendezvous::accept", "too many unauthenticated connections from peer={}; refusing", peer.ip());
            }
            drop(stream);
            continue;
        };
        let id = conns.next_id();
        log::debug!(target: "rendezvous::accept", "conn={id} accepted peer={peer} listener={name}");
        let h = Arc::clone(handle);
        let spawned = crate::threads::spawn(format!("conn-{id}"), move || {
            h(Accepted {
                stream,
                peer,
                id,
                slot,
                pre_auth,
            })
        });
        if let Err(e) = spawned {
            if err_warn.ready() {
                log::warn!(target: "rendezvous::accept", "cannot start a connection thread: {e}");
            }
            thread::sleep(backoff);
        }
    }
    log::debug!(target: "rendezvous::accept", "accept loop {name} stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_UNAUTH_PER_ADDR;

    /// The handshake cap counts per source address: one address at its cap
    /// does not keep another out, and a connection past its head frees a
    /// place. (Synthetic addresses: the socket tests use 127.0.0.1 only.)
    #[test]
    fn the_handshake_cap_is_per_address() {
        let conns = Arc::new(Conns::default());
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        let mut held: Vec<PreAuth> = (0..MAX_UNAUTH_PER_ADDR)
            .map(|i| conns.try_unauth(a).unwrap_or_else(|| panic!("place {i}")))
            .collect();
        assert!(conns.try_unauth(a).is_none(), "one too many from a");
        let from_b = conns.try_unauth(b);
        assert!(from_b.is_some(), "b is not held back by a");
        drop(held.pop());
        let freed = conns.try_unauth(a);
        assert!(freed.is_some(), "a place freed");
        assert_eq!(conns.refused_by_limit().1, 1, "one refusal counted");
        // Given up while a pairing waits, taken again for a refusal's
        // drain only while the address has room.
        let unproven = freed.expect("freed").release();
        let again = unproven.again();
        assert!(again.is_some(), "room for the drain");
        assert!(unproven.again().is_none(), "at the limit: no drain");
        assert_eq!(conns.refused_by_limit().1, 1, "a drain refused is no refusal");
    }
}
