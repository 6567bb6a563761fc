//! The relay: two threads per pair, one per direction, each reading into its
//! own buffer and writing it all to the other side. EOF on one side becomes
//! `shutdown(Write)` on the other (half-close, so the last bytes are never
//! lost); an error shuts both sides down; both directions done closes both.
//! Legs are a trait so plain TCP and TLS legs relay through the same loop.
//!
//! `splice` moves a plain pair's bytes in the kernel (with its budget of
//! enlarged pipes), `pump` through user memory, `tls_leg` is a TLS
//! connection shared by a pair's two threads, and `pairs` the set of pairs
//! relaying now, for the drain and the metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use crate::threads::Handoff;
use std::sync::Arc;
use std::time::Instant;

/// One direction: `splice(2)` between two TCP sockets where possible, else
/// the portable copy loop.
fn direction(src: &dyn Leg, dst: &dyn Leg, counter: &AtomicU64) {
    #[cfg(target_os = "linux")]
    if let (Some(s), Some(d)) = (src.tcp(), dst.tcp()) {
        if splice::pump(s, d, counter).is_ok() {
            return;
        }
    }
    pump(src, dst, counter)
}

mod leg;
mod pairs;
mod pump;
#[cfg(target_os = "linux")]
mod splice;
mod tls_leg;

pub use leg::{Leg, Totals};
pub use pairs::ActivePairs;
use pump::pump;
pub use tls_leg::TlsLeg;

/// Gives the relay's own thread its go-ahead when dropped: the other
/// direction's thread is done with its closure, ended or unwound by a panic.
struct Opened(Arc<Handoff<()>>);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.give(());
    }
}

/// Which direction the calling thread relays; a thread of the pool takes
/// the other. The caller's runs at once, the other only once its thread
/// wakes (20 µs or more on a loaded machine), so the caller takes the one
/// whose bytes come first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum First {
    /// Initiator to responder: the mobile client's bytes are expected first.
    Up,
    /// Responder to initiator: the client's first bytes went ahead with the
    /// `+OK`, so the answer comes first.
    Down,
}

/// Relay until both directions end. `initiator` is the mobile client's leg.
/// The pair is listed in `pairs` (when given) so a drain can abort it.
pub fn relay(
    initiator: Arc<dyn Leg>,
    responder: Arc<dyn Leg>,
    pairs: Option<&ActivePairs>,
) -> Totals {
    relay_first(initiator, responder, pairs, First::Up)
}

