//! `make bench`: throughput, setup latency, pairing rate and memory of a real
//! `rendezvousd` (release build) on loopback, each as a ratio to a baseline
//! measured in the same run (the machines are shared and noisy).
//!
//! Usage: `cargo bench --bench relay -- [--json FILE] [--secs N] [--quick]
//! [--sweep-only | --memory-only | --store-only | --cluster-only |
//! --chain-only | --peers DIR [--static DIR]]`. For an A/B run against another build,
//! `RENDEZVOUSD_BIN=PATH` and `RENDEZVOUS_BIN=PATH` name the rendezvousd
//! and the rendezvous to measure; with
//! `BENCH_SMAPS=FILE` the memory phase keeps the server's
//! `/proc/PID/smaps` with its idle pairs (stack pages per thread).
//! Everything binds 127.0.0.1 port 0; every phase is bounded in time.

#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(feature = "store-redis")]
#[path = "relay_parts/cluster.rs"]
mod cluster;

#[path = "relay_parts/far.rs"]
mod far;

#[path = "relay_parts/chain.rs"]
mod chain;

#[path = "relay_parts/peers.rs"]
mod peers;

/// Without the store (`--no-default-features`) there are no nodes.
#[cfg(not(feature = "store-redis"))]
mod cluster {
    pub fn cluster_rows(_quick: bool, _dir: &std::path::Path, rep: &mut super::Report) {
        rep.rows.push((
            "cluster".into(),
            "not built".into(),
            "needs the store-redis feature".into(),
        ));
    }
}

use rendezvous::agent::client::Registrar;
use rendezvous::agent::settings::ServerUrl;
use rendezvous::certs;
use rendezvous::tls::{self, Trust};
use rendezvous::totp;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::{park, read_head, read_line, secret, Proc, SECRET_B32};

const UUID: &str = "0b3e1c4e-6f55-4a8e-9d7a-5b2f0c1d2e3f";
const CHUNK: usize = 128 * 1024;

struct Opts {
    /// Only the pairing-under-sweep phase (A/B runs of the reaper).
    sweep_only: bool,
    /// Only the memory phase (A/B runs of what a parked socket costs).
    memory_only: bool,
    /// Only the store phase (embedded next to Redis).
    store_only: bool,
    /// Only the two-node phase (an HTTP request local or forwarded).
    cluster_only: bool,
    /// Only the setup latency through the whole chain.
    chain_only: bool,
    /// `make bench-peers`: ours beside rathole and bore installed here.
    peers: Option<PathBuf>,
    /// With `peers`: our programs built static (musl) in this folder too.
    static_bins: Option<PathBuf>,
    secs: f64,
    json: Option<PathBuf>,
    quick: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        sweep_only: false,
        memory_only: false,
        store_only: false,
        cluster_only: false,
        chain_only: false,
        peers: None,
        static_bins: None,
        secs: 3.0,
        json: None,
        quick: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => o.json = args.next().map(PathBuf::from),
            "--secs" => o.secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0),
            "--quick" => o.quick = true,
            "--sweep-only" => o.sweep_only = true,
            "--memory-only" => o.memory_only = true,
            "--store-only" => o.store_only = true,
            "--cluster-only" => o.cluster_only = true,
            "--chain-only" => o.chain_only = true,
            "--peers" => o.peers = args.next().map(PathBuf::from),
            "--static" => o.static_bins = args.next().map(PathBuf::from),
            _ => {} // cargo bench passes --bench
        }
    }
    if o.quick {
        o.secs = o.secs.min(1.0);
    }
    o
}

// ---- processes -------------------------------------------------------------

/// A child with standard input and output closed, its stderr collected.
fn spawn(name: &str, mut cmd: Command) -> Proc {
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    Proc::spawn(name, cmd)
}

/// A folder whose programs [`bin`] names instead, while set (the static
/// build's tunnel of `--peers`).
static BIN_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// The binaries under test; `RENDEZVOUSD_BIN` and `RENDEZVOUS_BIN` name
/// other builds (an A/B run against an older one).
fn bin(name: &str) -> PathBuf {
    if let Some(d) = BIN_DIR.lock().ok().and_then(|d| d.clone()) {
        return d.join(name);
    }
    // Other builds of the programs, for a before-and-after in one run.
    let var = if name == "rendezvousd" {
        "RENDEZVOUSD_BIN"
    } else {
        "RENDEZVOUS_BIN"
    };
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let p = match name {
        "rendezvousd" => env!("CARGO_BIN_EXE_rendezvousd"),
        _ => env!("CARGO_BIN_EXE_rendezvous"),
    };
    PathBuf::from(p)
}

/// CPU seconds (user + system) of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn status_kib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

struct Server {
    proc: Proc,
    registrar: SocketAddr,
    rendezvous: SocketAddr,
    state: PathBuf,
    /// Tokens used so far: each server's first token is for the previous
    /// step, the next for this one, then the next (one step of skew).
    steps: AtomicU64,
}

impl Server {
    fn next_token(&self) -> String {
        let p = totp::Params::default();
        let base = p.step_of(totp::now()).saturating_sub(1);
        let off = self.steps.fetch_add(1, Ordering::Relaxed);
        assert!(off < 3, "at most three tokens per server and step window");
        totp::hotp(&secret(), base + off, p.digits)
    }
}

fn start_server(dir: &Path, tls: bool, extra: &[&str]) -> Server {
    start_server_for(dir, tls, extra, &[UUID])
}

