//! `make bench-peers` (`--peers DIR`): the tunnels users would pick instead
//! of ours, measured the same way in the same run. rathole and bore are
//! installed into DIR by `cargo install --root`; each tunnels to one local
//! echo service, as `connect --listen` → rendezvousd → `expose` does:
//!
//! * setup: connect and one line echoed, 1,000 times through each tunnel,
//!   interleaved across the tunnels, each after the same exchange with the
//!   service directly; p50 and p99 added (and, for the others, as a ratio
//!   to rathole's);
//! * throughput: one connection writing for the window, one way to a drain,
//!   and echoed back on it (both directions), each as a ratio to the same
//!   directly; and the CPU the tunnel's processes spent per Gbit/s;
//! * memory: RSS of all of a tunnel's processes per held connection (200
//!   held), and the idle RSS of its agent (the process beside the service).
//!
//! Every row is a ratio to direct, or what a tunnel adds to direct.

use super::chain::{connect_listen, expose, interleave, one_line};
use super::{cpu_secs, spawn, start_server, status_kib, Report, BIN_DIR};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::Proc;

use super::support;

/// One tunnel to the echo service: its processes (the agent first) and the
/// address clients connect to.
struct Tunnel {
    name: &'static str,
    procs: Vec<Proc>,
    entry: SocketAddr,
}

impl Tunnel {
    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.child.id()).collect()
    }
}

/// A port free on 127.0.0.1 now (for the tools that take no port 0).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Until `addr` takes a connection through to the echo (the tunnel is up).
fn wait_through(addr: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(30);
    while !one_line(addr) {
        assert!(Instant::now() < end, "no echo through {addr} within 30 s");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Our chain, with the programs `cargo bench` built, or with those in
/// `static_bins` (built for musl, static: what a gateway runs).
fn ours(dir: &Path, echo: SocketAddr, static_bins: Option<&Path>) -> Tunnel {
    if let Some(d) = static_bins {
        *BIN_DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.to_path_buf());
    }
    let srv = start_server(dir, false, &[]);
    let agent = expose(&srv, false, dir, "generic", echo);
    let (listen, entry) = connect_listen(&srv, false);
    *BIN_DIR.lock().unwrap_or_else(|e| e.into_inner()) = None;
    Tunnel {
        name: if static_bins.is_some() {
            "rendezvous-static"
        } else {
            "rendezvous"
        },
        procs: vec![agent, srv.proc, listen],
        entry,
    }
}

fn bore(bin: &Path, echo: SocketAddr) -> Tunnel {
    let server = spawn("bore-server", {
        let mut c = Command::new(bin.join("bore"));
        c.args([
            "server",
            "--bind-addr",
            "127.0.0.1",
            "--bind-tunnels",
            "127.0.0.1",
        ]);
        c
    });
    thread::sleep(Duration::from_millis(300));
    let port = free_port();
    let agent = spawn("bore-local", {
        let mut c = Command::new(bin.join("bore"));
        c.args([
            "local",
            &echo.port().to_string(),
            "--local-host",
            "127.0.0.1",
            "--to",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string()]);
        c
    });
    let entry = SocketAddr::from(([127, 0, 0, 1], port));
    wait_through(entry);
    Tunnel {
        name: "bore",
        procs: vec![agent, server],
        entry,
    }
}

fn rathole(bin: &Path, dir: &Path, echo: SocketAddr) -> Tunnel {
    let (control, public) = (free_port(), free_port());
    let server_toml = dir.join("rathole-server.toml");
    let client_toml = dir.join("rathole-client.toml");
    std::fs::write(
        &server_toml,
        format!(
            "[server]\nbind_addr = \"127.0.0.1:{control}\"\n\n[server.services.echo]\n\
             token = \"bench\"\nbind_addr = \"127.0.0.1:{public}\"\n"
        ),
    )
    .expect("server.toml");
    std::fs::write(
        &client_toml,
        format!(
            "[client]\nremote_addr = \"127.0.0.1:{control}\"\n\n[client.services.echo]\n\
             token = \"bench\"\nlocal_addr = \"{echo}\"\n"
        ),
    )
    .expect("client.toml");
    let server = spawn("rathole-server", {
        let mut c = Command::new(bin.join("rathole"));
        c.arg("--server").arg(&server_toml);
        c
    });
    thread::sleep(Duration::from_millis(300));
    let agent = spawn("rathole-client", {
        let mut c = Command::new(bin.join("rathole"));
        c.arg("--client").arg(&client_toml);
        c
    });
    let entry = SocketAddr::from(([127, 0, 0, 1], public));
    wait_through(entry);
    Tunnel {
        name: "rathole",
        procs: vec![agent, server],
        entry,
    }
}

/// The service behind every tunnel: it echoes, except a connection whose
/// first byte is `S`, which it drains, counting the bytes. Its threads end
/// with the process.
fn service() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind service");
    let addr = l.local_addr().expect("addr");
    let drained = Arc::new(AtomicU64::new(0));
    let d = drained.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let d = d.clone();
            thread::spawn(move || serve_one(s, &d));
        }
    });
    (addr, drained)
}

