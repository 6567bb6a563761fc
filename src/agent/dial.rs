//! The mobile client: `lookup` (the triple as JSON), `connect` on stdin and
//! stdout (an ssh ProxyCommand: stdout carries only relayed bytes, end of
//! stdin half-closes toward the hidden server, and it returns as soon as the
//! remote side has closed), and `connect --listen` (each accepted connection
//! gets its own rendezvous; the triple is cached and refreshed on
//! `-ERR not registered`, or on `-ERR not ready` and failed connections when
//! the registrar then names another node).

use crate::agent::client::{DialError, Registrar};
use crate::agent::early::Early;
use crate::agent::rendezvous::{connect_rendezvous, cookie_line, read_status};
use crate::agent::settings::Settings;
use crate::agent::spare::{Counts, Spares};
use crate::error::{Error, IoResultExt, Result};
use crate::limits::PAIR_TIMEOUT;
use crate::relay::{self, First};
use crate::wire::TakeError;
use crate::wire::Triple;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};
use uuid::Uuid;

const T: &str = "rendezvous::mobile";

/// How long to wait for `+OK` beyond the server's own pair timeout.
const STATUS_WAIT: Duration = Duration::from_secs(PAIR_TIMEOUT.as_secs() * 6);

/// Looks up and caches a hidden server's triple.
pub struct Dialer {
    registrar: Registrar,
    uuid: Uuid,
    cached: Mutex<Option<Triple>>,
    keepalive: crate::liveness::Keepalive,
    spares: Arc<Spares>,
}

impl Dialer {
    /// A dialer for `settings`.
    pub fn new(settings: &Settings) -> Result<Dialer> {
        Ok(Dialer {
            registrar: Registrar::several(settings.servers.clone(), &settings.trust)?,
            uuid: settings.uuid,
            cached: Mutex::new(None),
            keepalive: settings.keepalive,
            spares: Arc::new(Spares::new()),
        })
    }

    /// A client was just paired: keep a connection to its rendezvous
    /// server ready for the next (`spare.rs`).
    fn keep_spare(&self) {
        if let Some(t) = &*self.cached.lock().unwrap_or_else(PoisonError::into_inner) {
            self.spares.keep(t);
        }
    }

    /// Ask the registrar for the triple.
    pub fn lookup(&self) -> Result<Triple> {
        let t = self.registrar.lookup(&self.uuid)?;
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(t.clone());
        Ok(t)
    }

    /// A socket paired with the hidden server, positioned at its first byte,
    /// with keepalive and the user timeout set (so a vanished server or path
    /// ends the session in bounded time). A cached triple is tried first;
    /// `-ERR not registered` refreshes it once, and so do `-ERR not ready`
    /// and a failed connection when the new triple names another place.
    pub fn dial(&self) -> Result<TcpStream> {
        self.dial_once(&mut Early::default())
    }

    /// [`Dialer::dial`] for a local client: what it has sent (up to 4 KiB)
    /// is read once there is a connection to the rendezvous server, and
    /// delivered ahead of what is relayed: to a server that forwards bytes
    /// sent after the cookie line with its `+OK`, with the cookie line, and
    /// what the client sends until the status line comes follows at once
    /// (so the answer need not wait for a round trip); to other servers,
    /// right after the `+OK`. Sent again on a retry only when it cannot
    /// have reached a hidden server (the server refused). Also returns how
    /// many bytes that was.
    pub fn dial_for(&self, local: &TcpStream) -> Result<(TcpStream, usize)> {
        let mut early = Early::of(local);
        let sock = self.dial_once(&mut early)?;
        Ok((sock, early.bytes.len()))
    }

