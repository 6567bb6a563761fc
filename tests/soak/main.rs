//! The load-and-fault program: a real `rendezvousd` and real `expose` agents
//! on loopback, N concurrent pairs (generic and HTTP-specific mixed) moving
//! random-sized data both ways with random chunking, pauses and half-closes,
//! every byte checked by SHA-256 where it arrives; the server's descriptors
//! and threads before, at the peak and after; and faults during the load:
//! kill -9 of a hidden agent (and its restart), parked sockets closed from the
//! hidden side (reaped), RST from either side mid-transfer, kill -9 and
//! restart of `rendezvousd`, SIGTERM with active pairs (drain). A separate test
//! runs the accept loop under a low RLIMIT_NOFILE.
//!
//! `soak_fast` (100 pairs, one of each fault) runs in `make test`;
//! `soak_full` (1,000 pairs) is `make soak`, which prints the table of figures.
//!
//! This file holds the harness (streams, the pair header, the service behind
//! the agents, the mobile side, processes); the tests are in `load.rs` (the
//! soak itself), `nofile.rs` (the accept loop under a low RLIMIT_NOFILE) and
//! `restarts.rs` (two server restarts within one TOTP step).
//! `SOAK_SEED=N` replays a run's random choices, `SOAK_PAIRS=N` changes the
//! count of `soak_full`, `TEST_VERBOSE=1` echoes the children's logs.
//!
//! The pair protocol (all of it written here): the mobile client sends a
//! 40-byte header naming the pair (sizes, seed, how each side closes), then
//! its data; the in-test service behind the agent reads it, answers with its
//! own data, and each side hashes what it received and compares it with the
//! SHA-256 of the stream the seed defines. An HTTP-specific mobile client
//! first sends `POST /soak/ID` with `Authorization: Basic base64(UUID:)`; the
//! service checks that the head arrived without `Authorization` and answers
//! `200 OK` before the binary exchange.
//!
//! Measuring on one 2-core machine that also runs the load: the bulk load's
//! threads run at nice 10 ([`background`]) so that they do not starve the
//! system under test or the observers; mobile clients come from 60 loopback
//! addresses (the server caps connections still in their handshake at 128 per
//! address); the agent-kill bound is taken from the moment the hidden side
//! sees the agent's connection close, to cancel this harness's own wake-up
//! delay (which the report shows as "harness lag").

mod cluster;
mod load;
mod nofile;
mod restarts;
#[path = "../support/mod.rs"]
mod support;
mod tls;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use support::*;
use uuid::Uuid;

/// Read and write timeout of every socket the soak opens.
const IO_LONG: Duration = Duration::from_secs(30);
/// Stack of every thread the soak starts.
const STACK: usize = 256 * 1024;
/// Largest write or read the pairs make.
const MAX_CHUNK: usize = 32 * 1024;
/// The server's `--drain-timeout` (seconds).
const DRAIN_SECS: u64 = 5;
/// Trickle pairs: this many bytes every `TRICKLE_EVERY`.
const TRICKLE_CHUNK: usize = 1024;
const TRICKLE_EVERY: Duration = Duration::from_millis(20);
/// RST pairs reset after this many bytes.
const RST_AFTER: u64 = 8 * 1024;

// Salts that split one pair seed into independent streams.
const UP: u64 = 0x0075_7000_0000_0001;
const DOWN: u64 = 0x0064_6f77_6e00_0002;
const MOB_RNG: u64 = 0x006d_6f62_0000_0003;
const SVC_RNG: u64 = 0x0073_7663_0000_0004;

// ---- randomness and data streams -------------------------------------------

/// splitmix64: small and fast; plenty for test data and choices.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One direction's bytes: a pure function of the seed, in any chunking.
struct Stream {
    rng: Rng,
    word: [u8; 8],
    used: usize,
}

impl Stream {
    fn new(seed: u64) -> Stream {
        Stream {
            rng: Rng::new(seed),
            word: [0; 8],
            used: 8,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut i = 0;
        while i < out.len() && self.used < 8 {
            out[i] = self.word[self.used];
            self.used += 1;
            i += 1;
        }
        while out.len() - i >= 8 {
            out[i..i + 8].copy_from_slice(&self.rng.next().to_le_bytes());
            i += 8;
        }
        while i < out.len() {
            if self.used == 8 {
                self.word = self.rng.next().to_le_bytes();
                self.used = 0;
            }
            out[i] = self.word[self.used];
            self.used += 1;
            i += 1;
        }
    }
}

type Digest = [u8; 32];

fn finish(ctx: ring::digest::Context) -> Digest {
    let mut d = [0u8; 32];
    d.copy_from_slice(ctx.finish().as_ref());
    d
}

/// SHA-256 of the first `len` bytes of the stream `seed`.
fn stream_digest(seed: u64, len: u64) -> Digest {
    let mut s = Stream::new(seed);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.fill(&mut buf[..n]);
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    finish(ctx)
}

/// A random write or read size: mostly packets and pages, sometimes tiny.
fn chunk(rng: &mut Rng, left: u64) -> usize {
    let max = match rng.range(0, 9) {
        0 => 16,
        1..=3 => 1460,
        4..=6 => 8 * 1024,
        _ => MAX_CHUNK as u64,
    };
    rng.range(1, max).min(left.max(1)) as usize
}

/// A pause of up to `pause_ms` after a chunk.
fn pause(rng: &mut Rng, pause_ms: u16) {
    if pause_ms > 0 {
        thread::sleep(Duration::from_millis(rng.range(0, u64::from(pause_ms))));
    }
}

// ---- the pair header ---------------------------------------------------------

const MAGIC: &[u8; 4] = b"SOAK";
const HEADER_LEN: usize = 40;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// Sizes known in advance; both sides verify everything.
    #[default]
    Normal,
    /// Both sides trickle; the mobile client resets the connection.
    MobileRst,
    /// Both sides trickle; the service resets the connection.
    ServiceRst,
    /// Both sides trickle until something else closes the connection.
    Trickle,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Normal,
            1 => Kind::MobileRst,
            2 => Kind::ServiceRst,
            3 => Kind::Trickle,
            _ => return None,
        })
    }
}