/// A server whose users file names `uuids`, all with the bench's secret.
fn start_server_for(dir: &Path, tls: bool, extra: &[&str], uuids: &[&str]) -> Server {
    // A state folder of its own per server: the security state (replay
    // floors) outlives a server, and each Server counts its tokens from 0.
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let state = dir.join(format!("state-{n}{}", if tls { "-tls" } else { "" }));
    std::fs::create_dir_all(&state).expect("state dir");
    let users = state.join("users");
    let lines: String = uuids
        .iter()
        .map(|u| format!("{u} {SECRET_B32}\n"))
        .collect();
    std::fs::write(&users, lines).expect("users");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut c = Command::new(bin("rendezvousd"));
    c.args([
        "serve",
        "--registrar",
        "127.0.0.1:0",
        "--rendezvous",
        "127.0.0.1:0",
    ])
    // The memory figures park 1,000 sockets under one UUID: the largest pool allowed.
    .args(["--pool-max", "1024", "--max-connections", "16000"])
    .arg("--state-dir")
    .arg(&state)
    .args(extra);
    if !tls {
        c.arg("--plaintext");
    }
    let proc = spawn("rendezvousd", c);
    let registrar = proc.listening("registrar");
    let rendezvous = proc.listening("rendezvous");
    Server {
        proc,
        registrar,
        rendezvous,
        state,
        steps: AtomicU64::new(0),
    }
}

/// Register (a fresh step each call within one process: use skew) and
/// return (R cookie, I cookie).
fn register(s: &Server) -> (String, String) {
    let url = ServerUrl::parse(&format!(
        "{}://127.0.0.1:{}",
        if s.state.to_string_lossy().ends_with("-tls") {
            "https"
        } else {
            "http"
        },
        s.registrar.port()
    ))
    .expect("url");
    let trust = Trust::Ca(s.state.join("cert.pem"));
    let reg = Registrar::new(url, &trust).expect("registrar client");
    let uuid = uuid::Uuid::parse_str(UUID).expect("uuid");
    let r = reg.register(&uuid, &s.next_token()).expect("register");
    let i = reg.lookup(&uuid).expect("lookup");
    (r.cookie, i.cookie)
}

/// A generic pair through the server: (initiator, responder), both past +OK.
fn pair(s: &Server, r: &str, i: &str) -> (TcpStream, TcpStream) {
    let mut resp = park(s.rendezvous, r);
    let mut init = park(s.rendezvous, i);
    assert_eq!(read_line(&mut init), "+OK");
    assert_eq!(read_line(&mut resp), "+OK");
    (init, resp)
}

// ---- throughput --------------------------------------------------------------

/// Send for `secs` from each `tx` to its `rx`; returns Gbit/s (all streams).
fn blast(streams: Vec<(TcpStream, TcpStream)>, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for (mut tx, mut rx) in streams {
        let stop2 = stop.clone();
        hs.push(thread::spawn(move || {
            let buf = vec![0x5au8; CHUNK];
            while !stop2.load(Ordering::Relaxed) {
                if tx.write_all(&buf).is_err() {
                    break;
                }
            }
            let _ = tx.shutdown(Shutdown::Write);
        }));
        let t2 = total.clone();
        hs.push(thread::spawn(move || {
            let mut buf = vec![0u8; CHUNK];
            while let Ok(n) = rx.read(&mut buf) {
                if n == 0 {
                    break;
                }
                t2.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
    }
    // Warm up, then measure a window.
    thread::sleep(Duration::from_millis(200));
    let b0 = total.load(Ordering::Relaxed);
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs_f64(secs));
    let bytes = total.load(Ordering::Relaxed) - b0;
    let el = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        let _ = h.join();
    }
    bytes as f64 * 8.0 / el / 1e9
}

fn direct_pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    (0..n)
        .map(|_| {
            let a = TcpStream::connect(addr).expect("connect");
            let (b, _) = l.accept().expect("accept");
            (a, b)
        })
        .collect()
}

/// Throughput and the server's CPU over the window: (Gbit/s, CPU %).
fn blast_with_cpu(pid: u32, streams: Vec<(TcpStream, TcpStream)>, secs: f64) -> (f64, f64) {
    let c0 = cpu_secs(pid);
    let t0 = Instant::now();
    let g = blast(streams, secs);
    let cpu = (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    (g, cpu)
}

/// Busy and total jiffies of the whole machine, from /proc/stat.
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// Run `f`, returning its result and how busy the whole machine was
/// meanwhile, in percent of one core (200% = both cores of two).
fn machine_busy<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let cores = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (b0, t0) = machine_ticks();
    let r = f();
    let (b1, t1) = machine_ticks();
    let busy = if t1 > t0 {
        (b1 - b0) / (t1 - t0) * 100.0 * cores
    } else {
        f64::NAN
    };
    (r, busy)
}

/// A sink: counts what arrives on its accepted connections.
fn sink() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let c = c.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, count)
}

/// Echo one byte per connection, then close (the hidden side of latency runs).
fn one_byte_echo(mut s: TcpStream) {
    let mut b = [0u8; 1];
    if s.read_exact(&mut b).is_ok() {
        let _ = s.write_all(&b);
    }
}

