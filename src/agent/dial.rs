//! The mobile client: `lookup` (the triple as JSON), `connect` on stdin and
//! stdout (an ssh ProxyCommand: stdout carries only relayed bytes, end of
//! stdin half-closes toward the hidden server, and it returns as soon as the
//! remote side has closed), and `connect --listen` (each accepted connection
//! gets its own rendezvous; the triple is cached and refreshed on
//! `-ERR not registered`, or on `-ERR not ready` and failed connections when
//! the registrar then names another node).

use crate::agent::client::{connect_for_park, read_status, DialError, Registrar};
use crate::agent::settings::Settings;
use crate::error::{Error, IoResultExt, Result};
use crate::limits::PAIR_TIMEOUT;
use crate::relay;
use crate::wire::TakeError;
use crate::wire::Triple;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;
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
}

impl Dialer {
    /// A dialer for `settings`.
    pub fn new(settings: &Settings) -> Result<Dialer> {
        Ok(Dialer {
            registrar: Registrar::several(settings.servers.clone(), &settings.trust)?,
            uuid: settings.uuid,
            cached: Mutex::new(None),
            keepalive: settings.keepalive,
        })
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
        self.dial_once()
    }

    /// Connect to `triple`'s rendezvous server, send the cookie, and read
    /// the status line. Keepalive is set while the server pairs, not after
    /// the `+OK`, where the first bytes wait for it.
    fn attempt(&self, triple: &Triple) -> std::result::Result<TcpStream, DialError> {
        let sock = connect_for_park(triple).map_err(DialError::Io)?;
        let _ = self.keepalive.apply(&sock);
        sock.set_read_timeout(Some(STATUS_WAIT))
            .map_err(|e| DialError::Io(Error::io("set timeout", e)))?;
        read_status(sock)
    }

    fn dial_once(&self) -> Result<TcpStream> {
        let cached = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (triple, fresh) = match cached {
            Some(t) => (t, false),
            None => (self.lookup()?, true),
        };
        match self.attempt(&triple) {
            Ok(s) => Ok(s),
            Err(DialError::Refused(TakeError::NotRegistered)) if !fresh => {
                log::debug!(target: T, "cached triple refused; looking up again");
                let t = self.lookup()?;
                self.attempt(&t).map_err(DialError::into_error)
            }
            // The node the cached triple names may be gone, or no longer
            // hold the hidden server (several nodes on one store): a new
            // lookup may name another, which is worth one more try.
            Err(e @ (DialError::Refused(TakeError::NotReady) | DialError::Io(_))) if !fresh => {
                let t = self.lookup()?;
                if t == triple {
                    return Err(e.into_error());
                }
                log::debug!(target: T, "cached triple failed ({e}); the registrar names another node");
                self.attempt(&t).map_err(DialError::into_error)
            }
            Err(e) => Err(e.into_error()),
        }
    }
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

/// The `--listen` loop on an already-bound listener.
pub fn serve_listener(dialer: Arc<Dialer>, listener: TcpListener) -> Result<()> {
    log::info!(target: T, "listening on {}", listener.local_addr().op("listener address")?);
    loop {
        let (local, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                log::warn!(target: T, "accept: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let d = dialer.clone();
        // A thread of the pool: a finished connection's thread takes the
        // next, so a connection does not pay for a thread's creation.
        let spawned = crate::threads::spawn("local".into(), move || match d.dial() {
            Ok(remote) => {
                let _ = local.set_nodelay(true);
                let t = relay::relay(Arc::new(local), Arc::new(remote), None);
                log::info!(target: T, "connection done peer={peer} up={} down={} secs={:.3}",
                        t.up, t.down, t.duration.as_secs_f64());
            }
            Err(e) => {
                log::warn!(target: T, "peer={peer}: {e}");
            }
        });
        if let Err(e) = spawned {
            log::warn!(target: T, "cannot start a thread: {e}");
        }
    }
}