/// The mobile client half-closes after its data.
const MOBILE_HALF_CLOSE: u8 = 1;
/// The service half-closes right after its data (before reading everything).
const SVC_EARLY_HALF_CLOSE: u8 = 2;
/// The service half-closes after reading everything (neither: a full close).
const SVC_LATE_HALF_CLOSE: u8 = 4;
/// Both sides send 2 KiB chunks, each followed by exactly `pause_ms`.
const STEADY: u8 = 8;
/// Bulk load: both sides' threads run at nice 10 (see [`background`]).
const BACKGROUND: u8 = 16;
const STEADY_CHUNK: usize = 2048;

#[derive(Clone, Copy, Debug)]
struct Spec {
    id: u64,
    kind: Kind,
    flags: u8,
    /// Longest pause after a chunk, both sides.
    pause_ms: u16,
    /// Mobile to hidden server (RST kinds: bytes before the reset).
    up_len: u64,
    /// Hidden server to mobile (RST kinds: bytes before the reset).
    down_len: u64,
    seed: u64,
}

impl Spec {
    fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(MAGIC);
        h[4] = self.kind as u8;
        h[5] = self.flags;
        h[6..8].copy_from_slice(&self.pause_ms.to_le_bytes());
        h[8..16].copy_from_slice(&self.id.to_le_bytes());
        h[16..24].copy_from_slice(&self.up_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.down_len.to_le_bytes());
        h[32..40].copy_from_slice(&self.seed.to_le_bytes());
        h
    }

    fn parse(h: &[u8; HEADER_LEN]) -> Option<Spec> {
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        if &h[..4] != MAGIC {
            return None;
        }
        Some(Spec {
            kind: Kind::from_u8(h[4])?,
            flags: h[5],
            pause_ms: u16::from_le_bytes([h[6], h[7]]),
            id: u64_at(8),
            up_len: u64_at(16),
            down_len: u64_at(24),
            seed: u64_at(32),
        })
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

// ---- sending and receiving -----------------------------------------------------

/// Send `len` bytes of stream `seed` in random chunks with random pauses
/// (or, `steady`, in even chunks with even pauses).
fn send_stream(
    mut w: &TcpStream,
    rng: &mut Rng,
    seed: u64,
    len: u64,
    pause_ms: u16,
    steady: bool,
) -> io::Result<()> {
    let mut s = Stream::new(seed);
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut left = len;
    while left > 0 {
        let n = if steady {
            STEADY_CHUNK.min(left as usize)
        } else {
            chunk(rng, left)
        };
        s.fill(&mut buf[..n]);
        w.write_all(&buf[..n])?;
        left -= n as u64;
        if steady {
            thread::sleep(Duration::from_millis(u64::from(pause_ms)));
        } else {
            pause(rng, pause_ms);
        }
    }
    Ok(())
}

/// Read up to `len` bytes in random sizes, hashing them; fewer means EOF came first.
fn recv_stream(mut r: &TcpStream, rng: &mut Rng, len: u64) -> io::Result<(u64, Digest)> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut got = 0u64;
    while got < len {
        let want = chunk(rng, len - got);
        match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                ctx.update(&buf[..n]);
                got += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((got, finish(ctx)))
}

/// Whether the next read is end of stream (no stray bytes, no error).
fn at_eof(mut r: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
}

/// Read until the peer closes (or `until` bytes, if given), hashing.
/// Returns the bytes, their digest, and whether it ended by a close.
fn recv_until_close(
    mut r: &TcpStream,
    until: Option<u64>,
    mut first: impl FnMut(),
) -> (u64, Digest, bool) {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0u64;
    loop {
        if until.is_some_and(|u| got >= u) {
            return (got, finish(ctx), false);
        }
        match r.read(&mut buf) {
            Ok(0) => return (got, finish(ctx), true),
            Ok(n) => {
                if got == 0 {
                    first();
                }
                ctx.update(&buf[..n]);
                got += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                // Nothing closed it within IO_LONG: report "not closed".
                return (got, finish(ctx), false);
            }
            Err(_) => return (got, finish(ctx), true),
        }
    }
}

/// Trickle stream `seed` until `stop`, an error, or `limit` bytes.
fn trickle(mut w: &TcpStream, seed: u64, stop: &AtomicBool) -> u64 {
    let mut s = Stream::new(seed);
    let mut buf = [0u8; TRICKLE_CHUNK];
    let mut sent = 0u64;
    while !stop.load(Ordering::Acquire) {
        s.fill(&mut buf);
        if w.write_all(&buf).is_err() {
            break;
        }
        sent += buf.len() as u64;
        thread::sleep(TRICKLE_EVERY);
    }
    sent
}

/// Lower the calling thread's priority to nice 10 (threads it starts inherit
/// it). The bulk load's thousands of threads would otherwise starve the
/// system under test (rendezvousd, the agents) and this harness's observers
/// (the fault pairs, the sampler, the main thread) on a 2-core machine:
/// without it the sampler's 20 ms ticks were seen to lag by over a second at
/// the peak of the 1,000-pair load. Raising one's own nice value needs no
/// privilege; on Linux `setpriority(PRIO_PROCESS, 0)` is per thread.
fn background() {
    let _ = rustix::process::setpriority_process(None, 10);
}

fn set_rst_on_close(s: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(s).set_linger(Some(Duration::ZERO))
}

// ---- threads -------------------------------------------------------------------

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(STACK)
        .spawn(f)
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "panic".into()
    }
}

