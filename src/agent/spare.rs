//! `connect --listen`'s spare: while clients keep coming, one connection
//! to the rendezvous server is made before the next one needs it. That
//! client's cookie line then goes out on a connection the server has
//! already accepted and given a thread, which takes the TCP handshake (a
//! round trip on a real link), the server's accept and its hand-over to
//! that thread off the path to the answer.
//!
//! One thread, the keeper, makes spares: the first after a pairing, the
//! next each time one is taken. It closes one that no client took within
//! [`SPARE_MAX_AGE`] and ends, so an idle `connect --listen` holds nothing
//! and wakes for nothing. A client never waits for a spare: without one it
//! connects, as it did before.
//!
//! A spare is used only when it is young enough and the server has not
//! closed it (a peek without waiting). One the server closed at 1 s or
//! more had outlived its `--handshake-timeout`: the age allowed is then
//! half the one it reached, so a server with a shorter timeout than the
//! default is learned, not raced.

use crate::agent::rendezvous::connect_rendezvous;
use crate::limits::SPARE_MAX_AGE;
use crate::wire::Triple;
use rustix::net::RecvFlags;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const T: &str = "rendezvous::mobile";

/// The shortest `--handshake-timeout` rendezvousd takes.
const HANDSHAKE_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// At most one spare connection, and its keeper's state.
pub(super) struct Spares {
    state: Mutex<State>,
    /// Signalled when the spare is taken.
    taken: Condvar,
    /// How old a spare may be when used, in milliseconds.
    max_age_ms: AtomicU64,
    /// A spare closed at this age or older outlived the server's
    /// `--handshake-timeout` ([`HANDSHAKE_TIMEOUT_MIN`]; tests change it).
    learn_from: Duration,
}

#[derive(Default)]
struct State {
    spare: Option<Spare>,
    /// Where spares are made: the server of the last pairing.
    target: Option<Triple>,
    /// The keeper thread runs.
    keeping: bool,
}

struct Spare {
    sock: TcpStream,
    host: String,
    port: u16,
    made: Instant,
    /// Its counts once made (before any byte went out).
    counts: Option<Counts>,
}

/// A spare handed to a client.
pub(super) struct Taken {
    pub(super) sock: TcpStream,
    /// How old it was.
    pub(super) age: Duration,
    /// Its counts before the client's cookie line went out.
    pub(super) counts: Option<Counts>,
}

/// What a connection's peer acknowledged and sent (`tcpi_bytes_acked`,
/// where our SYN counts one, and `tcpi_bytes_received`, where its FIN
/// counts one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) acked: u64,
    pub(super) received: u64,
}

impl Counts {
    /// `sock`'s, where the kernel says (Linux 4.2 and later).
    pub(super) fn of(sock: &TcpStream) -> Option<Counts> {
        let info = crate::tcp_info::tcp_info(sock).ok()?;
        Some(Counts {
            acked: info.bytes_acked?,
            received: info.bytes_received?,
        })
    }
}

impl Spares {
    pub(super) fn new() -> Spares {
        Spares::with_max_age(SPARE_MAX_AGE)
    }

