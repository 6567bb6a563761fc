//! The mobile client: `lookup` (the triple as JSON), `connect` on stdin and
//! stdout (an ssh ProxyCommand: stdout carries only relayed bytes, end of
//! stdin half-closes toward the hidden server, and it returns as soon as the
//! remote side has closed), and `connect --listen` (each accepted connection
//! gets its own rendezvous; the triple is cached and refreshed on
//! `-ERR not registered`, or on `-ERR not ready` and failed connections when
//! the registrar then names another node).

use crate::agent::client::{DialError, Registrar};
use crate::agent::rendezvous::{connect_rendezvous, cookie_line, read_status};
use crate::agent::settings::Settings;
use crate::agent::spare::Spares;
use crate::error::{Error, IoResultExt, Result};
use crate::limits::PAIR_TIMEOUT;
use crate::relay::{self, First};
use crate::wire::TakeError;
use crate::wire::Triple;
use std::io::{Read, Write};
use rustix::net::RecvFlags;
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
        let mut early = Early {
            local: Some(local),
            ..Early::default()
        };
        let sock = self.dial_once(&mut early)?;
        Ok((sock, early.bytes.len()))
    }

    /// Take the spare, or connect to `triple`'s rendezvous server, and
    /// pair there ([`Dialer::attempt_on`]). A spare the server closed
    /// before it acknowledged a byte of the cookie line (its
    /// `--handshake-timeout` ran out as the line left, or it restarted)
    /// delivered nothing to anyone: the client goes on a new connection.
    fn attempt(&self, triple: &Triple, early: &mut Early) -> std::result::Result<TcpStream, Failed> {
        if let Some(spare) = self.spares.take(triple) {
            match self.attempt_on(spare.sock, triple, early, spare.acked) {
                Err(f) if f.unread => {
                    log::debug!(target: T, "spare connection closed before the cookie line: {}", f.error);
                    self.spares.closed_at(spare.age);
                }
                done => return done,
            }
        }
        let sock = connect_rendezvous(triple).map_err(|e| Failed {
            error: DialError::Io(e),
            sent: false,
            unread: false,
        })?;
        self.attempt_on(sock, triple, early, None)
    }

    /// Send the cookie on `sock` and read the status line. Keepalive is
    /// set while the server pairs, not after the `+OK`, where the first
    /// bytes wait for it. `early` goes with the cookie when the triple says
    /// the server forwards it, else right after the `+OK` (the original's
    /// mobile clients waited for it). `acked`: the socket's
    /// `tcpi_bytes_acked` before the cookie line, for a failure to tell
    /// whether the server's TCP took any of it ([`Failed::unread`]).
    fn attempt_on(
        &self,
        mut sock: TcpStream,
        triple: &Triple,
        early: &mut Early,
        acked: Option<u64>,
    ) -> std::result::Result<TcpStream, Failed> {
        let ahead = triple.early;
        let with_cookie = if ahead { early.read() } else { &[] };
        // Once sent, the first bytes may have reached a hidden server,
        // unless the server refused the pairing (it forwards them only to
        // a responder it proved alive, and then answers +OK).
        let failed = |error: DialError, early: &Early, sock: &TcpStream| Failed {
            sent: ahead && !early.bytes.is_empty() && !matches!(error, DialError::Refused(_)),
            unread: unread(acked, &error, sock),
            error,
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
        let again = |t: &Triple, early: &mut Early| {
            self.attempt(t, early).map_err(|f| f.error.into_error())
        };
        match self.attempt(&triple, early) {
            Ok(s) => Ok(s),
            Err(Failed {
                error: DialError::Refused(TakeError::NotRegistered),
                ..
            }) if !fresh => {
                log::debug!(target: T, "cached triple refused; looking up again");
                again(&self.lookup()?, early)
            }
            // The node the cached triple names may be gone, or no longer
            // hold the hidden server (several nodes on one store): a new
            // lookup may name another, which is worth one more try (not
            // when the client's first bytes may have arrived already).
            Err(Failed {
                error: e @ (DialError::Refused(TakeError::NotReady) | DialError::Io(_)),
                sent: false,
                ..
            }) if !fresh => {
                let t = self.lookup()?;
                if t == triple {
                    return Err(e.into_error());
                }
                log::debug!(target: T, "cached triple failed ({e}); the registrar names another node");
                again(&t, early)
            }
            Err(f) => Err(f.error.into_error()),
        }
    }
}