    /// Take the spare, or connect to `triple`'s rendezvous server, and
    /// pair there ([`Dialer::attempt_on`]). A spare the server closed
    /// before it acknowledged a byte of the cookie line (its
    /// `--handshake-timeout` ran out as the line left, or it restarted)
    /// delivered nothing to anyone: the client goes on a new connection.
    fn attempt(&self, triple: &Triple, early: &mut Early) -> std::result::Result<TcpStream, Failed> {
        // One call of attempt_on, not one for each: the dial's deepest
        // stack page stays resident under the relay (4 KiB per held
        // connection, measured with `make bench-peers`, static build).
        let mut spare = self.spares.take(triple);
        loop {
            let (sock, counts, age) = match spare.take() {
                Some(s) => (s.sock, s.counts, Some(s.age)),
                None => {
                    let sock = connect_rendezvous(triple).map_err(|e| Failed {
                        error: DialError::Io(e),
                        sent: false,
                        unread: false,
                    })?;
                    (sock, None, None)
                }
            };
            match self.attempt_on(sock, triple, early, counts) {
                // Only a spare's acknowledgements are known: once at most.
                Err(f) if f.unread => {
                    log::debug!(target: T, "spare connection closed before the cookie line: {}", f.error);
                    if let Some(age) = age {
                        self.spares.closed_at(age);
                    }
                }
                done => return done,
            }
        }
    }

    /// Send the cookie on `sock` and read the status line. Keepalive is
    /// set while the server pairs, not after the `+OK`, where the first
    /// bytes wait for it. `early` goes with the cookie when the triple says
    /// the server forwards it, else right after the `+OK` (the original's
    /// mobile clients waited for it). `counts`: the socket's before the
    /// cookie line, for a failure to tell whether the server read any of
    /// it ([`Failed::unread`]).
    fn attempt_on(
        &self,
        mut sock: TcpStream,
        triple: &Triple,
        early: &mut Early,
        counts: Option<Counts>,
    ) -> std::result::Result<TcpStream, Failed> {
        let ahead = triple.early;
        let with_cookie = if ahead { early.read() } else { &[] };
        // Once sent, the first bytes may have reached a hidden server,
        // unless the server refused the pairing (it forwards them only to
        // a responder it proved alive, and then answers +OK).
        let failed = |error: DialError, early: &Early, sock: &TcpStream| {
            let went = ahead && !early.bytes.is_empty();
            Failed {
                sent: went && !matches!(error, DialError::Refused(_)),
                unread: unread(counts, &error, sock, went),
                error,
            }
        };
        let line = cookie_line(triple, with_cookie);
        if let Err(e) = sock.write_all(&line) {
            return Err(failed(DialError::Io(Error::io("send cookie", e)), early, &sock));
        }
        let _ = self.keepalive.apply(&sock);
        // One wait for the status, forwarding or not.
        let deadline = Instant::now() + STATUS_WAIT;
        let followed = if ahead {
            early.follow(&mut sock, deadline)
        } else {
            Ok(())
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))) {
            return Err(failed(DialError::Io(Error::io("set timeout", e)), early, &sock));
        }
        // After a write that failed, the server has closed: what it said
        // first is still to be read, and a refusal stays one.
        match (read_status(&mut sock), followed) {
            (Ok(()), Ok(())) => {}
            (Err(e @ DialError::Refused(_)), _) | (Err(e), Ok(())) => {
                return Err(failed(e, early, &sock))
            }
            (_, Err(e)) => {
                let e = DialError::Io(Error::io("send the client's first bytes", e));
                return Err(failed(e, early, &sock));
            }
        }
        let early = early.read();
        if !ahead && !early.is_empty() {
            sock.write_all(early).map_err(|e| Failed {
                error: DialError::Io(Error::io("send the client's first bytes", e)),
                sent: true,
                unread: false,
            })?;
        }
        Ok(sock)
    }

    fn dial_once(&self, early: &mut Early) -> Result<TcpStream> {
        let cached = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (triple, fresh) = match cached {
            Some(t) => (t, false),
            None => (self.lookup()?, true),
        };
        match self.attempt(&triple, early) {
            Ok(s) => Ok(s),
            Err(f) => self.after(f, &triple, fresh, early),
        }
    }

    /// A failed first attempt through `triple`: a second one where a new
    /// lookup may help. Out of line, as its frame is needed only then: the
    /// deepest page of the dial's stack stays resident under the relay
    /// (`make bench-peers`, static build: 4 KiB per held connection).
    #[cold]
    #[inline(never)]
    fn after(&self, f: Failed, triple: &Triple, fresh: bool, early: &mut Early) -> Result<TcpStream> {
        let again = |t: &Triple, early: &mut Early| {
            self.attempt(t, early).map_err(|f| f.error.into_error())
        };
        match f {
            Failed {
                error: DialError::Refused(TakeError::NotRegistered),
                ..
            } if !fresh => {
                log::debug!(target: T, "cached triple refused; looking up again");
                again(&self.lookup()?, early)
            }
            // The node the cached triple names may be gone, or no longer
            // hold the hidden server (several nodes on one store): a new
            // lookup may name another, which is worth one more try (not
            // when the client's first bytes may have arrived already).
            Failed {
                error: e @ (DialError::Refused(TakeError::NotReady) | DialError::Io(_)),
                sent: false,
                ..
            } if !fresh => {
                let t = self.lookup()?;
                if t == *triple {
                    return Err(e.into_error());
                }
                log::debug!(target: T, "cached triple failed ({e}); the registrar names another node");
                again(&t, early)
            }
            f => Err(f.error.into_error()),
        }
    }
}