fn serve_one(mut s: TcpStream, drained: &AtomicU64) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut first = true;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        if first && buf[0] == b'S' {
            drained.fetch_add(n as u64, Ordering::Relaxed);
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                drained.fetch_add(n as u64, Ordering::Relaxed);
            }
            break;
        }
        first = false;
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
}

/// Gbit/s one connection to `addr` carries to the service's drain in
/// `secs`, one way.
fn sink_gbps(addr: SocketAddr, drained: &AtomicU64, secs: f64) -> f64 {
    let Ok(mut tx) = TcpStream::connect(addr) else {
        return 0.0;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let writer = thread::spawn(move || {
        let mut buf = vec![0x5au8; 128 * 1024];
        buf[0] = b'S';
        if tx.write_all(&buf).is_err() {
            return;
        }
        buf[0] = 0x5a;
        while !s2.load(Ordering::Relaxed) && tx.write_all(&buf).is_ok() {}
    });
    thread::sleep(Duration::from_millis(300));
    let (b0, t0) = (drained.load(Ordering::Relaxed), Instant::now());
    thread::sleep(Duration::from_secs_f64(secs));
    let gbps =
        (drained.load(Ordering::Relaxed) - b0) as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e9;
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    gbps
}

/// Gbit/s echoed back over one connection to `addr` in `secs`, while
/// writing all along (both directions carry it).
fn echo_gbps(addr: SocketAddr, secs: f64) -> f64 {
    let Ok(s) = TcpStream::connect(addr) else {
        return 0.0;
    };
    let mut tx = s.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let writer = thread::spawn(move || {
        let buf = vec![0x5au8; 128 * 1024];
        while !s2.load(Ordering::Relaxed) && tx.write_all(&buf).is_ok() {}
        let _ = tx.shutdown(std::net::Shutdown::Write);
    });
    let got = Arc::new(AtomicU64::new(0));
    let g2 = got.clone();
    let mut rx = s;
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = rx.read(&mut buf) {
            if n == 0 {
                break;
            }
            g2.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    thread::sleep(Duration::from_millis(300));
    let (b0, t0) = (got.load(Ordering::Relaxed), Instant::now());
    thread::sleep(Duration::from_secs_f64(secs));
    let gbps = (got.load(Ordering::Relaxed) - b0) as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e9;
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let _ = reader.join();
    gbps
}

/// KiB of all the tunnel's processes per connection, with `n` held open
/// (each past one byte echoed), and how it splits among them (agent first).
fn kib_per_held(t: &Tunnel, n: usize) -> (f64, String) {
    thread::sleep(Duration::from_millis(300));
    let pids = t.pids();
    let before: Vec<f64> = pids.iter().map(|&p| status_kib(p, "VmRSS:")).collect();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(mut s) = TcpStream::connect(t.entry) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut b = [0u8; 1];
        if s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok() {
            held.push(s);
        }
    }
    thread::sleep(Duration::from_millis(500));
    let k = held.len().max(1) as f64;
    let each: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|(&p, b)| (status_kib(p, "VmRSS:") - b) / k)
        .collect();
    drop(held);
    let split = each
        .iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(" + ");
    (each.iter().sum(), format!("{split} (agent first)"))
}

/// `f`'s Gbit/s through the tunnel, and the CPU % of all its processes per
/// Gbit/s meanwhile.
fn with_cpu(t: &Tunnel, f: impl FnOnce() -> f64) -> (f64, f64) {
    let cpu0: f64 = t.pids().iter().map(|&p| cpu_secs(p)).sum();
    let w0 = Instant::now();
    let gbps = f();
    let cpu = (t.pids().iter().map(|&p| cpu_secs(p)).sum::<f64>() - cpu0)
        / w0.elapsed().as_secs_f64()
        * 100.0;
    (gbps, cpu / gbps.max(1e-9))
}