/// A local client's first bytes: what it had sent when first looked at,
/// and, for a server that forwards them, what followed before its status.
#[derive(Default)]
struct Early<'a> {
    local: Option<&'a TcpStream>,
    bytes: Vec<u8>,
    looked: bool,
}

impl Early<'_> {
    /// The bytes; what has come is read (without waiting) the first time.
    fn read(&mut self) -> &[u8] {
        if let (Some(local), false) = (self.local, self.looked) {
            self.looked = true;
            let _ = self.recv_more(local);
        }
        &self.bytes
    }

    /// Add what `local` holds now, up to [`EARLY_MAX`] in all, without
    /// waiting; how many bytes that was (0: end of file).
    fn recv_more(&mut self, local: &TcpStream) -> rustix::io::Result<usize> {
        let start = self.bytes.len();
        self.bytes.resize(EARLY_MAX, 0);
        let got = rustix::net::recv(local, &mut self.bytes[start..], RecvFlags::DONTWAIT);
        let n = got.as_ref().map_or(0, |&(n, _)| n);
        self.bytes.truncate(start + n);
        got.map(|(n, _)| n)
    }

    /// Until the server's status line begins to arrive (or `end`), what
    /// the local client sends goes on to `server` at once, up to
    /// [`EARLY_MAX`] in all, and is kept, to be sent again after a
    /// refusal. A client slower to send than connect was to look (a TLS
    /// client building its hello, a busy phone) would otherwise wait for
    /// the `+OK` to come back before its bytes left. An end of file or an
    /// error on the local socket is left to the relay, which meets it again.
    fn follow(&mut self, server: &mut TcpStream, end: Instant) -> std::io::Result<()> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use rustix::io::Errno;
        let Some(local) = self.local else {
            return Ok(());
        };
        while self.bytes.len() < EARLY_MAX {
            let left = end.saturating_duration_since(Instant::now());
            let Ok(timeout) = Timespec::try_from(left) else {
                return Ok(());
            };
            let mut fds = [
                PollFd::new(&*server, PollFlags::IN),
                PollFd::new(local, PollFlags::IN),
            ];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if !fds[0].revents().is_empty() {
                return Ok(());
            }
            match self.recv_more(local) {
                Ok(0) => return Ok(()),
                Ok(n) => server.write_all(&self.bytes[self.bytes.len() - n..])?,
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(_) => return Ok(()),
            }
        }
        Ok(())
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

/// Whether `error` on `sock` is the server's close (end of file, reset,
/// broken pipe; not a timeout, which a path that loses only our ACKs also
/// gives) and its TCP acknowledged nothing since `acked` was read. A FIN
/// carries the acknowledgement of what came before it; an RST answering
/// bytes that came after the close carries none.
fn unread(acked: Option<u64>, error: &DialError, sock: &TcpStream) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let closed = matches!(error, DialError::Io(Error::Io { source, .. })
        if matches!(source.kind(), BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof));
    closed
        && acked.is_some()
        && crate::tcp_info::tcp_info(sock).ok().and_then(|i| i.bytes_acked) == acked
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

/// The most a client's first bytes sent with the cookie line may be; what
/// comes after is relayed after the `+OK`.
const EARLY_MAX: usize = 4096;

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
    /// handles (after its FIN, when `after_close`): the client socket's
    /// `tcpi_bytes_acked` before the line, the error the status read met,
    /// and the socket.
    fn line_against(
        after_close: bool,
        server: impl FnOnce(TcpStream) + Send + 'static,
    ) -> (Option<u64>, DialError, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut sock = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let acked = crate::tcp_info::tcp_info(&sock)
            .expect("tcp_info")
            .bytes_acked;
        let (theirs, _) = l.accept().expect("accept");
        let server = thread::spawn(move || server(theirs));
        if after_close {
            assert_eq!(sock.peek(&mut [0u8; 1]).expect("the FIN"), 0);
        }
        let _ = sock.write_all(b"I0123\nfirst bytes");
        let error = read_status(&mut sock).expect_err("no status");
        server.join().expect("server side");
        (acked, error, sock)
    }

    #[test]
    fn a_line_that_met_a_closed_socket_was_read_by_no_one() {
        // A spare whose --handshake-timeout ran out as the line left.
        let (acked, error, sock) = line_against(true, drop);
        assert!(acked.is_some());
        assert!(unread(acked, &error, &sock), "{error}");
    }

    #[test]
    fn a_line_the_server_read_before_it_closed_may_have_gone_on() {
        let (acked, error, sock) = line_against(false, |mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.read(&mut [0u8; 64]);
        });
        assert!(!unread(acked, &error, &sock), "{error}");
    }
}