/// [`relay`], with the calling thread on the `first` direction.
pub fn relay_first(
    initiator: Arc<dyn Leg>,
    responder: Arc<dyn Leg>,
    pairs: Option<&ActivePairs>,
    first: First,
) -> Totals {
    let start = Instant::now();
    let up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    let _entry = pairs.map(|p| p.add(initiator.clone(), responder.clone()));
    // (from, to, count) for this thread and for the other.
    let ways = |d: First| match d {
        First::Up => (initiator.clone(), responder.clone(), up.clone()),
        First::Down => (responder.clone(), initiator.clone(), down.clone()),
    };
    let (from, to, count) = ways(first);
    let other = ways(match first {
        First::Up => First::Down,
        First::Down => First::Up,
    });
    let done = Arc::new(Handoff::default());
    let opened = Opened(done.clone());
    let spawned = crate::threads::spawn("relay".to_string(), move || {
        let _opened = opened;
        let (from, to, count) = other;
        direction(&*from, &*to, &count);
    });
    match spawned {
        Ok(()) => {
            direction(&*from, &*to, &count);
            done.wait(None);
        }
        Err(e) => {
            log::warn!(target: "rendezvous::relay", "cannot start a relay thread: {e}");
            initiator.abort();
            responder.abort();
        }
    }
    Totals {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        duration: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::net::{Shutdown, TcpStream};
    use std::thread;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    #[test]
    fn half_close_keeps_the_reply() {
        // client <-> (x relay y) <-> server
        let (mut client, x) = pair();
        let (y, mut server) = pair();
        let pairs = ActivePairs::new();
        thread::scope(|s| {
            let h = s.spawn(|| relay(Arc::new(x), Arc::new(y), Some(&pairs)));
            client.write_all(b"request").expect("write");
            client.shutdown(Shutdown::Write).expect("half-close");
            let mut got = Vec::new();
            server.read_to_end(&mut got).expect("server reads to EOF");
            assert_eq!(got, b"request");
            server.write_all(b"the whole reply").expect("reply");
            drop(server);
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).expect("client reads");
            assert_eq!(reply, b"the whole reply");
            let t = h.join().expect("relay");
            assert_eq!((t.up, t.down), (7, 15));
        });
        assert_eq!(pairs.active(), 0);
    }

    /// Run one spliced direction from `x` to `y` while `drive` talks to both
    /// ends; returns whether its pipe was enlarged.
    #[cfg(target_os = "linux")]
    fn pumped(drive: impl FnOnce(&mut TcpStream, &mut TcpStream)) -> bool {
        let (mut client, x) = pair();
        let (y, mut server) = pair();
        let counter = AtomicU64::new(0);
        thread::scope(|s| {
            let h = s.spawn(|| splice::pump(&x, &y, &counter));
            drive(&mut client, &mut server);
            h.join().expect("pump").expect("splice works on TCP")
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn small_exchanges_keep_the_default_pipe() {
        let grown = pumped(|client, server| {
            for i in 0..50u8 {
                client.write_all(&[i; 100]).expect("write");
                let mut got = [0u8; 100];
                server.read_exact(&mut got).expect("read");
                assert_eq!(got, [i; 100]);
            }
            client.shutdown(Shutdown::Write).expect("half-close");
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).expect("EOF");
            assert!(rest.is_empty());
        });
        assert!(!grown, "a pair of small exchanges took an enlarged pipe");
    }

    /// Whether this user may have a pipe of PIPE_SIZE at all (an
    /// unprivileged user past fs.pipe-user-pages-soft may not).
    #[cfg(target_os = "linux")]
    fn can_grow() -> bool {
        let (_r, w) = rustix::pipe::pipe().expect("pipe");
        rustix::pipe::fcntl_setpipe_size(&w, crate::limits::PIPE_SIZE).is_ok()
    }

    /// 8 MiB through one spliced direction at full speed, checked with
    /// SHA-256; whether its pipe was enlarged.
    #[cfg(target_os = "linux")]
    fn bulk() -> bool {
        use ring::digest::{digest, SHA256};
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        pumped(|client, server| {
            thread::scope(|s| {
                s.spawn(|| {
                    client.write_all(&data).expect("write");
                    client.shutdown(Shutdown::Write).expect("half-close");
                });
                let mut got = Vec::new();
                server.read_to_end(&mut got).expect("read");
                assert_eq!(
                    digest(&SHA256, &got).as_ref(),
                    digest(&SHA256, &data).as_ref()
                );
            });
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_bulk_transfer_enlarges_its_pipe() {
        assert_eq!(bulk(), can_grow(), "8 MiB at full speed");
    }

    /// More idle pairs than there are enlarged pipes do not keep a later bulk
    /// transfer on the default pipe.
    #[cfg(target_os = "linux")]
    #[test]
    fn idle_pairs_leave_the_enlarged_pipes_to_bulk() {
        let n = crate::limits::MAX_BIG_PIPES + 8;
        let counter = AtomicU64::new(0);
        thread::scope(|s| {
            let mut idle = Vec::new();
            for _ in 0..n {
                let (client, x) = pair();
                let (y, mut server) = pair();
                let counter = &counter;
                let h = s.spawn(move || splice::pump(&x, &y, counter));
                client.write_all(b"x").expect("write");
                let mut b = [0u8; 1];
                server.read_exact(&mut b).expect("read");
                idle.push((client, server, h));
            }
            assert_eq!(bulk(), can_grow(), "bulk after {n} idle pairs");
            for (client, _server, h) in idle {
                client.shutdown(Shutdown::Write).expect("half-close");
                let grown = h.join().expect("pump").expect("splice");
                assert!(!grown, "an idle pair took an enlarged pipe");
            }
        });
    }
}