fn socat_run(secs: f64) -> Option<(f64, f64)> {
    Command::new("socat").arg("-V").output().ok()?;
    let l = TcpListener::bind("127.0.0.1:0").ok()?;
    let target = l.local_addr().ok()?;
    // Pick a free port for socat's listener by binding and releasing it.
    let probe = TcpListener::bind("127.0.0.1:0").ok()?;
    let port = probe.local_addr().ok()?.port();
    drop(probe);
    let mut child = Command::new("socat")
        .args([
            "-b",
            "131072",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            &format!("TCP:{target}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut tx = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            tx = Some(s);
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let tx = tx?;
    let (rx, _) = l.accept().ok()?;
    let r = blast_with_cpu(child.id(), vec![(tx, rx)], secs);
    let _ = child.kill();
    let _ = child.wait();
    Some(r)
}

// ---- TLS-to-TLS ----------------------------------------------------------------

fn tls_client(s: &Server) -> tls::ClientStream {
    let cfg = tls::client_config(&Trust::Ca(s.state.join("cert.pem"))).expect("tls config");
    let sock = TcpStream::connect(s.registrar).expect("connect");
    tls::connect(
        sock,
        cfg,
        "127.0.0.1",
        Instant::now() + Duration::from_secs(10),
    )
    .expect("handshake")
}

/// The server's liveness-proof counters: proofs acknowledged, and seconds
/// spent waiting for acknowledgements (all proofs).
fn proof_stats(s: &Server) -> (f64, f64) {
    let mut c = tls_client(s);
    let _ = c.write_all(
        b"GET /.well-known/rendezvous/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let mut text = String::new();
    let _ = c.read_to_string(&mut text);
    let get = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        get("rendezvous_liveness_proofs_total{result=\"acked\"}"),
        get("rendezvous_liveness_proof_seconds_total"),
    )
}

fn tls_blast(s: &Server, secs: f64) -> (f64, f64) {
    let tok = s.next_token();
    let mut hidden = tls_client(s);
    write!(
        hidden,
        "CONNECT uuid:{UUID}?response={tok} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("send");
    let head = read_head(&mut hidden);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut mobile = tls_client(s);
    let auth = data_encoding::BASE64.encode(format!("{UUID}:").as_bytes());
    write!(
        mobile,
        "PUT /up HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n"
    )
    .expect("send");
    let fwd = read_head(&mut hidden);
    assert!(fwd.starts_with("PUT /up"), "{fwd}");
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let stop2 = stop.clone();
    let tx = thread::spawn(move || {
        let buf = vec![0x5au8; CHUNK];
        while !stop2.load(Ordering::Relaxed) {
            if mobile.write_all(&buf).is_err() {
                break;
            }
        }
        mobile.conn.send_close_notify();
        let _ = mobile.flush();
    });
    let t2 = total.clone();
    let rx = thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n) = hidden.read(&mut buf) {
            if n == 0 {
                break;
            }
            t2.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    thread::sleep(Duration::from_millis(200));
    let pid = s.proc.child.id();
    let (b0, c0, t0) = (total.load(Ordering::Relaxed), cpu_secs(pid), Instant::now());
    thread::sleep(Duration::from_secs_f64(secs));
    let bytes = total.load(Ordering::Relaxed) - b0;
    let el = t0.elapsed().as_secs_f64();
    let cpu = (cpu_secs(pid) - c0) / el * 100.0;
    stop.store(true, Ordering::Relaxed);
    let _ = tx.join();
    let _ = rx.join();
    (bytes as f64 * 8.0 / el / 1e9, cpu)
}

// ---- latency -----------------------------------------------------------------

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Keeps `depth` responders parked; each echoes one byte after +OK.
fn responder_pool(
    s: &Server,
    r: &str,
    depth: usize,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let addr = s.rendezvous;
    let r = r.to_string();
    let (tx, rx) = crossbeam_channel::bounded::<()>(depth);
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if tx.send_timeout((), Duration::from_millis(100)).is_err() {
                continue;
            }
            let mut s = park(addr, &r);
            let rx = rx.clone();
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let ok = read_line(&mut s) == "+OK";
                let _ = rx.recv();
                if ok {
                    one_byte_echo(s);
                }
            });
        }
    })
}

/// One round trip through a fresh connection (connect, one byte each way).
fn rtt(mut s: TcpStream) -> bool {
    let _ = s.set_nodelay(true);
    let mut b = [7u8; 1];
    s.write_all(&b).is_ok() && s.read_exact(&mut b).is_ok()
}

fn latencies(n: usize, mut one: impl FnMut() -> bool) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    let end = Instant::now() + Duration::from_secs(20);
    for _ in 0..n {
        let t = Instant::now();
        if one() {
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        if Instant::now() > end {
            break;
        }
    }
    v
}

// ---- report ------------------------------------------------------------------

struct Report {
    rows: Vec<(String, String, String)>,
    json: BTreeMap<String, f64>,
}

impl Report {
    fn add(&mut self, key: &str, what: &str, value: f64, unit: &str, note: String) {
        self.rows
            .push((what.to_string(), format!("{value:.3} {unit}"), note));
        self.json.insert(key.to_string(), value);
    }
}

