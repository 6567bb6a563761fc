//! The hidden server's agent (`rendezvous expose`): register with a TOTP
//! token, keep `--pool` connections waiting at the rendezvous server, and on
//! each `+OK` connect to the local service and relay while a replacement is
//! opened. Re-registers on `-ERR not registered` (a restarted server) or a
//! refused cookie refresh; every other failure backs off exponentially with
//! jitter, 1 s to 60 s. It never gives up. A cookie refresh that names
//! another rendezvous server (several nodes) moves the pool there; after a
//! few failed dials the cookie is refreshed at once for that reason.
//!
//! It watches its waiting connections, both protocols: TCP keepalive and a
//! user timeout find one a NAT forgot, and it is replaced at once (logged,
//! rate-limited); one older than `--park-max-age` is retired and replaced,
//! with the cookie, never a token.
//!
//! Locks, in the only order they are taken: `registering` (one token
//! registration at a time; held across the clock check, a nap for the next
//! step and the registrar exchange) then `state` (the triple or cookie,
//! held for a few instructions, never across DNS, TLS, HTTP or a nap).
//! `waiting` (the sockets `stop` closes) is taken alone.

use crate::agent::client::{DialError, Registrar};
use crate::agent::settings::Settings;
use crate::error::{AuthFailure, Error, Result};
use crate::limits::{
    AGENT_POOL, BACKOFF_MAX, BACKOFF_MIN, CLIENT_TIMEOUT, DIALS_BEFORE_REFRESH, PARK_MAX_AGE,
    PARK_SETTLED,
};
use crate::liveness::{self, Keepalive};
use crate::ratelimit::RateLimit;
use crate::secret::Secret;
use crate::totp::Params;
use crate::wire::TakeError;
use crate::wire::Triple;

mod http;
mod shift;
mod stop;
mod token;
use std::collections::HashMap;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

const T: &str = "rendezvous::hidden";

/// The delay before retry number `failures` (0-based): 1 s doubling to 60 s,
/// each scaled by a random factor in [0.5, 1).
pub fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_MAX);
    let frac = 0.5 + (crate::random::u64() % 1000) as f64 / 2000.0;
    base.mul_f64(frac)
}

/// Which protocol the agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Park plain TCP connections at the rendezvous server.
    #[default]
    Generic,
    /// Park HTTPS `CONNECT`s at the registrar.
    Http,
}

/// Options of `expose`.
#[derive(Debug, Clone)]
pub struct ExposeOpts {
    /// The local service, `HOST:PORT`.
    pub to: String,
    /// Waiting connections to keep.
    pub pool: usize,
    /// Generic or HTTP-specific.
    pub protocol: Protocol,
    /// A waiting connection older than this is retired and replaced.
    pub park_max_age: Duration,
}

impl Default for ExposeOpts {
    fn default() -> ExposeOpts {
        ExposeOpts {
            to: String::new(),
            pool: AGENT_POOL,
            protocol: Protocol::Generic,
            park_max_age: PARK_MAX_AGE,
        }
    }
}

#[derive(Default)]
struct State {
    /// Generic: the registration's triple.
    triple: Option<Triple>,
    /// HTTP: the `Rendezvous-Cookie` that grows the pool without a token.
    cookie: Option<String>,
    generation: u64,
    last_step: Option<u64>,
    /// A code for a step ahead of the clock was refused: the registrar
    /// accepts the current step only (as the original does), so that step's
    /// code is sent again once it is current.
    early_refused: Option<u64>,
}

/// A running agent for the generic protocol.
pub struct Agent {
    registrar: Registrar,
    uuid: Uuid,
    secret: Secret,
    params: Params,
    opts: ExposeOpts,
    state: Mutex<State>,
    /// Held while one worker registers with a token (across the clock
    /// check, a nap for the next step and the registrar exchange), so the
    /// others wait for its result instead of spending tokens. Never held
    /// with `waiting`; `state` is only ever held briefly inside it.
    registering: Mutex<()>,
    stop: stop::Stop,
    waiting: Mutex<HashMap<u64, TcpStream>>,
    next: AtomicU64,
    keepalive: Keepalive,
    /// One `parked connection lost` line per minute at most.
    lost_warn: RateLimit,
    /// Parking loops running (`shift`), and their end.
    shifts: Mutex<usize>,
    shifts_ended: std::sync::Condvar,
}

/// A mobile client that arrived on a parked connection.
enum Client {
    /// Generic protocol: the socket, positioned after `+OK`.
    Generic(TcpStream),
    /// HTTP-specific protocol: the `CONNECT` and the request's first bytes.
    Http(crate::agent::client::ClientConn, Vec<u8>),
}

