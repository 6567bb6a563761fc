//! Setup latency through the whole chain, as users run it (`--chain-only`,
//! and part of the full run). Generic: a client connects to
//! `rendezvous connect --listen`, which dials rendezvousd, which pairs it
//! with a connection `rendezvous expose` parked, which dials a local echo
//! service; the client sends one line and waits for its echo. HTTP-specific:
//! a request with `Authorization: Basic` to the registrar, handed to a
//! `CONNECT` that `expose --protocol http` parked, answered by a local
//! HTTP service. Each against the same exchange with the service directly
//! (over TLS when the registrar speaks TLS), alternated one for one in the
//! same run, 1,000 sequential connections each; the rows are the p50 and
//! p99 added by the chain.

use super::{bin, pct, spawn, start_server, Report, Server, UUID};
use rendezvous::tls::{self, Trust};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::{Proc, SECRET_B32};

use super::support;

/// The line each generic exchange sends and gets back.
const LINE: &[u8] = b"a line of about forty bytes, and its end\n";
/// The local service's answer to every HTTP request.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// Connect, send [`LINE`], read it back.
pub(crate) fn one_line(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut back = [0u8; LINE.len()];
    s.write_all(LINE).is_ok() && s.read_exact(&mut back).is_ok() && back == LINE
}

/// Read a request head, answer [`ANSWER`], close.
fn answer<S: Read + Write>(mut s: S) {
    let mut head = Vec::new();
    let mut b = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    let _ = s.write_all(ANSWER).and_then(|_| s.flush());
}

/// The local HTTP service, plain (what `expose` dials) or over TLS with the
/// server's own certificate (the direct baseline of a TLS registrar). Its
/// thread ends with the process.
fn http_service(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind service");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let _ = s.set_nodelay(true);
            let cfg = tls.clone();
            thread::spawn(move || match cfg {
                Some(cfg) => {
                    if let Ok(t) = tls::accept(s, cfg, Instant::now() + Duration::from_secs(10)) {
                        answer(t);
                    }
                }
                None => answer(s),
            });
        }
    });
    addr
}