/// `--stack-probe KIB`: run the connection path that needs the most stack — a
/// TLS handshake, a request head, routing, TOTP verification and a response,
/// with a log line — on a thread with a KIB KiB stack. Exits 0 when it fits;
/// an overflow aborts the process.
fn stack_probe(kib: usize) -> ! {
    // The programs' own logger (stderr is /dev/null here).
    rendezvous::logger::init("info", false);
    let dir = std::env::temp_dir().join(format!("rendezvous-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = certs::state_pair(&dir);
    certs::write_self_signed(&cert, &key, &["127.0.0.1".into()], true).expect("pair");
    let config = tls::server_config(&cert, &key).expect("server config");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let cert2 = cert.clone();
    let client = thread::spawn(move || {
        let cfg = tls::client_config(&Trust::Ca(cert2)).expect("client config");
        let sock = TcpStream::connect(addr).expect("connect");
        let mut s = tls::connect(
            sock,
            cfg,
            "127.0.0.1",
            Instant::now() + Duration::from_secs(10),
        )
        .expect("handshake");
        write!(
            s,
            "PUT /?uuid={UUID}&response=123456 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .expect("send");
        let _ = read_head(&mut s);
    });
    let server = thread::Builder::new()
        .stack_size(kib * 1024)
        .spawn(move || {
            let (sock, _) = l.accept().expect("accept");
            let deadline = Instant::now() + Duration::from_secs(10);
            let s = tls::accept(sock, config, deadline).expect("tls");
            let mut conn = rendezvous::server::conn::Conn::Tls(Box::new(s));
            let mut r = rendezvous::wire::HeadReader::new();
            let head = r.read_head(&mut conn, deadline).expect("head");
            let _ = rendezvous::server::registrar::route(&head);
            let tok = rendezvous::secret::Token::new("123456");
            let _ = totp::verify(&secret(), totp::Params::default(), &tok, totp::now(), None);
            log::info!(target: "rendezvous::server::registrar", "conn=1 head {:?} peer={addr}", head.summary());
            rendezvous::wire::Response::result(serde_json::json!({"host": "h", "port": 1, "cookie": "R"}))
                .write_to(&mut conn)
                .expect("respond");
        })
        .expect("spawn");
    let ok = server.join().is_ok() && client.join().is_ok();
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(if ok { 0 } else { 1 })
}

/// The smallest stack (KiB) the probe fits in, by running it in child processes.
fn min_stack() -> Option<usize> {
    let me = std::env::current_exe().ok()?;
    [16usize, 24, 32, 48, 64, 96, 128, 192, 256]
        .into_iter()
        .find(|kib| {
            Command::new(&me)
                .args(["--stack-probe", &kib.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Pairing latency of one UUID while `parked` sockets wait under ten other
/// UUIDs and the reaper sweeps them every 5 s: p50, p99 and the largest, in
/// microseconds, over `secs` seconds (several sweeps).
fn pairing_under_sweep(dir: &Path, parked: usize, secs: u64) -> (f64, f64, f64, usize) {
    let uuids: Vec<String> = (0..11).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let refs: Vec<&str> = uuids.iter().map(String::as_str).collect();
    let s = start_server_for(dir, false, &[], &refs);
    let url = ServerUrl::parse(&format!("http://127.0.0.1:{}", s.registrar.port())).expect("url");
    let reg = Registrar::new(url, &Trust::WebPki).expect("client");
    let token = s.next_token();
    let cookies: Vec<(String, String)> = uuids
        .iter()
        .map(|u| {
            let u = uuid::Uuid::parse_str(u).expect("uuid");
            let r = reg.register(&u, &token).expect("register");
            (r.cookie, reg.lookup(&u).expect("lookup").cookie)
        })
        .collect();
    let per = parked / 10;
    let held: Vec<TcpStream> = cookies[..10]
        .iter()
        .flat_map(|(r, _)| (0..per).map(|_| park(s.rendezvous, r)).collect::<Vec<_>>())
        .collect();
    wait_parked(&s, "generic", per * 10);
    let stop = Arc::new(AtomicBool::new(false));
    let (r, i) = &cookies[10];
    let pool = responder_pool(&s, r, 8, stop.clone());
    let rv = s.rendezvous;
    let start = Instant::now();
    let mut v = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        v.extend(latencies(1000, || {
            let mut c = park(rv, i);
            let _ = c.set_nodelay(true);
            read_line(&mut c) == "+OK" && rtt(c)
        }));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = pool.join();
    drop(held);
    let max = v.iter().copied().fold(0.0, f64::max);
    (pct(&mut v, 0.5), pct(&mut v, 0.99), max, per * 10)
}

fn sweep_row(rep: &mut Report, dir: &Path, quick: bool) {
    let (p50, p99, max, n) = pairing_under_sweep(
        dir,
        if quick { 2000 } else { 10_000 },
        if quick { 6 } else { 21 },
    );
    rep.add(
        "pairing_under_sweep_p99_us",
        "pairing p99, 10 UUIDs parked, reaper sweeping",
        p99,
        "us",
        format!("{n} parked; p50 {p50:.0} us, largest {max:.0} us"),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--stack-probe") {
        stack_probe(args.get(i + 1).and_then(|k| k.parse().ok()).unwrap_or(256));
    }
    let o = opts();
    let dir = std::env::temp_dir().join(format!("rendezvous-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rep = Report {
        rows: Vec::new(),
        json: BTreeMap::new(),
    };
    eprintln!(
        "rendezvous bench: {} s windows, {} cores",
        o.secs,
        thread::available_parallelism().map_or(1, |n| n.get())
    );

    if o.sweep_only
        || o.memory_only
        || o.store_only
        || o.cluster_only
        || o.chain_only
        || o.peers.is_some()
    {
        if let Some(bin) = &o.peers {
            peers::peer_rows(
                bin,
                o.static_bins.as_deref(),
                (o.quick, o.secs),
                &dir,
                &mut rep,
            );
        } else if o.chain_only {
            chain::chain_rows(o.quick, &dir, &mut rep);
        } else if o.sweep_only {
            sweep_row(&mut rep, &dir, o.quick);
        } else if o.memory_only {
            memory(&o, &dir, &mut rep);
        } else if o.cluster_only {
            cluster::cluster_rows(o.quick, &dir, &mut rep);
        } else {
            store_rows(&o, &dir, &mut rep);
        }
        print_table(&rep, &o);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    let srv = generic_throughput(&o, &dir, &mut rep);
    full_chain(&o, &dir, &mut rep, &srv);
    chain::chain_rows(o.quick, &dir, &mut rep);
    let tls_srv = tls_throughput(&o, &dir, &mut rep);
    setup_and_pairings(&o, &mut rep, tls_srv);
    memory(&o, &dir, &mut rep);
    stack_row(&mut rep);
    drop(srv);

    sweep_row(&mut rep, &dir, o.quick);
    store_rows(&o, &dir, &mut rep);
    cluster::cluster_rows(o.quick, &dir, &mut rep);
    print_table(&rep, &o);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- the phases -------------------------------------------------------------

/// Phase 1: the direct baseline, and the generic relay with 1 and 4 streams (and
/// socat for comparison). Returns the server, used again by the chain.
fn generic_throughput(o: &Opts, dir: &Path, rep: &mut Report) -> Server {
    let (direct1, busy_direct) = machine_busy(|| blast(direct_pairs(1), o.secs));
    rep.add(
        "direct_1_gbps",
        "direct loopback, 1 stream",
        direct1,
        "Gbit/s",
        format!(
            "baseline; machine busy {busy_direct:.0}% of {} cores",
            thread::available_parallelism().map_or(1, |n| n.get())
        ),
    );
    let direct4 = blast(direct_pairs(4), o.secs);
    rep.add(
        "direct_4_gbps",
        "direct loopback, 4 streams",
        direct4,
        "Gbit/s",
        "baseline".into(),
    );
    let srv = start_server(dir, false, &[]);
    let (r, i) = register(&srv);
    let ((g1, cpu1), busy1) =
        machine_busy(|| blast_with_cpu(srv.proc.child.id(), vec![pair(&srv, &r, &i)], o.secs));
    // The loopback baseline drifts on a shared machine: each single-stream
    // ratio is taken against the mean of the direct windows just before and
    // just after it.
    let direct1_after = blast(direct_pairs(1), o.secs);
    let base_g = (direct1 + direct1_after) / 2.0;
    rep.add(
        "generic_1_ratio",
        "generic relay, 1 stream",
        g1 / base_g,
        "x direct",
        format!(
            "{g1:.2} Gbit/s, rendezvousd CPU {cpu1:.0}%, {:.1} CPU%/Gbit/s, machine busy {busy1:.0}%; \
             direct {direct1:.1} before, {direct1_after:.1} after",
            cpu1 / g1
        ),
    );
    rep.json.insert("direct_1_after_gbps".into(), direct1_after);
    rep.json.insert("generic_1_gbps".into(), g1);
    rep.json.insert("generic_1_cpu_pct".into(), cpu1);
    let four: Vec<_> = (0..4).map(|_| pair(&srv, &r, &i)).collect();
    let (g4, cpu4) = blast_with_cpu(srv.proc.child.id(), four, o.secs);
    rep.add(
        "generic_4_ratio",
        "generic relay, 4 streams",
        g4 / direct4,
        "x direct",
        format!("{g4:.2} Gbit/s, rendezvousd CPU {cpu4:.0}%"),
    );
    rep.json.insert("generic_4_gbps".into(), g4);
    if let Some((gs, cpus)) = socat_run(o.secs) {
        rep.add(
            "socat_ratio",
            "socat -b 131072, 1 stream",
            gs / base_g,
            "x direct",
            format!(
                "{gs:.2} Gbit/s, socat CPU {cpus:.0}%, {:.1} CPU%/Gbit/s",
                cpus / gs
            ),
        );
        rep.add(
            "cpu_per_gbps_vs_socat",
            "relay CPU per Gbit/s / socat's",
            (cpu1 / g1) / (cpus / gs),
            "x",
            "below 1 is better".into(),
        );
    } else {
        rep.rows.push((
            "socat".into(),
            "not installed".into(),
            "apt-get install socat".into(),
        ));
    }
    srv
}

/// Phase 2: the full chain: connect --listen -> rendezvousd -> expose -> sink.
fn full_chain(o: &Opts, dir: &Path, rep: &mut Report, srv: &Server) {
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, SECRET_B32).expect("secret");
    let server_url = format!("http://127.0.0.1:{}", srv.registrar.port());
    let (sink_addr, received) = sink();
    let agent = spawn("expose", {
        let mut c = Command::new(bin("rendezvous"));
        c.args([
            "expose",
            "--pool",
            "4",
            "--server",
            &server_url,
            "--uuid",
            UUID,
        ])
        .args(["--to", &sink_addr.to_string(), "--secret-file"])
        .arg(&secret_file);
        c
    });
    agent.wait_line("registered uuid=");
    let listen = spawn("connect", {
        let mut c = Command::new(bin("rendezvous"));
        c.args([
            "connect",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_url,
            "--uuid",
            UUID,
        ]);
        c
    });
    let addr = chain::listen_addr(&listen);
    let before = blast(direct_pairs(1), o.secs);
    let tx = TcpStream::connect(addr).expect("connect local");
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = thread::spawn(move || {
        let mut tx = tx;
        let buf = vec![0x5au8; CHUNK];
        while !s2.load(Ordering::Relaxed) {
            if tx.write_all(&buf).is_err() {
                break;
            }
        }
    });
    thread::sleep(Duration::from_millis(300));
    let (b0, t0) = (received.load(Ordering::Relaxed), Instant::now());
    thread::sleep(Duration::from_secs_f64(o.secs));
    let g = (received.load(Ordering::Relaxed) - b0) as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e9;
    stop.store(true, Ordering::Relaxed);
    let _ = h.join();
    let after = blast(direct_pairs(1), o.secs);
    rep.add(
        "chain_1_ratio",
        "full chain connect->rendezvousd->expose, 1 stream",
        g / ((before + after) / 2.0),
        "x direct",
        format!("{g:.2} Gbit/s at the sink; direct {before:.1} before, {after:.1} after"),
    );
    rep.json.insert("chain_1_gbps".into(), g);
    drop(listen);
    drop(agent);
}

/// Phase 3: TLS-to-TLS (HTTP-specific), 1 stream. Returns the TLS server, used
/// again for the setup latencies.
fn tls_throughput(o: &Opts, dir: &Path, rep: &mut Report) -> Server {
    let tls_srv = start_server(dir, true, &[]);
    let before = blast(direct_pairs(1), o.secs);
    let (gt, cput) = tls_blast(&tls_srv, o.secs);
    let after = blast(direct_pairs(1), o.secs);
    rep.add(
        "tls_1_ratio",
        "HTTP-specific TLS-to-TLS, 1 stream",
        gt / ((before + after) / 2.0),
        "x direct",
        format!(
            "{gt:.2} Gbit/s, rendezvousd CPU {cput:.0}%; direct {before:.1} before, {after:.1} after"
        ),
    );
    rep.json.insert("tls_1_gbps".into(), gt);
    tls_srv
}

/// Phases 4 and 5: setup latency (direct, cached triple, fresh HTTPS lookup, and
/// the liveness proof's share), then pairings per second with 4 clients.
fn setup_and_pairings(o: &Opts, rep: &mut Report, tls_srv: Server) {
    let n = if o.quick { 300 } else { 2000 };
    let echo_l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let echo = echo_l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in echo_l.incoming().flatten() {
            thread::spawn(move || one_byte_echo(s));
        }
    });
    let mut direct = latencies(n, || TcpStream::connect(echo).map(rtt).unwrap_or(false));
    let d50 = pct(&mut direct, 0.5);
    let d99 = pct(&mut direct, 0.99);
    rep.add(
        "direct_setup_p50_us",
        "direct connect + 1-byte round trip, p50",
        d50,
        "us",
        format!("p99 {d99:.0} us"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (lr, li) = register(&tls_srv);
    let pool = responder_pool(&tls_srv, &lr, 16, stop.clone());
    let rv = tls_srv.rendezvous;
    let proofs_before = proof_stats(&tls_srv);
    let mut cached = latencies(n, || {
        let mut s = park(rv, &li);
        let _ = s.set_nodelay(true);
        read_line(&mut s) == "+OK" && rtt(s)
    });
    let proofs_after = proof_stats(&tls_srv);
    let c50 = pct(&mut cached, 0.5);
    let c99 = pct(&mut cached, 0.99);
    // The liveness proof waits, inside the server, for the responder's ACK
    // of +OK before the initiator gets its own: its share of the setup.
    let proofs = proofs_after.0 - proofs_before.0;
    let proof_us = if proofs > 0.0 {
        (proofs_after.1 - proofs_before.1) / proofs * 1e6
    } else {
        0.0
    };
    rep.add(
        "liveness_proof_mean_us",
        "liveness proof (wait for the responder's ACK), mean per pairing",
        proof_us,
        "us",
        format!("{proofs:.0} pairings, measured by rendezvousd"),
    );
    rep.add(
        "setup_cached_overhead_p50_us",
        "setup overhead, cached triple, p50",
        c50 - d50,
        "us",
        format!(
            "p50 {c50:.0} us, p99 {c99:.0} us (overhead p99 {:.0} us)",
            c99 - d99
        ),
    );
    let url =
        ServerUrl::parse(&format!("https://127.0.0.1:{}", tls_srv.registrar.port())).expect("url");
    let reg = Registrar::new(url, &Trust::Ca(tls_srv.state.join("cert.pem"))).expect("client");
    let uuid = uuid::Uuid::parse_str(UUID).expect("uuid");
    let mut fresh = latencies(n / 4, || {
        let Ok(t) = reg.lookup(&uuid) else {
            return false;
        };
        let mut s = park(rv, &t.cookie);
        let _ = s.set_nodelay(true);
        read_line(&mut s) == "+OK" && rtt(s)
    });
    let f50 = pct(&mut fresh, 0.5);
    let f99 = pct(&mut fresh, 0.99);
    rep.add(
        "setup_fresh_overhead_p50_us",
        "setup overhead, fresh HTTPS lookup, p50",
        f50 - d50,
        "us",
        format!("p50 {f50:.0} us, p99 {f99:.0} us"),
    );

    // 5. pairings per second, 4 clients at once.
    let rate = pairings_per_sec(rv, &li, o.secs);
    rep.add(
        "pairings_per_sec",
        "pairings per second (4 clients)",
        rate,
        "/s",
        "each: I line, +OK, 1-byte round trip".into(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = pool.join();
    drop(tls_srv);
}

/// Phase 8: setup and pairings with the state in Redis (`serve --store
/// unix://`) next to the embedded store, each on a server of its own, and
/// the store commands a run of cached-triple pairings costs (`INFO
/// commandstats` before and after: none is the design).
fn store_rows(o: &Opts, dir: &Path, rep: &mut Report) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("redis-server").is_file()));
    if !found {
        rep.rows.push((
            "store (redis-server)".into(),
            "not installed".into(),
            "apt-get install redis-server".into(),
        ));
        return;
    }
    let redis = support::RedisServer::start();
    let n = if o.quick { 300 } else { 2000 };
    for (name, store) in [("embedded", None), ("redis", Some(redis.url()))] {
        let extra: Vec<&str> = match &store {
            Some(url) => vec!["--store", url.as_str(), "--public-host", "127.0.0.1"],
            None => Vec::new(),
        };
        if store.is_some() {
            let line = format!("{UUID} {SECRET_B32} 30 6 bench");
            support::redis_command(&redis.socket(), &["HSET", "rdv:users", UUID, &line]);
        }
        let srv = start_server(dir, false, &extra);
        let stop = Arc::new(AtomicBool::new(false));
        let before = store_calls(&redis);
        let (r, i) = register(&srv);
        let registration = store_calls(&redis) - before;
        let pool = responder_pool(&srv, &r, 16, stop.clone());
        let calls0 = store_calls(&redis);
        let mut cached = latencies(n, || {
            let mut s = park(srv.rendezvous, &i);
            read_line(&mut s) == "+OK" && rtt(s)
        });
        let calls = store_calls(&redis) - calls0;
        let rate = pairings_per_sec(srv.rendezvous, &i, o.secs);
        stop.store(true, Ordering::Relaxed);
        let _ = pool.join();
        let c50 = pct(&mut cached, 0.5);
        rep.add(
            &format!("store_{name}_setup_p50_us"),
            &format!("store {name}: cached-triple setup, p50"),
            c50,
            "us",
            if store.is_some() {
                format!(
                    "{n} pairings made {calls} store commands (parks renew R once a quarter of its life; node heartbeats included); the registration {registration} (its token script, with the commands run inside it)"
                )
            } else {
                format!("{n} pairings, plain HTTP registrar")
            },
        );
        rep.add(
            &format!("store_{name}_pairings_per_sec"),
            &format!("store {name}: pairings per second (4 clients)"),
            rate,
            "/s",
            "each: I line, +OK, 1-byte round trip".into(),
        );
    }
}

/// Commands the store has run so far, all kinds (`INFO commandstats`),
/// less the `INFO` calls that asked.
fn store_calls(redis: &support::RedisServer) -> i64 {
    support::commandstats_calls(&redis.command(&["INFO", "commandstats"]), |c| c != "info")
}

/// Pairings per second through `rv` by 4 clients at once for `secs`.
fn pairings_per_sec(rv: SocketAddr, i: &str, secs: f64) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (c, i) = (count.clone(), i.to_string());
            thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs_f64(secs);
                while Instant::now() < end {
                    let mut s = park(rv, &i);
                    if read_line(&mut s) == "+OK" && rtt(s) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// Phase 6: memory: parked plain sockets, parked TLS connections, idle pairs, and
/// the server's CPU while all of that idles.
fn memory(o: &Opts, dir: &Path, rep: &mut Report) {
    let mem_n = if o.quick { 200 } else { 1000 };
    let m = start_server(dir, true, &[]);
    let pid = m.proc.child.id();
    let (mr, mi) = register(&m);
    thread::sleep(Duration::from_millis(200));
    settle();
    let rss0 = status_kib(pid, "VmRSS:");
    let th0 = threads(pid);
    // In batches: a burst from one address beyond the server's per-address
    // cap on connections still in their handshake would be refused.
    let mut parked: Vec<TcpStream> = Vec::new();
    while parked.len() < mem_n {
        for _ in 0..64.min(mem_n - parked.len()) {
            parked.push(park(m.rendezvous, &mr));
        }
        wait_parked(&m, "generic", parked.len());
    }
    settle();
    let rss1 = status_kib(pid, "VmRSS:");
    rep.add(
        "rss_per_parked_plain_kib",
        "RSS per parked plain socket",
        (rss1 - rss0) / mem_n as f64,
        "KiB",
        format!("{mem_n} parked, threads {} -> {}", th0, threads(pid)),
    );
    // TLS parked: the first CONNECT with a token, the rest with its cookie.
    let cookie = {
        let mut h = tls_client(&m);
        write!(
            h,
            "CONNECT uuid:{UUID}?response={} HTTP/1.1\r\nHost: x\r\n\r\n",
            m.next_token()
        )
        .expect("send");
        let head = read_head(&mut h);
        let c = head
            .lines()
            .find_map(|l| l.strip_prefix("Rendezvous-Cookie: "))
            .expect("cookie")
            .to_string();
        std::mem::forget(h); // kept open until the process ends
        c
    };
    let mut tls_parked = Vec::new();
    for _ in 1..mem_n {
        // Sequential: each waits for its 200, so no burst.
        let mut h = tls_client(&m);
        write!(
            h,
            "CONNECT uuid:{UUID}?cookie={cookie} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .expect("send");
        let _ = read_head(&mut h);
        tls_parked.push(h);
    }
    wait_parked(&m, "http", mem_n);
    settle();
    let rss2 = status_kib(pid, "VmRSS:");
    rep.add(
        "rss_per_parked_tls_kib",
        "RSS per parked TLS connection",
        (rss2 - rss1) / mem_n as f64,
        "KiB",
        format!("{mem_n} parked"),
    );
    // Keep some parked TLS connections for idle TLS-to-TLS pairs below; the
    // reaper closes the rest before the CPU window.
    let tls_idle_n = if o.quick { 50 } else { 100 };
    let tls_hidden: Vec<_> = tls_parked.drain(..tls_idle_n).collect();
    drop(tls_parked);
    // Idle pairs: consume the parked plain sockets.
    let th1 = threads(pid);
    let mut pairs = Vec::new();
    for _ in 0..mem_n {
        let mut init = park(m.rendezvous, &mi);
        if read_line(&mut init) != "+OK" {
            break;
        }
        pairs.push(init);
    }
    for p in parked.iter_mut() {
        let _ = p.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = read_line(p);
    }
    settle();
    let rss3 = status_kib(pid, "VmRSS:");
    let th2 = threads(pid);
    // For a closer look at what the idle pairs hold (stacks or heap).
    if let Some(path) = std::env::var_os("BENCH_SMAPS") {
        let _ = std::fs::copy(format!("/proc/{pid}/smaps"), path);
    }
    // Idle TLS-to-TLS pairs: a mobile client over TLS with Basic credentials
    // takes each kept parked connection (the oldest, first parked above and
    // never read, goes to the first client); each hidden side reads its head.
    let basic = data_encoding::BASE64.encode(format!("{UUID}:").as_bytes());
    let mut tls_mobile = Vec::new();
    for _ in 0..=tls_idle_n {
        let mut c = tls_client(&m);
        write!(
            c,
            "GET /idle HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n\r\n"
        )
        .expect("send");
        tls_mobile.push(c);
    }
    let mut tls_pairs = 0;
    for mut h in tls_hidden {
        let _ = h.sock.set_read_timeout(Some(Duration::from_secs(10)));
        if read_head(&mut h).starts_with("GET /idle") {
            tls_pairs += 1;
        }
        tls_mobile.push(h);
    }
    // One reaper pass first: it closes the TLS connections dropped above.
    thread::sleep(rendezvous::limits::REAP_INTERVAL + Duration::from_secs(1));
    let c0 = cpu_secs(pid);
    thread::sleep(Duration::from_secs(5));
    let idle_cpu = (cpu_secs(pid) - c0) / 5.0 * 100.0;
    let per_pair = (rss3 - rss2 + (rss1 - rss0)) / pairs.len().max(1) as f64;
    rep.add(
        "rss_per_idle_pair_kib",
        "RSS per active idle pair (both sides)",
        per_pair,
        "KiB",
        format!(
            "{} pairs, {:.2} threads per pair",
            pairs.len(),
            (th2 as f64 - th1 as f64) / pairs.len().max(1) as f64
        ),
    );
    rep.add(
        "idle_cpu_pct",
        "rendezvousd CPU while all that idles",
        idle_cpu,
        "%",
        format!(
            "5 s window, 10 ms ticks; {} idle pairs and {tls_pairs} idle TLS-to-TLS pairs",
            pairs.len()
        ),
    );
    assert_eq!(tls_pairs, tls_idle_n, "every kept TLS connection paired");
    drop(tls_mobile);
    drop(pairs);
    drop(parked);
    drop(m);
}

/// Phase 7: the connection thread's stack: the smallest that fits the deepest path.
fn stack_row(rep: &mut Report) {
    if let Some(kib) = min_stack() {
        let set = rendezvous::limits::CONN_STACK / 1024;
        rep.add(
            "min_stack_kib",
            "smallest stack for TLS handshake + head + auth",
            kib as f64,
            "KiB",
            format!(
                "CONN_STACK is {set} KiB ({:.1}x margin)",
                set as f64 / kib as f64
            ),
        );
    }
}

/// The table, and the JSON file when `--json` asked for it.
fn print_table(rep: &Report, o: &Opts) {
    println!();
    println!("{:<52} {:>16}  notes", "measure", "value");
    println!("{}", "-".repeat(110));
    for (w, v, n) in &rep.rows {
        println!("{w:<52} {v:>16}  {n}");
    }
    if let Some(p) = &o.json {
        let j = serde_json::to_string_pretty(&rep.json).expect("json");
        std::fs::write(p, j).expect("write json");
        println!("\nfigures written to {}", p.display());
    }
}

/// Let the server's idle threads (kept 2 s for reuse) exit before reading RSS,
/// so a parked socket is charged only for what it holds.
fn settle() {
    thread::sleep(rendezvous::threads::IDLE_LINGER + Duration::from_millis(700));
}

fn wait_parked(s: &Server, proto: &str, n: usize) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = TcpStream::connect(s.registrar).expect("connect");
        let body = if s.state.to_string_lossy().ends_with("-tls") {
            let cfg = tls::client_config(&Trust::Ca(s.state.join("cert.pem"))).expect("cfg");
            let mut t = tls::connect(
                c,
                cfg,
                "127.0.0.1",
                Instant::now() + Duration::from_secs(10),
            )
            .expect("tls");
            t.write_all(b"GET /.well-known/rendezvous/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
            let mut out = String::new();
            let _ = t.read_to_string(&mut out);
            out
        } else {
            c.write_all(b"GET /.well-known/rendezvous/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
            let mut out = String::new();
            let _ = c.read_to_string(&mut out);
            out
        };
        let needle = format!("rendezvous_parked{{proto=\"{proto}\"}} ");
        let got: usize = body
            .lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if got >= n {
            return;
        }
        assert!(Instant::now() < end, "only {got} of {n} parked ({proto})");
        thread::sleep(Duration::from_millis(50));
    }
}