    fn with_max_age(age: Duration) -> Spares {
        Spares {
            state: Mutex::default(),
            taken: Condvar::new(),
            max_age_ms: AtomicU64::new(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            learn_from: HANDSHAKE_TIMEOUT_MIN,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms.load(Ordering::Relaxed))
    }

    /// A client was just paired through `triple`'s server: keep a spare
    /// there for the next one (the keeper starts unless it runs).
    pub(super) fn keep(self: &Arc<Self>, triple: &Triple) {
        let mut st = self.state();
        let same = |t: &Triple| t.host == triple.host && t.port == triple.port;
        if !st.target.as_ref().is_some_and(same) {
            // Another server: what was learned of the last one's timeout
            // does not hold for it.
            if st.target.is_some() {
                let full = u64::try_from(SPARE_MAX_AGE.as_millis()).unwrap_or(u64::MAX);
                self.max_age_ms.store(full, Ordering::Relaxed);
            }
            st.target = Some(triple.clone());
        }
        if st.keeping || self.max_age().is_zero() {
            return;
        }
        st.keeping = true;
        drop(st);
        let me = self.clone();
        if let Err(e) = crate::threads::spawn("spare".into(), move || me.keeper()) {
            log::debug!(target: T, "no spare connections: {e}");
            self.state().keeping = false;
        }
    }

    /// Make a spare, wait until it is taken and make the next; end when
    /// one grew too old unused, or one could not be made.
    fn keeper(&self) {
        loop {
            let Some(target) = self.state().target.clone() else {
                break;
            };
            let sock = match connect_rendezvous(&target) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!(target: T, "no spare connection: {e}");
                    break;
                }
            };
            let counts = Counts::of(&sock);
            let mut st = self.state();
            st.spare = Some(Spare {
                sock,
                host: target.host,
                port: target.port,
                made: Instant::now(),
                counts,
            });
            log::debug!(target: T, "spare connection ready");
            while let Some(spare) = &st.spare {
                let left = self.max_age().saturating_sub(spare.made.elapsed());
                if left.is_zero() {
                    // No client came: closed, and the keeper rests.
                    st.spare = None;
                    st.keeping = false;
                    return;
                }
                st = match self.taken.wait_timeout(st, left) {
                    Ok((st, _)) => st,
                    Err(p) => p.into_inner().0,
                };
            }
        }
        self.state().keeping = false;
    }

    /// The spare, when one is held for `triple`'s server, young enough,
    /// and still open. Taken either way: a spare is tried once.
    pub(super) fn take(&self, triple: &Triple) -> Option<Taken> {
        let spare = self.state().spare.take()?;
        self.taken.notify_one();
        let age = spare.made.elapsed();
        if spare.host != triple.host || spare.port != triple.port || age >= self.max_age() {
            return None;
        }
        let peek = RecvFlags::PEEK | RecvFlags::DONTWAIT;
        match rustix::net::recv(&spare.sock, &mut [0u8; 1], peek) {
            Err(rustix::io::Errno::AGAIN) => Some(Taken {
                sock: spare.sock,
                age,
                counts: spare.counts,
            }),
            // Closed (or a byte the server should not have sent).
            _ => {
                self.closed_at(age);
                None
            }
        }
    }

    /// The server closed a spare `age` old before it read a byte: seen by
    /// the peek in [`Spares::take`], or, when the close crossed the cookie
    /// line, by a line it never acknowledged (`agent::dial`).
    pub(super) fn closed_at(&self, age: Duration) {
        // Sooner than any --handshake-timeout: a restart, say, which
        // teaches nothing about the age to keep.
        if age >= self.learn_from {
            let halved = u64::try_from(age.as_millis() / 2).unwrap_or(u64::MAX);
            self.max_age_ms.fetch_min(halved, Ordering::Relaxed);
        }
        log::debug!(target: T, "the server closed a spare connection {} ms old; spares live {} ms",
            age.as_millis(), self.max_age().as_millis());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn triple(port: u16) -> Triple {
        Triple {
            host: "127.0.0.1".into(),
            port,
            cookie: "I0123".into(),
            ttl: None,
            early: true,
        }
    }

    /// The next connection to `l`, within 10 s.
    fn accepted(l: &TcpListener) -> TcpStream {
        l.set_nonblocking(true).expect("nonblocking");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).expect("blocking");
                    return s;
                }
                Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("no spare connected: {e}"),
            }
        }
    }

    /// A listener, its port, and spares kept for it that live `age` and
    /// learn from a close at `learn_from` or later.
    fn keeping(age: Duration, learn_from: Duration) -> (TcpListener, u16, Arc<Spares>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let spares = Arc::new(Spares {
            learn_from,
            ..Spares::with_max_age(age)
        });
        spares.keep(&triple(port));
        (l, port, spares)
    }

    /// Whether the held spare has seen its peer close.
    fn closed(spares: &Spares) -> bool {
        let st = spares.state();
        let peek = RecvFlags::PEEK | RecvFlags::DONTWAIT;
        st.spare.as_ref().is_some_and(|s| {
            matches!(rustix::net::recv(&s.sock, &mut [0u8; 1], peek), Ok((0, _)))
        })
    }

    /// Until `f` holds, within 10 s.
    fn until(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "{what}: not within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_taken_spare_is_replaced_and_one_is_only_for_its_server() {
        let (l, port, spares) = keeping(Duration::from_secs(60), HANDSHAKE_TIMEOUT_MIN);
        let _first = accepted(&l);
        until("the spare held", || spares.state().spare.is_some());
        let sock = spares.take(&triple(port)).expect("the spare").sock;
        assert_eq!(sock.peer_addr().expect("peer").port(), port);
        let _second = accepted(&l);
        until("the next held", || spares.state().spare.is_some());
        assert!(spares.take(&triple(port.wrapping_add(1))).is_none(), "another server's");
        let _third = accepted(&l);
        assert!(spares.state().keeping);
    }

    #[test]
    fn a_spare_the_server_closed_is_not_used_and_shortens_the_next() {
        let (l, port, spares) = keeping(Duration::from_secs(60), HANDSHAKE_TIMEOUT_MIN);
        let server_side = accepted(&l);
        until("the spare held", || spares.state().spare.is_some());
        // As a server whose --handshake-timeout (1 s at least) ran out.
        std::thread::sleep(HANDSHAKE_TIMEOUT_MIN);
        drop(server_side);
        until("the FIN seen", || closed(&spares));
        assert!(spares.take(&triple(port)).is_none());
        let age = spares.max_age();
        assert!(age >= HANDSHAKE_TIMEOUT_MIN / 2 && age < Duration::from_secs(30), "{age:?}");
        // Pairing through another server forgets it.
        spares.keep(&triple(port.wrapping_add(1)));
        assert_eq!(spares.max_age(), SPARE_MAX_AGE);
    }

    #[test]
    fn a_spare_closed_sooner_than_any_handshake_timeout_teaches_nothing() {
        // Whatever the load, this close counts as sooner.
        let (l, port, spares) = keeping(Duration::from_secs(60), Duration::from_secs(60));
        drop(accepted(&l));
        until("the FIN seen", || closed(&spares));
        assert!(spares.take(&triple(port)).is_none());
        assert_eq!(spares.max_age(), Duration::from_secs(60));
    }

    #[test]
    fn a_spare_no_client_took_is_closed_and_the_keeper_ends() {
        let (l, _, spares) = keeping(Duration::from_millis(50), HANDSHAKE_TIMEOUT_MIN);
        let mut server_side = accepted(&l);
        server_side
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut b = [0u8; 1];
        assert_eq!(server_side.read(&mut b).expect("closed, no byte sent"), 0);
        until("the keeper ended", || !spares.state().keeping);
        assert!(spares.state().spare.is_none());
    }
}