/// Join by `deadline`; a thread still running then is an error (it ends by
/// itself later: every socket it uses has a timeout).
fn join_by<T>(h: JoinHandle<T>, deadline: Instant) -> Result<T, String> {
    while !h.is_finished() {
        if Instant::now() >= deadline {
            return Err("thread did not finish in time".into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    h.join().map_err(panic_text)
}

/// Wait (bounded by `within`) until `f` holds; returns how long it took.
fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

// ---- /proc -------------------------------------------------------------------

fn count_dir(pid: u32, what: &str) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/{what}"))
        .ok()
        .map(|d| d.count())
}

/// Open descriptors and threads of a process.
fn fd_links(pid: u32) -> String {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let l = std::fs::read_link(e.path()).unwrap_or_default();
                    format!("{}->{}", e.file_name().to_string_lossy(), l.display())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.join(" ")
}

fn fds_threads(pid: u32) -> (usize, usize) {
    (
        count_dir(pid, "fd").unwrap_or(0),
        count_dir(pid, "task").unwrap_or(0),
    )
}

type Samples = Vec<(Instant, usize, usize)>;

/// Samples a process's descriptors and threads every 20 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Samples>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = spawn("sampler", move || {
            let mut v = Vec::new();
            while !s.load(Ordering::Acquire) {
                let (f, t) = fds_threads(pid);
                v.push((Instant::now(), f, t));
                thread::sleep(Duration::from_millis(20));
            }
            v
        })
        .expect("start sampler");
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Samples {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.take().expect("running");
        join_by(t, Instant::now() + Duration::from_secs(5)).expect("sampler ends")
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // Also when a test fails half-way: the thread must not outlive it.
        self.stop.store(true, Ordering::Release);
    }
}

/// Descriptors and threads may exceed the baseline by this much "after".
const FD_SLACK: usize = 2;
const THREAD_SLACK: usize = 1;

fn near(base: (usize, usize), f: usize, t: usize) -> bool {
    f <= base.0 + FD_SLACK && t <= base.1 + THREAD_SLACK
}

/// TCP sockets in the network namespace: (local port, remote port, state).
fn tcp_table() -> Vec<(u16, u16, u8)> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                port(f.get(1)?)?,
                port(f.get(2)?)?,
                u8::from_str_radix(f.get(3)?, 16).ok()?,
            ))
        })
        .collect()
}

const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;

/// Raise this process's soft RLIMIT_NOFILE towards the hard one when a run
/// needs more than it allows (children inherit it).
fn ensure_nofile(need: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let Some(line) = limits.lines().find(|l| l.starts_with("Max open files")) else {
        return;
    };
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (Some(&soft), Some(&hard)) = (nums.first(), nums.get(1)) else {
        return;
    };
    if soft >= need {
        return;
    }
    let ok = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok && hard >= need,
        "this run needs {need} descriptors; RLIMIT_NOFILE is {soft} (hard {hard})"
    );
}

// ---- the service behind the agents ---------------------------------------------

/// What the service saw of one pair.
#[derive(Debug, Clone)]
struct SvcRecord {
    /// Bytes received from the mobile client.
    up_bytes: u64,
    /// They hashed to what was sent (and EOF came where it should).
    up_ok: bool,
    /// HTTP: the request head arrived intact and without `Authorization`.
    head_ok: bool,
    /// Bytes sent to the mobile client.
    down_sent: u64,
    /// When the service saw the connection end.
    closed_at: Instant,
    /// ServiceRst: when it reset the connection.
    rst_at: Option<Instant>,
    err: Option<String>,
}

/// Where service threads leave their records for the mobile side.
#[derive(Default)]
struct Board {
    records: Mutex<HashMap<u64, SvcRecord>>,
    cv: Condvar,
    /// Service connections open now.
    active: AtomicUsize,
    /// Connections that never sent a header (abandoned pairings).
    stray: AtomicU64,
    /// Headers that did not parse.
    bad_headers: AtomicU64,
}

impl Board {
    fn put(&self, id: u64, r: SvcRecord) {
        self.records.lock().expect("records").insert(id, r);
        self.cv.notify_all();
    }