/// How a waiting connection ended.
enum Waited<C> {
    /// A mobile client arrived: relay.
    Client(C),
    /// It reached `--park-max-age` and was closed.
    Retired,
}

impl Agent {
    /// Build an agent from resolved settings (which must hold the secret).
    pub fn new(settings: &Settings, opts: ExposeOpts) -> Result<Arc<Agent>> {
        let secret = settings
            .secret
            .clone()
            .ok_or_else(|| Error::Usage("expose needs a secret".into()))?;
        if opts.to.to_socket_addrs().is_err() {
            return Err(Error::Usage(format!("--to {:?} is not HOST:PORT", opts.to)));
        }
        Ok(Arc::new(Agent {
            registrar: Registrar::several(settings.servers.clone(), &settings.trust)?,
            uuid: settings.uuid,
            secret,
            params: settings.params,
            opts,
            state: Mutex::new(State::default()),
            registering: Mutex::new(()),
            stop: stop::Stop::new(),
            waiting: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            keepalive: settings.keepalive,
            lost_warn: RateLimit::new(Duration::from_secs(60)),
            shifts: Mutex::new(0),
            shifts_ended: std::sync::Condvar::new(),
        }))
    }

    /// Run until [`Agent::stop`]: `--pool` parking loops and a cookie
    /// refresher.
    pub fn run(self: &Arc<Self>) -> Result<()> {
        let refresher = if self.opts.protocol == Protocol::Generic {
            let me = self.clone();
            Some(
                crate::threads::start("refresh", move || me.refresher())
                    .map_err(|e| Error::io("start refresher", e))?,
            )
        } else {
            None
        };
        for _ in 0..self.opts.pool.max(1) {
            if let Err(e) = self.start_shift() {
                self.stop();
                return Err(Error::io("start worker", e));
            }
        }
        self.wait_shifts();
        if let Some(t) = refresher {
            let _ = t.join();
        }
        Ok(())
    }

    /// Ask every thread to finish and close the waiting connections.
    pub fn stop(&self) {
        self.stop.set();
        for s in self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.is_set()
    }

    /// Sleep up to `d`, waking early on stop.
    fn nap(&self, d: Duration) {
        self.stop.nap(d)
    }

