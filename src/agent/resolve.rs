//! Host names resolved at most once a minute, not once per connection.
//! `connect --listen` resolved the rendezvous server's name (the triple's
//! host, the name the registrar was asked by) for every client, and
//! `expose` its `--to` for every pairing and the server's name for every
//! parked connection: each a DNS round trip, on the path to the answer,
//! wherever no local cache answers (an embedded gateway has none).
//!
//! A name is kept for [`RESOLVED_TTL`]. When none of its kept addresses
//! takes a connection it is looked up again at once and the new ones are
//! tried (a server that moved is found by that connection, not a minute
//! later). The address that took the last connection is tried first, also
//! after a new lookup. Addresses written as such are never looked up or
//! kept.

use crate::limits::RESOLVED_TTL;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most names kept: a client talks to a registrar or a few, their
/// rendezvous servers, and one local service.
const KEPT: usize = 8;

/// The names of this process.
static NAMES: Names = Names::new(RESOLVED_TTL);

struct Entry {
    name: String,
    addrs: Vec<SocketAddr>,
    at: Instant,
}

/// Resolved names and when.
struct Names {
    kept: Mutex<Vec<Entry>>,
    ttl: Duration,
}

impl Names {
    const fn new(ttl: Duration) -> Names {
        Names {
            kept: Mutex::new(Vec::new()),
            ttl,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The addresses of `name`, and whether they were kept: kept ones
    /// younger than the TTL, else what `resolve` finds (called without the
    /// lock: a slow resolver holds up no other name), the address that took
    /// the last connection still first.
    fn addrs(
        &self,
        name: &str,
        resolve: impl Fn() -> io::Result<Vec<SocketAddr>>,
    ) -> io::Result<(Vec<SocketAddr>, bool)> {
        let mut preferred = None;
        if let Some(e) = self.kept().iter().find(|e| e.name == name) {
            if e.at.elapsed() < self.ttl {
                return Ok((e.addrs.clone(), true));
            }
            preferred = e.addrs.first().copied();
        }
        let mut addrs = resolve()?;
        if addrs.is_empty() {
            return Ok((addrs, false));
        }
        if let Some(i) = addrs.iter().position(|&a| Some(a) == preferred) {
            addrs[..=i].rotate_right(1);
        }
        let mut kept = self.kept();
        kept.retain(|e| e.name != name);
        if kept.len() >= KEPT {
            if let Some(oldest) = (0..kept.len()).min_by_key(|&i| kept[i].at) {
                kept.swap_remove(oldest);
            }
        }
        kept.push(Entry {
            name: name.to_string(),
            addrs: addrs.clone(),
            at: Instant::now(),
        });
        Ok((addrs, false))
    }

    /// `addr` of `name` took a connection where those before it did not
    /// (`localhost` is `::1` first, and a service may listen on
    /// 127.0.0.1 only): it is tried first from now on.
    fn first(&self, name: &str, addr: SocketAddr) {
        if let Some(e) = self.kept().iter_mut().find(|e| e.name == name) {
            if let Some(i) = e.addrs.iter().position(|&a| a == addr) {
                e.addrs[..=i].rotate_right(1);
            }
        }
    }

    fn forget(&self, name: &str) {
        self.kept().retain(|e| e.name != name);
    }

    /// Connect to the first of `name`'s addresses that takes a connection
    /// within `timeout`. When none of the kept ones does, the name is
    /// looked up again at once (the server may have moved) and the new
    /// addresses tried; when none does, `name` is forgotten. The error is
    /// the resolver's (`Err(Ok)`) or the last connect's (`Err(Err)`).
    fn connect(
        &self,
        name: &str,
        timeout: Duration,
        resolve: impl Fn() -> io::Result<Vec<SocketAddr>>,
    ) -> Result<TcpStream, Result<io::Error, io::Error>> {
        let (addrs, kept) = self.addrs(name, &resolve).map_err(Ok)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{name}: no address"));
        if let Some(s) = self.first_taker(name, &addrs, timeout, &mut last) {
            return Ok(s);
        }
        self.forget(name);
        if kept {
            let (fresh, _) = self.addrs(name, &resolve).map_err(Ok)?;
            let new: Vec<SocketAddr> = fresh.into_iter().filter(|a| !addrs.contains(a)).collect();
            if let Some(s) = self.first_taker(name, &new, timeout, &mut last) {
                return Ok(s);
            }
            self.forget(name);
        }
        Err(Err(last))
    }

    /// The first of `addrs` to take a connection (put first among `name`'s
    /// from now on); `last` is the last one's error.
    fn first_taker(
        &self,
        name: &str,
        addrs: &[SocketAddr],
        timeout: Duration,
        last: &mut io::Error,
    ) -> Option<TcpStream> {
        for (i, a) in addrs.iter().enumerate() {
            match TcpStream::connect_timeout(a, timeout) {
                Ok(s) => {
                    if i > 0 {
                        self.first(name, *a);
                    }
                    return Some(s);
                }
                Err(e) => *last = e,
            }
        }
        None
    }
}

/// A connection to `host` (a name or an address) at `port`, each address
/// given `timeout`. Errors: `Err(Ok(e))` when the name did not resolve,
/// `Err(Err(e))` with the last address's error.
pub(super) fn connect_host(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, Result<io::Error, io::Error>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout).map_err(Err);
    }
    let key = format!("{host}:{port}");
    NAMES.connect(&key, timeout, || {
        (host, port).to_socket_addrs().map(Iterator::collect)
    })
}

