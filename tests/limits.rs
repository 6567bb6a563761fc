//! Slow and hostile clients: a TLS handshake, a request head or a cookie line
//! trickled one byte at a time is cut at the overall deadline (not per read)
//! while a normal client is served meanwhile; `--max-connections`, the idle
//! keep-alive connections it reclaims, and the per-address cap on
//! connections that proved no credential.

mod support;

use rendezvous::tls::{self, Trust};
use rendezvous::wire::read_response;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Trickle `bytes` one per 100 ms until the server closes; returns how long
/// the server let it go on.
fn trickle(mut s: TcpStream, bytes: &[u8]) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    for b in bytes.iter().cycle() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {} // an error response; the close follows
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never cut");
    }
    start.elapsed()
}

fn health_ok_tls(addr: SocketAddr, cert: &std::path::Path) {
    let cfg = tls::client_config(&Trust::Ca(cert.to_path_buf())).expect("config");
    let sock = connect(addr);
    let mut s =
        tls::connect(sock, cfg, "127.0.0.1", Instant::now() + IO_TIMEOUT).expect("handshake");
    s.write_all(b"GET /.well-known/rendezvous/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(read_response(&mut s).expect("response").status, 200);
}

#[test]
fn slowloris_tls_handshake_and_head_are_cut_at_the_deadline() {
    let ts = TestServer::start(Opts {
        plaintext: false,
        handshake_timeout: Duration::from_millis(1500),
        ..Opts::default()
    });
    let addr = ts.registrar();
    let cert = ts.dir.join("cert.pem");
    // A ClientHello that never completes, one byte per 100 ms.
    let hello = [
        0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let slow_tls = {
        let s = connect(addr);
        thread::spawn(move || trickle(s, &hello))
    };
    // A completed handshake, then one TLS record carrying a head that never
    // ends, trickled a byte at a time (so no read ever yields plaintext).
    let slow_head = {
        let cfg = tls::client_config(&Trust::Ca(cert.clone())).expect("config");
        let sock = connect(addr);
        let mut s =
            tls::connect(sock, cfg, "127.0.0.1", Instant::now() + IO_TIMEOUT).expect("handshake");
        s.conn
            .writer()
            .write_all(format!("GET / HTTP/1.1\r\nX-Slow: {}", "a".repeat(200)).as_bytes())
            .expect("encrypt");
        let mut record = Vec::new();
        while s.conn.wants_write() {
            s.conn.write_tls(&mut record).expect("record");
        }
        let sock = s.sock;
        thread::spawn(move || trickle(sock, &record))
    };
    // Meanwhile, normal clients are served.
    for _ in 0..3 {
        health_ok_tls(addr, &cert);
        thread::sleep(Duration::from_millis(200));
    }
    let t1 = slow_tls.join().expect("slow tls");
    let t2 = slow_head.join().expect("slow head");
    for t in [t1, t2] {
        assert!(
            t >= Duration::from_millis(1200) && t < Duration::from_secs(6),
            "{t:?}"
        );
    }
}

#[test]
fn slow_cookie_line_is_cut() {
    let ts = TestServer::start(Opts {
        handshake_timeout: Duration::from_millis(1000),
        ..Opts::default()
    });
    let s = connect(ts.rendezvous());
    let t = trickle(s, b"R0000");
    assert!(
        t >= Duration::from_millis(800) && t < Duration::from_secs(5),
        "{t:?}"
    );
}

#[test]
fn max_connections_is_enforced_at_accept() {
    let ts = TestServer::start(Opts {
        max_connections: 3,
        handshake_timeout: Duration::from_secs(30),
        ..Opts::default()
    });
    let held: Vec<TcpStream> = (0..3).map(|_| connect(ts.registrar())).collect();
    wait_until("three open", || ts.server().shared().conns.open() == 3);
    let mut extra = connect(ts.registrar());
    let mut b = [0u8; 1];
    assert_eq!(
        extra.read(&mut b).unwrap_or(0),
        0,
        "fourth connection closed at once"
    );
    assert!(ts.server().shared().conns.refused() >= 1);
    drop(held);
    wait_until("slots freed", || ts.server().shared().conns.open() == 0);
    let r = request(ts.registrar(), "GET", "/.well-known/rendezvous/health", &[]);
    assert_eq!(r.status, 200);
}

/// Hold `n` keep-alive registrar connections from the current address,
/// each idle after one health request.
fn idle_keepalive(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect(addr);
            send(&mut s, "GET", "/.well-known/rendezvous/health", &[]);
            assert_eq!(read_response(&mut s).expect("response").status, 200);
            s
        })
        .collect()
}

/// Whether the server closes `s` within 5 s (a read that times out means
/// the server is still waiting for it).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Connections that proved no credential count against the per-address cap
/// in every state, idle keep-alive included (one address used to hold every
/// slot with a health request every 29 s); another address still gets in.
/// Runs in a network namespace of its own, which has a second address.
#[test]
fn unauthenticated_connections_are_capped_per_address_in_every_state() {
    let ns = Netns::new("cap");
    ns.ip(&["addr", "add", "10.66.0.2/32", "dev", "lo"]);
    ns.enter();
    let ts = TestServer::start(Opts {
        handshake_timeout: Duration::from_secs(30),
        ..Opts::default()
    });
    ts.register();
    let cap = rendezvous::limits::MAX_UNAUTH_PER_ADDR;
    let mut held = idle_keepalive(ts.registrar(), cap - 1);
    held.push(connect(ts.registrar())); // and one still in its handshake
    wait_until("all open", || ts.server().shared().conns.open() == cap);
    let mut extra = connect(ts.registrar());
    assert!(closed(&mut extra), "one too many from that address");
    let other: std::net::IpAddr = "10.66.0.2".parse().expect("ip");
    let mut s = connect_from(other, ts.registrar());
    send(&mut s, "GET", &format!("/?uuid={}", ts.uuid), &[]);
    let r = read_response(&mut s).expect("lookup from another address");
    assert_eq!(r.status, 200);
    drop(held);
}

/// At `--max-connections`, the connection idle longest between keep-alive
/// requests is closed to let a new client in (the old code refused it).
#[test]
fn at_the_cap_an_idle_keepalive_connection_makes_room() {
    let ts = TestServer::start(Opts {
        max_connections: 6,
        ..Opts::default()
    });
    ts.register();
    let mut held = idle_keepalive(ts.registrar(), 6);
    wait_until("six open", || ts.server().shared().conns.open() == 6);
    let r = request(ts.registrar(), "GET", &format!("/?uuid={}", ts.uuid), &[]);
    assert_eq!(r.status, 200, "a new client is served");
    assert_eq!(ts.server().shared().conns.reclaimed(), 1);
    // One idle connection was closed (the one idle longest: which one that
    // is depends on when each server thread went back to waiting).
    wait_until("one closed", || {
        held.iter_mut()
            .filter(|s| {
                s.set_nonblocking(true).expect("nonblocking");
                let mut b = [0u8; 1];
                let gone = match (&**s).read(&mut b) {
                    Ok(0) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                    _ => false,
                };
                s.set_nonblocking(false).expect("blocking");
                gone
            })
            .count()
            == 1
    });
    // Connections in their handshake are never reclaimed: with none idle,
    // the cap refuses.
    drop(held);
    wait_until("slots freed", || ts.server().shared().conns.open() == 0);
    let _raw: Vec<TcpStream> = (0..6).map(|_| connect(ts.registrar())).collect();
    wait_until("six in handshake", || {
        ts.server().shared().conns.open() == 6
    });
    let mut extra = connect(ts.registrar());
    assert!(closed(&mut extra), "refused at the cap");
}