    /// Park, generic protocol, until a client arrives (returned) or the
    /// agent stops (`None`).
    #[inline(never)]
    fn worker(self: &Arc<Self>) -> Option<Client> {
        let mut failures = 0u32;
        while !self.stopped() {
            let (triple, generation) = match self.triple() {
                Ok(x) => x,
                Err(e) => {
                    if !self.stopped() {
                        log::warn!(target: T, "registration failed: {e}");
                        self.nap(backoff(failures));
                    }
                    failures = failures.saturating_add(1);
                    continue;
                }
            };
            let parked_at = Instant::now();
            match self.wait_for_client(&triple) {
                Ok(Waited::Client(sock)) => return Some(Client::Generic(sock)),
                Ok(Waited::Retired) => {
                    failures = 0;
                    log::debug!(target: T, "waiting connection retired after {} s; replacing",
                        parked_at.elapsed().as_secs());
                }
                Err(DialError::Refused(TakeError::NotRegistered)) => {
                    log::info!(target: T, "server forgot the registration; registering again");
                    self.invalidate(generation);
                    if failures > 0 {
                        self.nap(backoff(failures));
                    }
                    failures = failures.saturating_add(1);
                }
                Err(e) => {
                    // Refused means nothing listens there any more (its
                    // process died): ask at once. Anything else may be a
                    // lost packet: ask after a few.
                    // A connect that timed out (15 s of unanswered SYNs: the
                    // node's machine is gone) says as much, and resets the
                    // backoff count (it "lived" past PARK_SETTLED), so it
                    // must ask at once too.
                    let refused = matches!(&e, DialError::Io(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::ConnectionRefused)
                        || matches!(&e, DialError::Io(Error::Timeout(crate::error::Timeout::Connect)));
                    let unreachable = matches!(e, DialError::Io(_));
                    self.lost(&e, parked_at, &mut failures);
                    let ask = refused || (unreachable && failures >= DIALS_BEFORE_REFRESH);
                    if ask && self.refresh_now(generation) {
                        failures = 0;
                    }
                }
            }
        }
        None
    }

    /// The rendezvous server the triple names failed several dials in a
    /// row: refresh the cookie now (no token), and follow the triple the
    /// registrar answers. Whether the triple changed (so the next dial
    /// need not wait).
    fn refresh_now(&self, generation: u64) -> bool {
        let current = {
            let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.triple.clone().filter(|_| st.generation == generation)
        };
        let Some(t) = current else {
            return true;
        };
        let place = format!("{}:{}", t.host, t.port);
        match self.registrar.refresh_avoiding(&self.uuid, &t.cookie, Some(&place)) {
            Ok(new) => self.follow(generation, new),
            Err(Error::Auth(AuthFailure::BadCookie)) => {
                log::info!(target: T, "cookie refused (expired, or the server restarted); registering again");
                self.invalidate(generation);
                true
            }
            Err(e) => {
                log::debug!(target: T, "cookie refresh failed: {e}");
                false
            }
        }
    }

    /// A refresh answered `new`: when it names another rendezvous server
    /// (the hidden server's node died, or another node holds it), park
    /// there from now on. Whether the triple changed.
    fn follow(&self, generation: u64, new: Triple) -> bool {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.generation != generation {
            return true;
        }
        let same = st.triple.as_ref().is_some_and(|t| t.host == new.host && t.port == new.port);
        if same || st.triple.is_none() {
            return false;
        }
        log::info!(target: T, "the registrar names rendezvous={}:{}; parking there", new.host, new.port);
        st.generation += 1;
        st.triple = Some(new);
        true
    }

    /// A waiting connection failed. One that had settled (a NAT forgot it,
    /// keepalive found it dead, the server closed it) is replaced at once;
    /// one that failed soon after it was opened backs off, so a server that
    /// refuses or evicts at once is not hammered.
    fn lost(&self, e: &dyn std::fmt::Display, parked_at: Instant, failures: &mut u32) {
        if self.stopped() {
            return;
        }
        let lived = parked_at.elapsed();
        if lived >= PARK_SETTLED {
            *failures = 0;
            if self.lost_warn.ready() {
                log::warn!(target: T, "waiting connection lost after {} s: {e}; replacing", lived.as_secs());
            }
            return;
        }
        log::warn!(target: T, "{e}");
        self.nap(backoff(*failures));
        *failures = failures.saturating_add(1);
    }

    /// How long this waiting connection may wait: `--park-max-age`, less up
    /// to a tenth at random, so a pool opened at once is not retired at once.
    fn park_age(&self) -> Duration {
        let max = self.opts.park_max_age;
        let cut = (crate::random::u64() % 1000) as f64 / 10_000.0;
        max.mul_f64(1.0 - cut).max(Duration::from_secs(1))
    }

    /// Park one connection at the rendezvous server until `+OK`, or until
    /// it reaches its age.
    fn wait_for_client(
        &self,
        triple: &Triple,
    ) -> std::result::Result<Waited<TcpStream>, DialError> {
        // dial() connects and sends the cookie; register the socket first so
        // stop() can close it while it waits.
        let mut sock = crate::agent::rendezvous::connect_for_park(triple).map_err(DialError::Io)?;
        let _ = self.keepalive.apply(&sock);
        liveness::quickack(&sock);
        sock.set_read_timeout(Some(self.park_age()))
            .map_err(|e| DialError::Io(Error::io("set timeout", e)))?;
        let id = self.watch(&sock);
        let r = crate::agent::rendezvous::read_status(&mut sock);
        self.unwatch(id);
        match r {
            Ok(()) => Ok(Waited::Client(sock)),
            // The read timeout is the age limit (EAGAIN); a dead connection
            // is ETIMEDOUT, another kind.
            Err(DialError::Io(Error::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::WouldBlock =>
            {
                Ok(Waited::Retired)
            }
            Err(e) => Err(e),
        }
    }

    /// A connection to the local service, Nagle off: with it on, a
    /// message the mobile client wrote in two parts waited for the
    /// service's delayed ACK of the first, 40 ms (`tests/e2e.rs`).
    fn dial_local(&self) -> Option<TcpStream> {
        let local = crate::agent::resolve::connect_to(&self.opts.to, CLIENT_TIMEOUT).ok()?;
        let _ = local.set_nodelay(true);
        Some(local)
    }

    fn refresher(self: Arc<Self>) {
        while !self.stopped() {
            let current = {
                let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                st.triple.clone().map(|t| (t, st.generation))
            };
            let ttl = current
                .as_ref()
                .and_then(|(t, _)| t.ttl)
                .unwrap_or(600)
                .max(3);
            self.nap(Duration::from_secs(ttl / 3));
            if self.stopped() {
                return;
            }
            let Some((t, generation)) = current else {
                continue;
            };
            match self.registrar.refresh(&self.uuid, &t.cookie) {
                Ok(new) => {
                    log::debug!(target: T, "cookie refreshed");
                    self.follow(generation, new);
                }
                Err(Error::Auth(AuthFailure::BadCookie)) => {
                    log::info!(target: T, "cookie refused (expired, or the server restarted); registering again");
                    self.invalidate(generation);
                }
                Err(e) => log::debug!(target: T, "cookie refresh failed: {e}"),
            }
        }
    }
}

/// `rendezvous expose`: runs until killed.
pub fn expose(settings: &Settings, opts: ExposeOpts) -> Result<()> {
    let agent = Agent::new(settings, opts)?;
    agent.run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::settings::ServerUrl;
    use crate::tls::Trust;
    use crate::totp;
    use std::io::BufRead;
    use std::io::Write;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::thread;

    /// A registrar whose clock is `offset` seconds off ours. It serves
    /// `conns` connections, then ends: health answers 200, a token 401 while
    /// its clock is off and a triple once it is right. It records each
    /// request line (with the token masked).
    fn fake_registrar(
        conns: usize,
        offset: Arc<AtomicI64>,
    ) -> (std::net::SocketAddr, thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let h = thread::spawn(move || {
            let mut lines = Vec::new();
            for _ in 0..conns {
                let (s, _) = l.accept().expect("accept");
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut r = std::io::BufReader::new(&s);
                let mut line = String::new();
                r.read_line(&mut line).expect("request line");
                let mut h = String::new();
                while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                let off = offset.load(Ordering::SeqCst);
                let date = crate::wire::http_date(totp::now().saturating_add_signed(off));
                let (status, body) = if line.contains("response=") && off != 0 {
                    (401, crate::wire::error_body(false, "authentication failed"))
                } else if line.contains("response=") {
                    let t = r#"{"host":"127.0.0.1","port":9,"cookie":"Rx","ttl":600}"#;
                    (200, format!(r#"{{"result":{t}}}"#))
                } else {
                    (200, r#"{"result":{"status":"ok"}}"#.to_string())
                };
                let mut w = &s;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status} X\r\nDate: {date}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let masked = match line.find("response=") {
                    Some(i) => format!("{}response=…", &line[..i]),
                    None => line.trim_end().to_string(),
                };
                lines.push(masked);
            }
            lines
        });
        (addr, h)
    }

    #[test]
    fn a_wrong_clock_is_named_and_spends_one_token_only() {
        let offset = Arc::new(AtomicI64::new(3600));
        let (addr, fake) = fake_registrar(4, offset.clone());
        let settings = Settings {
            servers: vec![ServerUrl::parse(&format!("http://{addr}")).expect("url")],
            uuid: Uuid::new_v4(),
            trust: Trust::WebPki,
            params: Params::default(),
            secret: Some(Secret::new(b"12345678901234567890".to_vec())),
            keepalive: Keepalive::default(),
        };
        let agent = Agent::new(
            &settings,
            ExposeOpts {
                to: "127.0.0.1:9".into(),
                ..ExposeOpts::default()
            },
        )
        .expect("agent");
        // The registrar is an hour ahead: the token is refused, and the
        // error names the clock.
        let e = agent.triple().expect_err("refused");
        assert!(
            matches!(e, Error::ClockSkew(s) if (3595..=3605).contains(&s)),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("behind the registrar's") && text.contains("NTP"),
            "{text}"
        );
        // Again: no token is spent, only the clock is measured.
        assert!(matches!(agent.triple(), Err(Error::ClockSkew(_))));
        // The clock is fixed: registration goes through.
        offset.store(0, Ordering::SeqCst);
        let t = agent.triple().expect("registered").0;
        assert_eq!(t.cookie, "Rx");
        let lines = fake.join().expect("fake registrar");
        let health = "GET /.well-known/rendezvous/health HTTP/1.1";
        assert!(lines[0].starts_with("PUT /?uuid=") && lines[0].ends_with("response=…"));
        assert_eq!(lines[1], health);
        assert_eq!(lines[2], health);
        assert!(lines[3].starts_with("PUT /?uuid=") && lines[3].ends_with("response=…"));
        assert!(Error::ClockSkew(-100)
            .to_string()
            .contains("100 s ahead of"));
    }

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        for n in 0..20 {
            let d = backoff(n);
            let base = Duration::from_secs((1u64 << n.min(16)).min(60));
            assert!(d >= base / 2 && d < base, "n={n} d={d:?}");
        }
    }
}
