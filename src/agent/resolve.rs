//! Host names resolved at most once a minute, not once per connection.
//! `connect --listen` resolved the rendezvous server's name (the triple's
//! host, the name the registrar was asked by) for every client, and
//! `expose` its `--to` for every pairing and the server's name for every
//! parked connection: each a DNS round trip, on the path to the answer,
//! wherever no local cache answers (an embedded gateway has none).
//!
//! A name is kept for [`RESOLVED_TTL`]; one none of whose addresses took
//! a connection is forgotten, and the next connection resolves it again
//! (a server that moved is found at once, not a minute later). Addresses
//! written as such are never looked up or kept.

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

    /// The addresses of `name`: kept ones younger than the TTL, else what
    /// `resolve` finds (called without the lock: a slow resolver holds up
    /// no other name).
    fn addrs(
        &self,
        name: &str,
        resolve: impl FnOnce() -> io::Result<Vec<SocketAddr>>,
    ) -> io::Result<Vec<SocketAddr>> {
        if let Some(e) = self
            .kept()
            .iter()
            .find(|e| e.name == name && e.at.elapsed() < self.ttl)
        {
            return Ok(e.addrs.clone());
        }
        let addrs = resolve()?;
        if addrs.is_empty() {
            return Ok(addrs);
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
        Ok(addrs)
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
    /// within `timeout`; when none does, `name` is forgotten. The error is
    /// the resolver's (`Err(Ok)`) or the last connect's (`Err(Err)`).
    fn connect(
        &self,
        name: &str,
        timeout: Duration,
        resolve: impl FnOnce() -> io::Result<Vec<SocketAddr>>,
    ) -> Result<TcpStream, Result<io::Error, io::Error>> {
        let addrs = self.addrs(name, resolve).map_err(Ok)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{name}: no address"));
        for (i, a) in addrs.iter().enumerate() {
            match TcpStream::connect_timeout(a, timeout) {
                Ok(s) => {
                    if i > 0 {
                        self.first(name, *a);
                    }
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        self.forget(name);
        Err(Err(last))
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
    use std::cell::Cell;
    use std::net::TcpListener;

    /// A resolver that counts its calls and answers `addrs`.
    fn counting<'a>(
        calls: &'a Cell<u32>,
        addrs: &'a [SocketAddr],
    ) -> impl FnOnce() -> io::Result<Vec<SocketAddr>> + 'a {
        move || {
            calls.set(calls.get() + 1);
            Ok(addrs.to_vec())
        }
    }

    #[test]
    fn a_name_is_resolved_once_until_it_ages_or_fails() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let live = [l.local_addr().expect("addr")];
        let names = Names::new(Duration::from_secs(60));
        let calls = Cell::new(0);
        let t = Duration::from_secs(5);
        for _ in 0..3 {
            names
                .connect("rv.example:1", t, counting(&calls, &live))
                .expect("connects");
        }
        assert_eq!(calls.get(), 1, "resolved once for three connections");
        // Its one address refuses now: forgotten, so resolved again.
        let port = live[0].port();
        drop(l);
        assert!(names
            .connect("rv.example:1", t, counting(&calls, &live))
            .is_err());
        assert_eq!(calls.get(), 1);
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind again");
        names
            .connect("rv.example:1", t, counting(&calls, &live))
            .expect("connects");
        assert_eq!(calls.get(), 2, "resolved again after the failure");
        drop(l);
        // An address that refuses is passed over once, not each time.
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let refusing = TcpListener::bind("127.0.0.1:0").expect("bind");
        let both = [refusing.local_addr().expect("addr"), l.local_addr().expect("addr")];
        drop(refusing);
        names
            .connect("two:1", t, counting(&calls, &both))
            .expect("the second address");
        let kept = names.addrs("two:1", counting(&calls, &both)).expect("addrs");
        assert_eq!(kept, [both[1], both[0]]);
        assert_eq!(calls.get(), 3);
        // Too old: resolved again.
        let young = Names::new(Duration::ZERO);
        young.addrs("a:1", counting(&calls, &live)).expect("addrs");
        young.addrs("a:1", counting(&calls, &live)).expect("addrs");
        assert_eq!(calls.get(), 5);
    }

    #[test]
    fn at_most_eight_names_are_kept_and_failures_are_not() {
        let names = Names::new(Duration::from_secs(60));
        let calls = Cell::new(0);
        let a = ["127.0.0.1:1".parse().expect("addr")];
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