/// A failed attempt, and whether the client's first bytes may have reached
/// a hidden server: then they are not sent again, so that a request does
/// not run twice.
struct Failed {
    error: DialError,
    sent: bool,
    /// The server closed the connection (FIN or RST) without its TCP
    /// having acknowledged a byte of the cookie line, so no process read
    /// it: nothing was forwarded. Known only for spares.
    unread: bool,
}

/// Whether `error` on `sock` (whose counts were `before` the cookie line)
/// proves that no process read the line, so that nothing went on: it is
/// the server's close (end of file, reset, broken pipe; never a timeout,
/// which a path that loses only our ACKs gives too), its TCP acknowledged
/// nothing since, and, when the client's first bytes went out with or
/// after the line (`went`), a FIN came first. That FIN acknowledged
/// nothing of the line, so the server closed before it arrived; an RST
/// alone proves less (Linux ignores an RST's acknowledgement, and a
/// server that read the line and died sends one). rendezvousd closes a
/// connection whose line it read with a FIN, which acknowledges the line.
/// Out of line: its `TCP_INFO` buffer stays off the dial's stack, whose
/// deepest page stays resident under the relay.
#[cold]
#[inline(never)]
fn unread(before: Option<Counts>, error: &DialError, sock: &TcpStream, went: bool) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let closed = matches!(error, DialError::Io(Error::Io { source, .. })
        if matches!(source.kind(), BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof));
    let (Some(before), Some(now)) = (before, Counts::of(sock)) else {
        return false;
    };
    closed
        && now.acked == before.acked
        && (!went || now.received == before.received.wrapping_add(1))
}

/// `rendezvous lookup`: the triple as one JSON line.
pub fn lookup(settings: &Settings, out: &mut dyn Write) -> Result<()> {
    let t = Dialer::new(settings)?.lookup()?;
    let json = serde_json::to_string(&t).map_err(|e| Error::Other(e.to_string()))?;
    writeln!(out, "{json}").op("write output")
}

/// `rendezvous connect` on stdin/stdout.
pub fn connect_stdio(settings: &Settings) -> Result<()> {
    let sock = Dialer::new(settings)?.dial()?;
    let up = sock.try_clone().op("clone socket")?;
    // stdin -> remote; at EOF, half-close. This thread may stay blocked on
    // stdin; the process exits when the remote side closes regardless.
    crate::threads::start("stdin", move || {
        let mut stdin = std::io::stdin().lock();
        let mut up = up;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = up.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    if up.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
    .op("start stdin thread")?;
    let mut down = sock;
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match down.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                stdout.write_all(&buf[..n]).op("write stdout")?;
                stdout.flush().op("write stdout")?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read from the hidden server", e)),
        }
    }
    Ok(())
}

/// `rendezvous connect --listen ADDR`: relay every accepted connection
/// through its own rendezvous. Runs until killed.
pub fn connect_listen(settings: &Settings, listen: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).map_err(|e| Error::io("bind --listen", e))?;
    serve_listener(Arc::new(Dialer::new(settings)?), listener)
}