/// A connection to `to` (`HOST:PORT`, as `--to` takes it), each address
/// given `timeout`.
pub(super) fn connect_to(to: &str, timeout: Duration) -> io::Result<TcpStream> {
    if let Ok(a) = to.parse::<SocketAddr>() {
        return TcpStream::connect_timeout(&a, timeout);
    }
    NAMES
        .connect(to, timeout, || to.to_socket_addrs().map(Iterator::collect))
        .map_err(|e| e.unwrap_or_else(|e| e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::net::TcpListener;

    /// A resolver that counts its calls and answers what `addrs` holds.
    fn counting<'a>(
        calls: &'a Cell<u32>,
        addrs: &'a RefCell<Vec<SocketAddr>>,
    ) -> impl Fn() -> io::Result<Vec<SocketAddr>> + 'a {
        move || {
            calls.set(calls.get() + 1);
            Ok(addrs.borrow().clone())
        }
    }

    /// An address where nothing listens now.
    fn refusing() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }

    #[test]
    fn a_name_is_resolved_once_until_it_ages_or_fails() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let names = Names::new(Duration::from_secs(60));
        let (calls, answer) = (Cell::new(0), RefCell::new(vec![l.local_addr().expect("addr")]));
        let t = Duration::from_secs(5);
        for _ in 0..3 {
            names
                .connect("rv.example:1", t, counting(&calls, &answer))
                .expect("connects");
        }
        assert_eq!(calls.get(), 1, "resolved once for three connections");
        // The server moved: its kept address refuses, and the same
        // connection looks the name up again and reaches the new one.
        let moved = TcpListener::bind("127.0.0.1:0").expect("bind");
        drop(l);
        *answer.borrow_mut() = vec![moved.local_addr().expect("addr")];
        names
            .connect("rv.example:1", t, counting(&calls, &answer))
            .expect("the new address");
        assert_eq!(calls.get(), 2);
        // Nothing answers at all: forgotten, so looked up next time.
        drop(moved);
        assert!(names
            .connect("rv.example:1", t, counting(&calls, &answer))
            .is_err());
        assert_eq!(calls.get(), 3, "looked up again once, in the same call");
        assert!(names.kept().iter().all(|e| e.name != "rv.example:1"));
    }

    #[test]
    fn the_address_that_took_the_last_connection_stays_first() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let both = vec![refusing(), l.local_addr().expect("addr")];
        let (calls, answer) = (Cell::new(0), RefCell::new(both.clone()));
        let t = Duration::from_secs(5);
        let names = Names::new(Duration::from_secs(60));
        names
            .connect("two:1", t, counting(&calls, &answer))
            .expect("the second address");
        let (kept, from_cache) = names.addrs("two:1", counting(&calls, &answer)).expect("addrs");
        assert_eq!((kept, from_cache), (vec![both[1], both[0]], true));
        // Aged out and looked up again: the resolver's order is the old
        // one, the address that worked still goes first.
        let aged = Names::new(Duration::ZERO);
        aged.connect("two:1", t, counting(&calls, &answer))
            .expect("the second address");
        let (again, from_cache) = aged.addrs("two:1", counting(&calls, &answer)).expect("addrs");
        assert_eq!((again, from_cache), (vec![both[1], both[0]], false));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn at_most_eight_names_are_kept_and_failures_are_not() {
        let names = Names::new(Duration::from_secs(60));
        let (calls, a) = (Cell::new(0), RefCell::new(vec![refusing()]));
        for i in 0..10 {
            names
                .addrs(&format!("n{i}:1"), counting(&calls, &a))
                .expect("addrs");
        }
        assert_eq!(names.kept().len(), KEPT);
        // The oldest went: n0 and n1 are resolved again, n9 is not.
        names.addrs("n9:1", counting(&calls, &a)).expect("addrs");
        assert_eq!(calls.get(), 10);
        names.addrs("n0:1", counting(&calls, &a)).expect("addrs");
        assert_eq!(calls.get(), 11);
        let failing = || Err(io::Error::new(io::ErrorKind::NotFound, "no such name"));
        assert!(names.addrs("gone:1", failing).is_err());
        assert!(names.kept().iter().all(|e| e.name != "gone:1"));
    }
}