    fn wait(&self, id: u64, within: Duration) -> Option<SvcRecord> {
        let end = Instant::now() + within;
        let mut m = self.records.lock().expect("records");
        loop {
            if let Some(r) = m.remove(&id) {
                return Some(r);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            m = self.cv.wait_timeout(m, left).expect("records").0;
        }
    }
}

struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The local service the agents expose (`--to`): one thread per connection.
struct Service {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    fn start(board: Arc<Board>) -> Service {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind service");
        let addr = l.local_addr().expect("service address");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = spawn("service", move || {
            for conn in l.incoming() {
                if s.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let b = board.clone();
                b.active.fetch_add(1, Ordering::AcqRel);
                let spawned = spawn("svc-conn", move || {
                    let _g = ActiveGuard(&b.active);
                    serve_conn(conn, &b);
                });
                if spawned.is_err() {
                    board.active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })
        .expect("start service");
        Service {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = join_by(t, Instant::now() + Duration::from_secs(5));
        }
    }
}

const RESPONSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";

fn serve_conn(sock: TcpStream, board: &Board) {
    let _ = sock.set_read_timeout(Some(IO_LONG));
    let _ = sock.set_write_timeout(Some(IO_LONG));
    let _ = sock.set_nodelay(true);
    let mut first = [0u8; 4];
    if (&sock).read_exact(&mut first).is_err() {
        board.stray.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut head_id = None;
    if &first != MAGIC {
        // The HTTP-specific protocol: the mobile client's request head,
        // forwarded minus Authorization.
        let Ok(head) = read_head_after(&sock, first.to_vec()) else {
            board.bad_headers.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let id = text
            .strip_prefix("post /soak/")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        let clean = !text.contains("\nauthorization:") && text.contains("\nx-soak: 1\r\n");
        head_id = Some(id.filter(|_| clean));
        if (&sock).write_all(RESPONSE_HEAD).is_err() {
            board.stray.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    // The header: generic pairs began it with the 4 bytes read above.
    let mut h = [0u8; HEADER_LEN];
    let have = if head_id.is_none() {
        h[..4].copy_from_slice(&first);
        4
    } else {
        0
    };
    let spec = match (&sock).read_exact(&mut h[have..]) {
        Ok(()) => Spec::parse(&h),
        Err(_) => None,
    };
    let Some(spec) = spec else {
        board.bad_headers.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let head_ok = head_id.is_none_or(|id| id == Some(spec.id));
    if spec.has(BACKGROUND) {
        background();
    }
    let rec = match spec.kind {
        Kind::Normal => svc_normal(sock, &spec),
        Kind::Trickle | Kind::MobileRst => svc_trickle(sock, &spec, None),
        Kind::ServiceRst => svc_trickle(sock, &spec, Some(spec.up_len)),
    };
    board.put(spec.id, SvcRecord { head_ok, ..rec });
}

fn svc_record(err: Option<String>) -> SvcRecord {
    SvcRecord {
        up_bytes: 0,
        up_ok: false,
        head_ok: true,
        down_sent: 0,
        closed_at: Instant::now(),
        rst_at: None,
        err,
    }
}

fn svc_normal(sock: TcpStream, spec: &Spec) -> SvcRecord {
    let Ok(w) = sock.try_clone() else {
        return svc_record(Some("service: clone socket".into()));
    };
    let sp = *spec;
    let writer = spawn("svc-w", move || -> io::Result<()> {
        let mut rng = Rng::new(sp.seed ^ SVC_RNG);
        send_stream(
            &w,
            &mut rng,
            sp.seed ^ DOWN,
            sp.down_len,
            sp.pause_ms,
            sp.has(STEADY),
        )?;
        if sp.has(SVC_EARLY_HALF_CLOSE) {
            w.shutdown(Shutdown::Write)?;
        }
        Ok(())
    });
    let Ok(writer) = writer else {
        return svc_record(Some("service: start writer".into()));
    };
    let mut rng = Rng::new(spec.seed ^ SVC_RNG ^ 1);
    let mut rec = svc_record(None);
    match recv_stream(&sock, &mut rng, spec.up_len) {
        Ok((got, d)) => {
            rec.up_bytes = got;
            rec.up_ok = got == spec.up_len && d == stream_digest(spec.seed ^ UP, spec.up_len);
            if spec.has(MOBILE_HALF_CLOSE) && !at_eof(&sock) {
                rec.up_ok = false;
            }
        }
        Err(e) => {
            rec.err = Some(format!("service read: {e}"));
            let _ = sock.shutdown(Shutdown::Both);
        }
    }
    match join_by(writer, Instant::now() + IO_LONG + Duration::from_secs(5)) {
        Ok(Ok(())) => rec.down_sent = spec.down_len,
        Ok(Err(e)) => {
            rec.err.get_or_insert(format!("service write: {e}"));
        }
        Err(e) => {
            rec.err.get_or_insert(format!("service writer: {e}"));
        }
    }
    if rec.err.is_none() {
        let half = spec.has(SVC_EARLY_HALF_CLOSE) || spec.has(SVC_LATE_HALF_CLOSE);
        if spec.has(SVC_LATE_HALF_CLOSE) && !spec.has(SVC_EARLY_HALF_CLOSE) {
            let _ = sock.shutdown(Shutdown::Write);
        }
        // After a half-close the mobile client closes once it has read
        // everything; nothing more may arrive before that.
        if half && !spec.has(MOBILE_HALF_CLOSE) && !at_eof(&sock) {
            rec.up_ok = false;
        }
    }
    rec.closed_at = Instant::now();
    rec
}

/// Trickle both ways until the connection closes, or (`rst_after`) reset it
/// once that many bytes have arrived.
fn svc_trickle(sock: TcpStream, spec: &Spec, rst_after: Option<u64>) -> SvcRecord {
    let Ok(w) = sock.try_clone() else {
        return svc_record(Some("service: clone socket".into()));
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (st, seed) = (stop.clone(), spec.seed ^ DOWN);
    let Ok(writer) = spawn("svc-trickle", move || trickle(&w, seed, &st)) else {
        return svc_record(Some("service: start writer".into()));
    };
    let (got, d, closed) = recv_until_close(&sock, rst_after, || {});
    let mut rec = svc_record(None);
    rec.closed_at = Instant::now();
    rec.up_bytes = got;
    rec.up_ok = d == stream_digest(spec.seed ^ UP, got);
    stop.store(true, Ordering::Release);
    if rst_after.is_some() && !closed {
        // Reset: the writer's descriptor closes first, then this one with
        // SO_LINGER 0.
        rec.down_sent = join_by(writer, Instant::now() + Duration::from_secs(10)).unwrap_or(0);
        if let Err(e) = set_rst_on_close(&sock) {
            rec.err = Some(format!("service: SO_LINGER: {e}"));
        }
        rec.rst_at = Some(Instant::now());
        drop(sock);
    } else {
        if rst_after.is_some() {
            rec.err = Some(format!(
                "service: closed after {got} bytes, before its reset"
            ));
        } else if !closed {
            rec.err = Some("service: connection never closed".into());
        }
        let _ = sock.shutdown(Shutdown::Both);
        rec.down_sent = join_by(writer, Instant::now() + Duration::from_secs(10)).unwrap_or(0);
    }
    rec
}

// ---- the mobile side ---------------------------------------------------------

/// Where the mobile clients go, and what they share.
struct Ctx {
    reg: SocketAddr,
    board: Arc<Board>,
    next_id: AtomicU64,
    /// Connections between their connect and their first answer.
    establishing: (Mutex<usize>, Condvar),
    /// Pairs established and not finished.
    live: AtomicUsize,
    peak_live: AtomicUsize,
}

impl Ctx {
    /// Mobile clients of the registrar at `reg`, checked against `board`.
    fn new(reg: SocketAddr, board: Arc<Board>) -> Arc<Ctx> {
        Arc::new(Ctx {
            reg,
            board,
            next_id: AtomicU64::new(1),
            establishing: (Mutex::new(0), Condvar::new()),
            live: AtomicUsize::new(0),
            peak_live: AtomicUsize::new(0),
        })
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Wait for a place among the [`ESTABLISHING`] connections allowed
    /// between their connect and their first answer. The soak's mobile
    /// clients all come from 127.0.0.1 (the tests use no other address), and
    /// the server caps connections still in their handshake per address
    /// (128), as a thousand phones from a thousand addresses would not meet.
    /// Only the start is paced: the pairs then relay all at once.
    fn admit(&self) -> Admitted<'_> {
        let (m, cv) = &self.establishing;
        let mut n = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *n >= ESTABLISHING {
            n = cv
                .wait(n)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *n += 1;
        Admitted(&self.establishing)
    }
}

/// See [`Ctx::admit`]; well under the server's per-address cap of 128.
const ESTABLISHING: usize = 64;

/// A place among the establishing connections, given back on drop.
struct Admitted<'a>(&'a (Mutex<usize>, Condvar));

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let (m, cv) = self.0;
        *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
        cv.notify_one();
    }
}

fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(IO_LONG))?;
    s.set_write_timeout(Some(IO_LONG))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// `GET ?uuid=`: the rendezvous address and the `I` cookie.
fn lookup(reg: SocketAddr, uuid: &Uuid) -> Result<(SocketAddr, String), String> {
    let mut s = tcp(reg).map_err(|e| format!("connect registrar: {e}"))?;
    write!(
        s,
        "GET /?uuid={uuid} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        reg.port()
    )
    .map_err(|e| format!("send lookup: {e}"))?;
    let r = rendezvous::wire::read_response(&mut s).map_err(|e| format!("lookup: {e}"))?;
    if r.status != 200 {
        return Err(format!("lookup answered {}", r.status));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("lookup body: {e}"))?;
    let host = v["result"]["host"].as_str().unwrap_or("");
    let port = v["result"]["port"].as_u64().unwrap_or(0);
    let cookie = v["result"]["cookie"].as_str().unwrap_or("").to_string();
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|_| format!("lookup gave {host}:{port}"))?;
    Ok((addr, cookie))
}

/// Send the cookie line and wait (up to `wait`) for `+OK`.
fn dial(rv: SocketAddr, cookie: &str, wait: Duration) -> Result<TcpStream, String> {
    let mut s = tcp(rv).map_err(|e| format!("connect rendezvous: {e}"))?;
    s.write_all(format!("{cookie}\n").as_bytes())
        .map_err(|e| format!("send cookie: {e}"))?;
    s.set_read_timeout(Some(wait))
        .map_err(|e| format!("timeout: {e}"))?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match s.read(&mut b) {
            Ok(0) => return Err("rendezvous closed before a status line".into()),
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("status line: {e}")),
        }
        if line.len() > 256 {
            return Err("status line too long".into());
        }
    }
    if !line.starts_with(b"+OK") {
        return Err(format!(
            "rendezvous: {}",
            String::from_utf8_lossy(&line).trim()
        ));
    }
    s.set_read_timeout(Some(IO_LONG))
        .map_err(|e| format!("timeout: {e}"))?;
    Ok(s)
}

/// Reach the hidden server: a generic rendezvous, or an HTTP request through
/// the registrar whose `200` comes from the service itself.
fn establish(
    ctx: &Ctx,
    spec: &Spec,
    http: bool,
    uuid: &Uuid,
    wait: Duration,
) -> Result<TcpStream, String> {
    let _admitted = ctx.admit();
    if !http {
        let (rv, cookie) = lookup(ctx.reg, uuid)?;
        return dial(rv, &cookie, wait);
    }
    let mut s = tcp(ctx.reg).map_err(|e| format!("connect registrar: {e}"))?;
    let auth = data_encoding::BASE64.encode(format!("{uuid}:").as_bytes());
    write!(
        s,
        "POST /soak/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {auth}\r\nX-Soak: 1\r\nContent-Type: application/octet-stream\r\n\r\n",
        spec.id,
        ctx.reg.port()
    )
    .map_err(|e| format!("send request: {e}"))?;
    s.set_read_timeout(Some(wait))
        .map_err(|e| format!("timeout: {e}"))?;
    let head = read_head_after(&s, Vec::new()).map_err(|e| format!("response head: {e}"))?;
    if head != RESPONSE_HEAD {
        let line = String::from_utf8_lossy(&head);
        return Err(format!("answered {:?}", line.lines().next().unwrap_or("")));
    }
    s.set_read_timeout(Some(IO_LONG))
        .map_err(|e| format!("timeout: {e}"))?;
    Ok(s)
}

/// What became of one pair.
#[derive(Debug, Default, Clone)]
struct Outcome {
    kind: Kind,
    /// Bytes sent each way (by their senders).
    up_sent: u64,
    down_sent: u64,
    /// Bytes whose SHA-256 matched where they arrived.
    up_verified: u64,
    down_verified: u64,
    /// Directions (or heads) that arrived wrong or cut short.
    mismatches: u64,
    failure: Option<String>,
    /// Trickle pairs: when the mobile side saw the close.
    closed_at: Option<Instant>,
    /// Trickle pairs: when the service (the hidden side) saw it.
    hidden_closed_at: Option<Instant>,
    /// RST pairs: from the reset on one side to the close on the other.
    close_latency: Option<Duration>,
    /// When the data exchange finished (Normal pairs).
    done_at: Option<Instant>,
}

impl Outcome {
    fn fail(mut self, why: impl Into<String>) -> Outcome {
        self.failure.get_or_insert(why.into());
        self
    }
}

/// All pairs of a load wait here until every one of them is established, so
/// the load really is N concurrent pairs.
struct Gate {
    need: usize,
    n: Mutex<usize>,
    cv: Condvar,
    deadline: Instant,
}

impl Gate {
    fn new(need: usize, within: Duration) -> Arc<Gate> {
        Arc::new(Gate {
            need,
            n: Mutex::new(0),
            cv: Condvar::new(),
            deadline: Instant::now() + within,
        })
    }