/// The `--listen` loop on an already-bound listener: runs until killed.
pub fn serve_listener(dialer: Arc<Dialer>, listener: TcpListener) -> Result<()> {
    log::info!(target: T, "listening on {}", listener.local_addr().op("listener address")?);
    let listening = Arc::new(Listening { dialer, listener });
    crate::threads::spawn("accept".into(), move || listening.lead())
        .op("start the accepting thread")?;
    loop {
        thread::park();
    }
}

/// A `--listen` socket, accepted on by one thread at a time that then
/// serves what it accepted: before it does, it starts the next one on a
/// thread of the pool. A separate accepting thread that handed each
/// connection to another put one wake-up between the client's connect and
/// the dial (20 µs and more on two loaded cores, `perf sched record`).
struct Listening {
    dialer: Arc<Dialer>,
    listener: TcpListener,
}

impl Listening {
    fn lead(self: Arc<Self>) {
        loop {
            let (local, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) => {
                    log::warn!(target: T, "accept: {e}");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let next = self.clone();
            match crate::threads::spawn("accept".into(), move || next.lead()) {
                Ok(()) => {
                    crate::threads::rename("local");
                    self.serve(local, peer);
                    return;
                }
                // The connection is closed; this thread goes on accepting.
                Err(e) => log::warn!(target: T, "cannot start a thread: {e}"),
            }
        }
    }

    /// Dial, with what the client sent by then, and relay.
    fn serve(&self, local: TcpStream, peer: SocketAddr) {
        match self.dialer.dial_for(&local) {
            Ok((remote, n)) => {
                self.dialer.keep_spare();
                let _ = local.set_nodelay(true);
                // The first bytes went ahead: the answer is next.
                let first = if n > 0 { First::Down } else { First::Up };
                let t = relay::relay_first(Arc::new(local), Arc::new(remote), None, first);
                log::info!(target: T, "connection done peer={peer} up={} down={} secs={:.3}",
                        t.up + n as u64, t.down, t.duration.as_secs_f64());
            }
            Err(e) => {
                log::warn!(target: T, "peer={peer}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A cookie line and first bytes sent to a server side that `server`
    /// handles (after its FIN or RST, when `after_close`): the client
    /// socket's counts before the line, the error the status read met,
    /// and the socket.
    fn line_against(
        after_close: bool,
        server: impl FnOnce(TcpStream) + Send + 'static,
    ) -> (Option<Counts>, DialError, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut sock = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let before = Counts::of(&sock);
        let (theirs, _) = l.accept().expect("accept");
        let server = thread::spawn(move || server(theirs));
        if after_close {
            // Its FIN (0) or RST (an error) has come.
            assert!(!matches!(sock.peek(&mut [0u8; 1]), Ok(1..)));
        }
        let _ = sock.write_all(b"I0123\nfirst bytes");
        let error = read_status(&mut sock).expect_err("no status");
        server.join().expect("server side");
        (before, error, sock)
    }

    #[test]
    fn a_line_that_met_a_closed_socket_was_read_by_no_one() {
        // A spare whose --handshake-timeout ran out as the line left.
        let (before, error, sock) = line_against(true, drop);
        assert!(before.is_some());
        assert!(unread(before, &error, &sock, true), "{error}");
    }

    #[test]
    fn a_line_the_server_read_before_it_closed_may_have_gone_on() {
        let (before, error, sock) = line_against(false, |mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.read(&mut [0u8; 64]);
        });
        assert!(!unread(before, &error, &sock, true), "{error}");
        assert!(!unread(before, &error, &sock, false), "{error}");
    }

    #[test]
    fn a_reset_alone_proves_nothing_read_only_of_a_bare_line() {
        // As a server that read the line and died, its acknowledgement
        // lost: an RST, no FIN. The client's bytes may have gone on; a
        // cookie line alone carried none.
        let (before, error, sock) = line_against(true, |s| {
            let s = socket2::Socket::from(s);
            s.set_linger(Some(Duration::ZERO)).expect("linger 0");
        });
        assert!(!unread(before, &error, &sock, true), "{error}");
        assert!(unread(before, &error, &sock, false), "{error}");
    }
}