/// One HTTP exchange at `addr` (TLS trusting `tls` when given): the request,
/// then the answer through its body.
fn one_request(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>, req: &[u8]) -> bool {
    let Ok(s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let exchange = |mut s: Box<dyn ReadWrite>| {
        let mut got = Vec::new();
        let mut b = [0u8; 512];
        if s.write_all(req).and_then(|_| s.flush()).is_err() {
            return false;
        }
        while !got.ends_with(b"\r\n\r\nok") {
            match s.read(&mut b) {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
        got.starts_with(b"HTTP/1.1 200")
    };
    match tls {
        Some(cfg) => match tls::connect(
            s,
            cfg.clone(),
            "localhost",
            Instant::now() + Duration::from_secs(10),
        ) {
            Ok(t) => exchange(Box::new(t)),
            Err(_) => false,
        },
        None => exchange(Box::new(s)),
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// `rendezvous ARGS… --server URL [--ca CERT]` for `srv`.
pub(crate) fn client(srv: &Server, tls: bool, args: &[&str]) -> Command {
    let mut c = Command::new(bin("rendezvous"));
    c.args(args);
    if tls {
        c.args([
            "--server",
            &format!("https://127.0.0.1:{}", srv.registrar.port()),
        ])
        .arg("--ca")
        .arg(srv.state.join("cert.pem"));
    } else {
        c.args([
            "--server",
            &format!("http://127.0.0.1:{}", srv.registrar.port()),
        ]);
    }
    c
}

/// `rendezvous expose` for the bench's UUID, `--pool 4`, to `to`.
pub(crate) fn expose(srv: &Server, tls: bool, dir: &Path, proto: &str, to: SocketAddr) -> Proc {
    let secret = dir.join("chain-secret");
    std::fs::write(&secret, SECRET_B32).expect("secret");
    let mut c = client(
        srv,
        tls,
        &["expose", "--protocol", proto, "--pool", "4", "--uuid", UUID],
    );
    c.args(["--to", &to.to_string(), "--secret-file"])
        .arg(&secret);
    let p = spawn("expose", c);
    p.wait_line("registered uuid=");
    p
}

/// Alternate `direct` and `chain` `n` times (after a warm-up), within a
/// minute; the p50 and p99 of each, in µs (failures are not counted).
pub(crate) fn alternate(
    n: usize,
    direct: impl FnMut() -> bool,
    mut chain: impl FnMut() -> bool,
) -> [f64; 4] {
    interleave(n, direct, &mut [&mut chain])[0]
}

/// [`alternate`] for several chains at once: each round makes one exchange
/// through each chain, each right after one `direct`, the chains in a
/// rotating order, so a machine that gets busier or quieter during the run
/// (shared, noisy) weighs on all of them alike. Within a minute per chain;
/// for each chain, the p50 and p99 of its own direct exchanges and of its
/// own, in µs (failures are not counted).
pub(crate) fn interleave(
    n: usize,
    mut direct: impl FnMut() -> bool,
    chains: &mut [&mut dyn FnMut() -> bool],
) -> Vec<[f64; 4]> {
    let k = chains.len();
    for _ in 0..20 {
        for chain in chains.iter_mut() {
            direct();
            chain();
        }
    }
    let mut d = vec![Vec::with_capacity(n); k];
    let mut c = vec![Vec::with_capacity(n); k];
    let end = Instant::now() + Duration::from_secs(60 * k as u64);
    let timed = |f: &mut dyn FnMut() -> bool, into: &mut Vec<f64>| {
        let t = Instant::now();
        if f() {
            into.push(t.elapsed().as_secs_f64() * 1e6);
        }
    };
    for round in 0..n {
        for j in 0..k {
            let i = (round + j) % k;
            timed(&mut direct, &mut d[i]);
            timed(&mut *chains[i], &mut c[i]);
        }
        if Instant::now() > end {
            break;
        }
    }
    (0..k)
        .map(|i| {
            [
                pct(&mut d[i], 0.5),
                pct(&mut d[i], 0.99),
                pct(&mut c[i], 0.5),
                pct(&mut c[i], 0.99),
            ]
        })
        .collect()
}

fn rows(rep: &mut Report, key: &str, what: &str, [d50, d99, c50, c99]: [f64; 4]) {
    rep.add(
        &format!("{key}_p50_over_direct_us"),
        &format!("{what}: setup p50 over direct"),
        c50 - d50,
        "µs",
        format!("chain {c50:.0} µs, direct {d50:.0} µs"),
    );
    rep.add(
        &format!("{key}_p99_over_direct_us"),
        &format!("{what}: setup p99 over direct"),
        c99 - d99,
        "µs",
        format!("chain {c99:.0} µs, direct {d99:.0} µs"),
    );
}

/// The address a `connect --listen` logged it listens on.
pub(crate) fn listen_addr(listen: &Proc) -> SocketAddr {
    let line = listen.wait_line("listening on");
    line.split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("listen address")
}

/// `rendezvous connect --listen 127.0.0.1:0` for the bench's UUID at
/// `srv`, and the address it listens on.
pub(crate) fn connect_listen(srv: &Server, tls: bool) -> (Proc, SocketAddr) {
    let listen = spawn(
        "connect",
        client(
            srv,
            tls,
            &["connect", "--listen", "127.0.0.1:0", "--uuid", UUID],
        ),
    );
    let addr = listen_addr(&listen);
    (listen, addr)
}

/// The generic chain, with the registrar over TLS or `--plaintext`.
fn generic(dir: &Path, tls: bool, n: usize, rep: &mut Report) {
    let srv = start_server(dir, tls, &[]);
    let echo = support::echo_server();
    let _agent = expose(&srv, tls, dir, "generic", echo);
    let (_listen, addr) = connect_listen(&srv, tls);
    let r = alternate(n, || one_line(echo), || one_line(addr));
    let mode = if tls { "TLS registrar" } else { "--plaintext" };
    rows(
        rep,
        if tls { "chain_generic_tls" } else { "chain_generic_plain" },
        &format!("generic chain (connect --listen, rendezvousd, expose; {mode}), connect + one line echoed"),
        r,
    );
}

/// The generic chain with both agents `FAR` away from the rendezvous port
/// (a proxy in front of it, named in the triples by `--public-port`): what
/// a phone and a gateway on real networks see. Each connection's answer
/// takes four one-way trips here (cookie line; +OK and first bytes to the
/// hidden server; its answer back to rendezvousd, and on to connect); two
/// more for the handshake when connect has no spare connection ready; on
/// a real link, one round trip more for the liveness proof (the proxy's
/// kernel acknowledges the +OK at once); two more when the mobile client
/// waits for its +OK before it sends.
fn generic_far(dir: &Path, n: usize, rep: &mut Report) {
    const FAR: Duration = Duration::from_millis(5);
    let target = Arc::new(std::sync::OnceLock::new());
    let front = super::far::delayed(FAR, target.clone());
    let port = front.port().to_string();
    let srv = start_server(dir, false, &["--public-port", &port]);
    let _ = target.set(srv.rendezvous);
    let echo = support::echo_server();
    let _agent = expose(&srv, false, dir, "generic", echo);
    let (_listen, addr) = connect_listen(&srv, false);
    let r = alternate(n, || one_line(echo), || one_line(addr));
    rows(
        rep,
        "chain_generic_far",
        "generic chain, 5 ms each way between both agents and the rendezvous port (a proxy), connect + one line echoed",
        r,
    );
}

/// The HTTP-specific chain: HTTPS (or, `--plaintext`, HTTP) to the
/// registrar against the same to the service directly.
fn http(dir: &Path, tls: bool, n: usize, rep: &mut Report) {
    let srv = start_server(dir, tls, &[]);
    let plain = http_service(None);
    let _agent = expose(&srv, tls, dir, "http", plain);
    let (direct, cfg) = if tls {
        let cert = srv.state.join("cert.pem");
        let server_cfg =
            tls::server_config(&cert, &srv.state.join("key.pem")).expect("server config");
        let client_cfg = tls::client_config(&Trust::Ca(cert)).expect("client config");
        (http_service(Some(server_cfg)), Some(client_cfg))
    } else {
        (plain, None)
    };
    let basic = data_encoding::BASE64.encode(format!("{UUID}:").as_bytes());
    let req = format!("GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {basic}\r\n\r\n");
    let r = alternate(
        n,
        || one_request(direct, cfg.as_ref(), req.as_bytes()),
        || one_request(srv.registrar, cfg.as_ref(), req.as_bytes()),
    );
    let mode = if tls { "HTTPS" } else { "HTTP, --plaintext" };
    rows(
        rep,
        if tls {
            "chain_http_tls"
        } else {
            "chain_http_plain"
        },
        &format!("HTTP-specific chain (registrar, expose --protocol http; {mode}), one request"),
        r,
    );
}

/// Every chain row: generic and HTTP-specific, each over TLS and plain.
pub fn chain_rows(quick: bool, dir: &Path, rep: &mut Report) {
    let n = if quick { 200 } else { 1000 };
    generic(dir, false, n, rep);
    generic(dir, true, n, rep);
    generic_far(dir, n / 5, rep);
    http(dir, false, n, rep);
    http(dir, true, n, rep);
}