    fn arrive(&self) {
        *self.n.lock().expect("gate") += 1;
        self.cv.notify_all();
    }

    /// Wait until all arrived (or the deadline); true when all did.
    fn wait(&self) -> bool {
        let mut n = self.n.lock().expect("gate");
        while *n < self.need {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self.cv.wait_timeout(n, left).expect("gate").0;
        }
        true
    }
}

struct Live<'a>(&'a Ctx);

impl<'a> Live<'a> {
    fn new(ctx: &'a Ctx) -> Live<'a> {
        let n = ctx.live.fetch_add(1, Ordering::AcqRel) + 1;
        ctx.peak_live.fetch_max(n, Ordering::AcqRel);
        Live(ctx)
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One pair of known sizes, verified both ways.
fn pair_normal(
    ctx: &Ctx,
    spec: Spec,
    http: bool,
    uuid: Uuid,
    gate: Option<&Gate>,
    wait: Duration,
) -> Outcome {
    if spec.has(BACKGROUND) {
        background();
    }
    let out = Outcome {
        kind: spec.kind,
        ..Outcome::default()
    };
    let s = match establish(ctx, &spec, http, &uuid, wait) {
        Ok(s) => s,
        Err(e) => {
            if let Some(g) = gate {
                g.arrive();
            }
            return out.fail(format!("pair {}: {e}", spec.id));
        }
    };
    let live = Live::new(ctx);
    if let Some(g) = gate {
        g.arrive();
        g.wait();
    }
    let Ok(w) = s.try_clone() else {
        return out.fail("clone socket");
    };
    let writer = spawn("mob-w", move || -> io::Result<()> {
        let mut rng = Rng::new(spec.seed ^ MOB_RNG);
        (&w).write_all(&spec.header())?;
        send_stream(
            &w,
            &mut rng,
            spec.seed ^ UP,
            spec.up_len,
            spec.pause_ms,
            spec.has(STEADY),
        )?;
        if spec.has(MOBILE_HALF_CLOSE) {
            w.shutdown(Shutdown::Write)?;
        }
        Ok(())
    });
    let Ok(writer) = writer else {
        return out.fail("start writer");
    };
    let mut out = out;
    let mut rng = Rng::new(spec.seed ^ MOB_RNG ^ 1);
    match recv_stream(&s, &mut rng, spec.down_len) {
        Ok((got, d)) => {
            let eof = at_eof(&s);
            if got == spec.down_len && d == stream_digest(spec.seed ^ DOWN, spec.down_len) && eof {
                out.down_verified = got;
            } else {
                out.mismatches += 1;
                out.failure = Some(format!(
                    "pair {} ({}) down: {got} of {} bytes, digest {}, eof {eof}",
                    spec.id,
                    if http { "http" } else { "generic" },
                    spec.down_len,
                    if d == stream_digest(spec.seed ^ DOWN, got) {
                        "prefix ok"
                    } else {
                        "WRONG"
                    }
                ));
            }
        }
        Err(e) => {
            let _ = s.shutdown(Shutdown::Both);
            out = out.fail(format!("pair {} read: {e}", spec.id));
        }
    }
    match join_by(writer, Instant::now() + IO_LONG + Duration::from_secs(5)) {
        Ok(Ok(())) => out.up_sent = spec.up_len,
        Ok(Err(e)) => out = out.fail(format!("pair {} write: {e}", spec.id)),
        Err(e) => out = out.fail(format!("pair {} writer: {e}", spec.id)),
    }
    drop(s);
    out.done_at = Some(Instant::now());
    drop(live);
    match ctx.board.wait(spec.id, IO_LONG + Duration::from_secs(10)) {
        None => out.fail(format!("pair {}: no record from the service", spec.id)),
        Some(r) => {
            out.down_sent = r.down_sent;
            if let Some(e) = r.err {
                out = out.fail(format!("pair {}: {e}", spec.id));
            } else if r.up_ok {
                out.up_verified = r.up_bytes;
            } else {
                out.mismatches += 1;
                out.failure.get_or_insert(format!(
                    "pair {} up: service got {} of {} bytes, not verified",
                    spec.id, r.up_bytes, spec.up_len
                ));
            }
            if !r.head_ok {
                out.mismatches += 1;
                out.failure
                    .get_or_insert(format!("pair {}: request head altered", spec.id));
            }
            out
        }
    }
}

/// A trickle pair: runs until something closes it (a fault, a drain) or, for
/// the RST kinds, until one side resets it. Every byte that did arrive must be
/// a prefix of what was sent.
fn pair_trickle(ctx: &Ctx, spec: Spec, http: bool, uuid: Uuid, est: &AtomicUsize) -> Outcome {
    let mut out = Outcome {
        kind: spec.kind,
        ..Outcome::default()
    };
    let s = match establish(ctx, &spec, http, &uuid, Duration::from_secs(25)) {
        Ok(s) => s,
        Err(e) => {
            est.fetch_add(1, Ordering::AcqRel);
            return out.fail(format!("trickle pair {}: {e}", spec.id));
        }
    };
    let Ok(w) = s.try_clone() else {
        return out.fail("clone socket");
    };
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let writer = spawn("mob-trickle", move || {
        if (&w).write_all(&spec.header()).is_err() {
            return 0;
        }
        trickle(&w, spec.seed ^ UP, &st)
    });
    let Ok(writer) = writer else {
        return out.fail("start writer");
    };
    let until = (spec.kind == Kind::MobileRst).then_some(spec.down_len);
    let mut counted = false;
    let (got, d, closed) = recv_until_close(&s, until, || {
        est.fetch_add(1, Ordering::AcqRel);
        counted = true;
    });
    let seen = Instant::now();
    if !counted {
        est.fetch_add(1, Ordering::AcqRel);
    }
    stop.store(true, Ordering::Release);
    if d == stream_digest(spec.seed ^ DOWN, got) {
        out.down_verified = got;
    } else {
        out.mismatches += 1;
    }
    let mut rst_at = None;
    if spec.kind == Kind::MobileRst {
        if closed {
            out = out.fail(format!("rst pair {}: closed before the reset", spec.id));
        }
        out.up_sent = join_by(writer, Instant::now() + Duration::from_secs(10)).unwrap_or(0);
        if let Err(e) = set_rst_on_close(&s) {
            out = out.fail(format!("SO_LINGER: {e}"));
        }
        rst_at = Some(Instant::now());
        drop(s);
    } else {
        if !closed {
            out = out.fail(format!("pair {}: never closed", spec.id));
        }
        out.closed_at = Some(seen);
        let _ = s.shutdown(Shutdown::Both);
        out.up_sent = join_by(writer, Instant::now() + Duration::from_secs(10)).unwrap_or(0);
    }
    match ctx.board.wait(spec.id, Duration::from_secs(20)) {
        None => out.fail(format!("pair {}: no record from the service", spec.id)),
        Some(r) => {
            out.down_sent = r.down_sent;
            out.hidden_closed_at = Some(r.closed_at);
            if r.up_ok {
                out.up_verified = r.up_bytes;
            } else {
                out.mismatches += 1;
            }
            if !r.head_ok {
                out.mismatches += 1;
            }
            match spec.kind {
                Kind::MobileRst => {
                    out.close_latency = rst_at.map(|t| r.closed_at.saturating_duration_since(t));
                }
                Kind::ServiceRst => match r.rst_at {
                    Some(t) => out.close_latency = Some(seen.saturating_duration_since(t)),
                    None => out = out.fail(format!("pair {}: service did not reset", spec.id)),
                },
                _ => {}
            }
            if let Some(e) = r.err {
                out = out.fail(format!("pair {}: {e}", spec.id));
            }
            out
        }
    }
}

// ---- processes -------------------------------------------------------------

#[derive(Clone)]
struct AgentSpec {
    name: &'static str,
    uuid: Uuid,
    http: bool,
    pool: usize,
}

fn start_agent(a: &AgentSpec, reg: SocketAddr, to: SocketAddr, secret: &Path) -> Proc {
    let mut c = rendezvous();
    c.args([
        "expose",
        "--protocol",
        if a.http { "http" } else { "generic" },
        "--pool",
        &a.pool.to_string(),
        "--server",
        &format!("http://{reg}"),
        "--uuid",
        &a.uuid.to_string(),
        "--to",
        &to.to_string(),
        "--secret-file",
    ])
    .arg(secret)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    Proc::spawn(a.name, c)
}

fn serve_cmd(mut c: Command, state: &Path, reg: &str, rv: &str) -> Command {
    c.args([
        "serve",
        "--plaintext",
        "--registrar",
        reg,
        "--rendezvous",
        rv,
        "--pair-timeout",
        "20",
        "--drain-timeout",
        &DRAIN_SECS.to_string(),
        "--state-dir",
    ])
    .arg(state)
    .env(
        "RUST_LOG",
        "info,rendezvous::rendezvous=debug,rendezvous::connect=debug,rendezvous::registry=debug",
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    c
}

fn start_server(state: &Path, reg: &str, rv: &str) -> (Proc, SocketAddr, SocketAddr) {
    let p = Proc::spawn("rendezvousd", serve_cmd(rendezvousd(), state, reg, rv));
    let r = p.listening("registrar");
    let v = p.listening("rendezvous");
    (p, r, v)
}

fn get_metrics(reg: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&reg, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        b"GET /.well-known/rendezvous/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .ok()?;
    let r = rendezvous::wire::read_response(&mut s).ok()?;
    (r.status == 200).then(|| String::from_utf8_lossy(&r.body).into_owned())
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Parked sockets (generic, http) from the metrics page.
fn parked(reg: SocketAddr) -> Option<(u64, u64)> {
    let m = get_metrics(reg)?;
    Some((
        metric(&m, "rendezvous_parked{proto=\"generic\"}")?,
        metric(&m, "rendezvous_parked{proto=\"http\"}")?,
    ))
}

fn count_lines(p: &Proc, needle: &str) -> usize {
    p.lines
        .lock()
        .expect("lines")
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// `PUT ?uuid=&response=`: register with a token; the `R` cookie.
/// Park raw hidden-side sockets for a registered UUID: generic ones on the
/// rendezvous port, HTTP ones by `CONNECT ?cookie=` on the registrar.
fn park_raw(
    reg: SocketAddr,
    rv: SocketAddr,
    uuid: &Uuid,
    cookie: &str,
    n: usize,
) -> Vec<(TcpStream, u16)> {
    let mut out = Vec::new();
    for i in 0..n {
        if i % 2 == 0 {
            out.push((park(rv, cookie), rv.port()));
        } else {
            let mut s = connect(reg);
            write!(
                s,
                "CONNECT uuid:{uuid}?cookie={cookie} HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .expect("send CONNECT");
            let head = read_head_after(&s, Vec::new()).expect("CONNECT answer");
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            out.push((s, reg.port()));
        }
    }
    out
}

// ---- recovery probes ---------------------------------------------------------

/// One small verified pair; Ok once it went through.
fn probe(ctx: &Ctx, http: bool, uuid: Uuid, wait: Duration) -> Result<(), String> {
    let spec = Spec {
        id: ctx.id(),
        kind: Kind::Normal,
        flags: MOBILE_HALF_CLOSE,
        pause_ms: 0,
        up_len: 4096,
        down_len: 4096,
        seed: ctx.id().wrapping_mul(0x9E37_79B9),
    };
    let o = pair_normal(ctx, spec, http, uuid, None, wait);
    match o.failure {
        None if o.mismatches == 0 => Ok(()),
        f => Err(f.unwrap_or_else(|| "mismatch".into())),
    }
}

/// Probe until a pair through `uuid` works; how long after `since` that was.
fn recover(ctx: &Ctx, http: bool, uuid: Uuid, since: Instant, within: Duration) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < within {
        match probe(ctx, http, uuid, Duration::from_secs(15)) {
            Ok(()) => return since.elapsed(),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("no pair through {uuid} (http {http}) within {within:?}: {last}");
}

/// Probe a generic and an HTTP-specific agent at once until a pair through
/// each works: how long after `since` each was. `what` says, in a failure,
/// what was expected of them ("agent recovers").
fn recover_both(
    ctx: &Arc<Ctx>,
    (generic, http): (Uuid, Uuid),
    since: Instant,
    within: Duration,
    what: &str,
) -> (Duration, Duration) {
    let (c1, c2) = (ctx.clone(), ctx.clone());
    let pg = spawn("probe", move || recover(&c1, false, generic, since, within)).expect("probe");
    let ph = spawn("probe", move || recover(&c2, true, http, since, within)).expect("probe");
    let dl = Instant::now() + Duration::from_secs(60);
    (
        join_by(pg, dl).unwrap_or_else(|e| panic!("generic {what}: {e}")),
        join_by(ph, dl).unwrap_or_else(|e| panic!("http {what}: {e}")),
    )
}