/// One tunnel's other figures: one way and echoed, the throughput ratio to
/// direct and CPU % per Gbit/s; KiB per held connection.
fn measure(t: &Tunnel, (svc, drained): (SocketAddr, &AtomicU64), secs: f64) -> ([f64; 5], String) {
    let direct_one = sink_gbps(svc, drained, secs);
    let (one, cpu_one) = with_cpu(t, || sink_gbps(t.entry, drained, secs));
    let direct_echo = echo_gbps(svc, secs);
    let (echo, cpu_echo) = with_cpu(t, || echo_gbps(t.entry, secs));
    let (per_held, split) = kib_per_held(t, 200);
    (
        [
            one / direct_one,
            cpu_one,
            echo / direct_echo,
            cpu_echo,
            per_held,
        ],
        split,
    )
}

/// The peers' table: rendezvous (generic chain, `--plaintext` like the
/// others' defaults), its static musl build when `static_bins` names one,
/// bore and rathole.
pub fn peer_rows(
    bin: &Path,
    static_bins: Option<&Path>,
    (quick, secs): (bool, f64),
    dir: &Path,
    rep: &mut Report,
) {
    let n = if quick { 200 } else { 1000 };
    let (svc, drained) = service();
    // All up at once (idle, the others cost nothing): setup is measured
    // across them interleaved; the rest one tunnel at a time.
    let mut tunnels = vec![ours(dir, svc, None)];
    if let Some(d) = static_bins {
        tunnels.push(ours(dir, svc, Some(d)));
    }
    tunnels.push(bore(bin, svc));
    tunnels.push(rathole(bin, dir, svc));
    let mut idle = Vec::new();
    for t in &tunnels {
        wait_through(t.entry);
        idle.push(status_kib(t.procs[0].child.id(), "VmRSS:"));
    }
    // Measured one after another, the run-to-run spread of one tunnel's
    // p50 was larger than the gaps between tunnels.
    let mut through: Vec<_> = tunnels
        .iter()
        .map(|t| {
            let entry = t.entry;
            move || one_line(entry)
        })
        .collect();
    let mut chains: Vec<&mut dyn FnMut() -> bool> = through
        .iter_mut()
        .map(|f| f as &mut dyn FnMut() -> bool)
        .collect();
    let setup = interleave(n, || one_line(svc), &mut chains);
    let mut results = Vec::new();
    for ((t, [d50, d99, c50, c99]), idle) in tunnels.iter().zip(setup).zip(idle) {
        let ([one, cpu_one, echo, cpu_echo, held], split) = measure(t, (svc, &drained), secs);
        let figures = [
            c50 - d50,
            c99 - d99,
            one,
            cpu_one,
            echo,
            cpu_echo,
            held,
            idle,
        ];
        results.push((t.name, (figures, split)));
    }
    // The targets of issue 14 are read against rathole's setup.
    let rathole_setup = results
        .iter()
        .find(|(name, _)| *name == "rathole")
        .map(|(_, (f, _))| [f[0], f[1]]);
    let rows: [(&str, &str, &str); 8] = [
        (
            "setup_p50_over_direct_us",
            "setup p50 over direct (connect, one line echoed)",
            "µs",
        ),
        ("setup_p99_over_direct_us", "setup p99 over direct", "µs"),
        (
            "one_way_1_ratio",
            "1 stream one way, ratio to direct",
            "x direct",
        ),
        (
            "one_way_cpu_pct_per_gbps",
            "one way: CPU % of its processes per Gbit/s",
            "%",
        ),
        (
            "echo_1_ratio",
            "1 stream echoed, ratio to direct",
            "x direct",
        ),
        (
            "echo_cpu_pct_per_gbps",
            "echoed: CPU % of its processes per Gbit/s",
            "%",
        ),
        (
            "kib_per_held",
            "RSS per held connection, all processes",
            "KiB",
        ),
        ("agent_idle_kib", "idle RSS of the agent", "KiB"),
    ];
    for (i, (key, what, unit)) in rows.iter().enumerate() {
        for (name, (r, split)) in &results {
            let note = match (*key, rathole_setup) {
                ("kib_per_held", _) => split.clone(),
                ("setup_p50_over_direct_us", Some([base, _])) if *name != "rathole" => {
                    format!("{:.2} x rathole's", r[i] / base)
                }
                ("setup_p99_over_direct_us", Some([_, base])) if *name != "rathole" => {
                    format!("{:.2} x rathole's", r[i] / base)
                }
                _ => String::new(),
            };
            rep.add(
                &format!("peers_{name}_{key}"),
                &format!("{name}: {what}"),
                r[i],
                unit,
                note,
            );
        }
    }
}
