//! The HTTP-specific protocol over real TLS: curl as the mobile client in all
//! three credential forms, the head forwarded exactly minus Authorization,
//! WebSocket through `?uuid=`, every CONNECT status, the cookie-grown pool used
//! oldest first, 404 when none waits, and 16 MiB each way through the
//! TLS-to-TLS relay.

mod support;

use rendezvous::tls::{self, ClientStream, Trust};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

fn tls_opts() -> Opts {
    Opts {
        plaintext: false,
        pair_timeout: Duration::from_secs(5),
        ..Opts::default()
    }
}

fn cert(ts: &TestServer) -> PathBuf {
    ts.dir.join("cert.pem")
}

fn tls_connect(ts: &TestServer) -> ClientStream {
    let cfg = tls::client_config(&Trust::Ca(cert(ts))).expect("client config");
    let sock = connect(ts.registrar());
    tls::connect(sock, cfg, "127.0.0.1", Instant::now() + IO_TIMEOUT).expect("handshake")
}

fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// CONNECT as a hidden server; returns the stream and the response head.
fn hidden_connect(ts: &TestServer, query: &str) -> (ClientStream, String) {
    let mut s = tls_connect(ts);
    write!(
        s,
        "CONNECT uuid:{}{query} HTTP/1.1\r\nHost: x\r\n\r\n",
        ts.uuid
    )
    .expect("send");
    s.flush().expect("flush");
    let head = read_head(&mut s);
    (s, head)
}

/// An upstream HTTP server that records each request head and answers
/// `hello from upstream` (closing after each response).
fn recording_upstream() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let tx = tx.clone();
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let head = read_head(&mut s).into_bytes();
                let _ = tx.send(head);
                let body = b"hello from upstream";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(body);
            });
        }
    });
    (addr, rx)
}

fn curl(args: &[&str]) -> (i32, String, String) {
    let o = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl is installed (.ci/run installs it)");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn curl_reaches_the_hidden_web_server_in_every_credential_form() {
    let ts = TestServer::start(tls_opts());
    let (up, heads) = recording_upstream();
    let _agent = expose_http(&ts, up, 2);
    let base = format!("https://127.0.0.1:{}/index.html", ts.registrar().port());
    let cacert = cert(&ts);
    let cacert = cacert.to_str().expect("utf-8 path");
    let id = ts.uuid.to_string();

    let basic = format!("{id}:");
    let (code, out, err) = curl(&["--cacert", cacert, "-u", &basic, &base]);
    assert_eq!((code, out.as_str()), (0, "hello from upstream"), "{err}");

    let digest = format!("{id}:x");
    let (code, out, err) = curl(&["--cacert", cacert, "--digest", "-u", &digest, &base]);
    assert_eq!((code, out.as_str()), (0, "hello from upstream"), "{err}");

    let in_url = format!(
        "https://uuid:{id}@127.0.0.1:{}/index.html",
        ts.registrar().port()
    );
    let (code, out, err) = curl(&["--cacert", cacert, &in_url]);
    assert_eq!((code, out.as_str()), (0, "hello from upstream"), "{err}");

    // Without credentials: 401 with a Digest challenge.
    let (code, out, err) = curl(&["--cacert", cacert, "-i", &base]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(
        out.contains("WWW-Authenticate: Digest realm=\"rendezvous\""),
        "{out}"
    );

    // The upstream never saw an Authorization header.
    let mut seen = 0;
    while let Ok(h) = heads.recv_timeout(Duration::from_secs(1)) {
        let text = String::from_utf8_lossy(&h).to_ascii_lowercase();
        assert!(!text.contains("authorization"), "{text}");
        assert!(text.starts_with("get /index.html http/1.1\r\n"), "{text}");
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn head_is_forwarded_exactly_minus_authorization() {
    let ts = TestServer::start(tls_opts());
    let (up, heads) = recording_upstream();
    let _agent = expose_http(&ts, up, 1);
    let auth = format!(
        "Authorization: Basic {}\r\n",
        data_encoding::BASE64.encode(format!("{}:", ts.uuid).as_bytes())
    );
    let head = format!(
        "GET /a/b?x=1&uuid=not-used HTTP/1.1\r\nhOsT: example.org\r\nX-First: 1\r\n{auth}x-lower: two\r\nX-UPPER:  spaced value \r\nAccept: */*\r\n\r\n"
    );
    let expected = head.replace(&auth, "");
    let mut s = tls_connect(&ts);
    s.write_all(head.as_bytes()).expect("send");
    let resp = read_head(&mut s);
    assert_eq!(status(&resp), 200, "{resp}");
    let got = heads.recv_timeout(IO_TIMEOUT).expect("upstream saw a head");
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[test]
fn connect_status_codes() {
    avoid_step_edge();
    let ts = TestServer::start(tls_opts());
    let mut s = tls_connect(&ts);
    s.write_all(b"CONNECT example.org:443 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(status(&read_head(&mut s)), 403);
    assert_eq!(status(&hidden_connect(&ts, "").1), 407);
    assert_eq!(status(&hidden_connect(&ts, "?response=1&cookie=R").1), 400);
    let wrong = wrong_token();
    assert_eq!(
        status(&hidden_connect(&ts, &format!("?response={wrong}")).1),
        401
    );
    let bad = format!("?cookie=R{}", uuid::Uuid::new_v4());
    assert_eq!(status(&hidden_connect(&ts, &bad).1), 401);
    let mut s = tls_connect(&ts);
    s.write_all(b"CONNECT uuid:nope?response=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(status(&read_head(&mut s)), 400);

    // 409: data right behind the CONNECT head.
    let mut s = tls_connect(&ts);
    write!(
        s,
        "CONNECT uuid:{}?response={} HTTP/1.1\r\nHost: x\r\n\r\nEARLY",
        ts.uuid,
        token_at(0)
    )
    .expect("send");
    assert_eq!(status(&read_head(&mut s)), 409);

    // 200 with a Rendezvous-Cookie; the cookie then grows the pool.
    let (_a, head) = hidden_connect(&ts, &format!("?response={}", token_at(0)));
    assert_eq!(status(&head), 200, "{head}");
    assert!(header(&head, "content-length").is_none());
    let cookie = header(&head, "rendezvous-cookie")
        .expect("cookie")
        .to_string();
    assert!(cookie.starts_with('R'));
    let (_b, head) = hidden_connect(&ts, &format!("?cookie={cookie}"));
    assert_eq!(status(&head), 200);
    assert_eq!(header(&head, "rendezvous-cookie"), Some(cookie.as_str()));
    wait_until("two parked", || {
        ts.server().shared().registry.stats().parked_http == 2
    });

    // The token was used once: replaying it is refused.
    assert_eq!(
        status(&hidden_connect(&ts, &format!("?response={}", token_at(0))).1),
        401
    );
    // Ten failures: locked, 429 with Retry-After.
    for _ in 0..9 {
        hidden_connect(&ts, &format!("?response={wrong}"));
    }
    let (_, head) = hidden_connect(&ts, &format!("?response={}", token_at(1)));
    assert_eq!(status(&head), 429, "{head}");
    assert!(header(&head, "retry-after").is_some());
    // A live cookie still parks during the lock.
    let (_c, head) = hidden_connect(&ts, &format!("?cookie={cookie}"));
    assert_eq!(status(&head), 200);
}

#[test]
fn cookie_grown_pool_is_used_oldest_first_and_404_when_empty() {
    let ts = TestServer::start(Opts {
        pair_timeout: Duration::from_millis(500),
        ..tls_opts()
    });
    let (a, head) = hidden_connect(&ts, &format!("?response={}", token_at(0)));
    let cookie = header(&head, "rendezvous-cookie")
        .expect("cookie")
        .to_string();
    wait_until("a parked", || {
        ts.server().shared().registry.stats().parked_http == 1
    });
    let (b, _) = hidden_connect(&ts, &format!("?cookie={cookie}"));
    wait_until("b parked", || {
        ts.server().shared().registry.stats().parked_http == 2
    });
    let mut handles = Vec::new();
    for (name, mut hidden) in [("a", a), ("b", b)] {
        handles.push(thread::spawn(move || {
            let head = read_head(&mut hidden);
            assert!(head.starts_with("GET /"), "{head}");
            write!(
                hidden,
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n{name}"
            )
            .expect("reply");
            hidden.conn.send_close_notify();
            let _ = hidden.flush();
        }));
    }
    let auth = data_encoding::BASE64.encode(format!("{}:", ts.uuid).as_bytes());
    for want in ["a", "b"] {
        let mut m = tls_connect(&ts);
        write!(
            m,
            "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n"
        )
        .expect("send");
        let head = read_head(&mut m);
        assert_eq!(status(&head), 200, "{head}");
        let mut body = [0u8; 1];
        m.read_exact(&mut body).expect("body");
        assert_eq!(&body, want.as_bytes());
    }
    for h in handles {
        h.join().expect("hidden side");
    }
    // None waiting: 404 after the pair timeout.
    let mut m = tls_connect(&ts);
    write!(
        m,
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n"
    )
    .expect("send");
    let head = read_head(&mut m);
    assert_eq!(status(&head), 404, "{head}");
    // Malformed Authorization: 400.
    let mut m = tls_connect(&ts);
    m.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!\r\n\r\n")
        .expect("send");
    assert_eq!(status(&read_head(&mut m)), 400);
    // WebSocket with a malformed uuid=: 400.
    let mut m = tls_connect(&ts);
    m.write_all(b"GET /?uuid=zz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        .expect("send");
    assert_eq!(status(&read_head(&mut m)), 400);
}

/// A WebSocket echo server (RFC 6455, small unfragmented frames).
fn websocket_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let head = read_head(&mut s);
                let key = header(&head, "sec-websocket-key").unwrap_or("").to_string();
                let digest = ring::digest::digest(
                    &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
                );
                let accept = data_encoding::BASE64.encode(digest.as_ref());
                let _ = write!(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
                loop {
                    let mut h = [0u8; 2];
                    if s.read_exact(&mut h).is_err() {
                        return;
                    }
                    let len = (h[1] & 0x7f) as usize;
                    let mut mask = [0u8; 4];
                    let mut payload = vec![0u8; len];
                    if s.read_exact(&mut mask).is_err() || s.read_exact(&mut payload).is_err() {
                        return;
                    }
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= mask[i % 4];
                    }
                    let mut frame = vec![h[0], len as u8];
                    frame.extend_from_slice(&payload);
                    if s.write_all(&frame).is_err() || h[0] & 0x0f == 8 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn websocket_through_uuid_or_rendezvous_query() {
    let ts = TestServer::start(tls_opts());
    let _agent = expose_http(&ts, websocket_echo(), 2);
    // Both query names a browser's WebSocket API can carry the UUID in.
    for param in ["uuid", "rendezvous"] {
        let mut m = tls_connect(&ts);
        write!(
        m,
        "GET /chat?{param}={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ts.uuid
    )
    .expect("send");
        let head = read_head(&mut m);
        assert_eq!(status(&head), 101, "?{param}=: {head}");
        assert_eq!(
            header(&head, "sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        for msg in ["hello", "frames flow both ways"] {
            let mask = [1u8, 2, 3, 4];
            let mut frame = vec![0x81, 0x80 | msg.len() as u8];
            frame.extend_from_slice(&mask);
            frame.extend(msg.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            m.write_all(&frame).expect("send frame");
            let mut h = [0u8; 2];
            m.read_exact(&mut h).expect("frame head");
            assert_eq!(h[0], 0x81);
            let mut payload = vec![0u8; (h[1] & 0x7f) as usize];
            m.read_exact(&mut payload).expect("payload");
            assert_eq!(payload, msg.as_bytes());
        }
    }
}

#[test]
fn sixteen_mib_each_way_through_tls_to_tls() {
    let ts = TestServer::start(tls_opts());
    let (mut hidden, head) = hidden_connect(&ts, &format!("?response={}", token_at(0)));
    assert_eq!(status(&head), 200);
    wait_until("parked", || {
        ts.server().shared().registry.stats().parked_http == 1
    });
    const N: usize = 16 << 20;
    let up = pseudo_random(N, 11);
    let down = pseudo_random(N, 12);
    let (up_sum, down_sum) = (sha256(&up), sha256(&down));
    let auth = data_encoding::BASE64.encode(format!("uuid:{}", ts.uuid).as_bytes());
    let request = format!("PUT /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: {N}\r\n\r\n");
    let start = Instant::now();
    // Each side drives its own TLS stream non-blocking, sending and
    // receiving at once (see pump_both).
    let mobile = thread::spawn(move || {
        let mut m = tls_connect_owned(&ts_addr_cert(&ts));
        m.write_all(request.as_bytes()).expect("head");
        let got = pump_both(&mut m, &up);
        (got, ts)
    });
    let head = read_head(&mut hidden);
    assert!(head.starts_with("PUT /upload"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("authorization"));
    let got_up = pump_both(&mut hidden, &down);
    let (got_down, _ts) = mobile.join().expect("mobile side");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got_up.len(), N);
    assert_eq!(got_down.len(), N);
    assert_eq!(sha256(&got_up), up_sum);
    assert_eq!(sha256(&got_down), down_sum);
    eprintln!(
        "TLS-to-TLS: 16 MiB each way in {secs:.2} s ({:.0} MiB/s total, debug build)",
        32.0 / secs
    );
}

struct AddrCert(SocketAddr, PathBuf);

fn ts_addr_cert(ts: &TestServer) -> AddrCert {
    AddrCert(ts.registrar(), cert(ts))
}

fn tls_connect_owned(ac: &AddrCert) -> ClientStream {
    let cfg = tls::client_config(&Trust::Ca(ac.1.clone())).expect("client config");
    let sock = connect(ac.0);
    tls::connect(sock, cfg, "127.0.0.1", Instant::now() + IO_TIMEOUT).expect("handshake")
}

/// Send all of `data` (then close_notify) while reading everything the peer
/// sends until its close_notify, on one TLS stream, without blocking on either.
fn pump_both(s: &mut ClientStream, data: &[u8]) -> Vec<u8> {
    s.sock.set_nonblocking(true).expect("nonblocking");
    let mut got = Vec::with_capacity(data.len());
    let mut sent = 0;
    let mut closed_out = false;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "pump timed out: sent {sent} got {}",
            got.len()
        );
        let mut progress = false;
        if sent < data.len() {
            if !s.conn.wants_write() {
                let end = (sent + 16 * 1024).min(data.len());
                sent += s.conn.writer().write(&data[sent..end]).expect("encrypt");
                progress = true;
            }
        } else if !closed_out {
            s.conn.send_close_notify();
            closed_out = true;
        }
        while s.conn.wants_write() {
            match s.conn.write_tls(&mut s.sock) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        match s.conn.read_tls(&mut s.sock) {
            Ok(0) => {
                s.conn.process_new_packets().expect("tls");
            }
            Ok(_) => {
                s.conn.process_new_packets().expect("tls");
                progress = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        loop {
            match s.conn.reader().read(&mut buf) {
                Ok(0) => {
                    if closed_out && !s.conn.wants_write() {
                        return got;
                    }
                    break;
                }
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("plaintext: {e}"),
            }
        }
        if !progress {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn tls_half_close_keeps_the_reply() {
    let ts = TestServer::start(tls_opts());
    let (mut hidden, _) = hidden_connect(&ts, &format!("?response={}", token_at(0)));
    wait_until("parked", || {
        ts.server().shared().registry.stats().parked_http == 1
    });
    let auth = data_encoding::BASE64.encode(format!("{}:", ts.uuid).as_bytes());
    let mut m = tls_connect(&ts);
    write!(
        m,
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\nquestion"
    )
    .expect("send");
    m.conn.send_close_notify();
    m.flush().expect("flush");
    m.sock
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut all = Vec::new();
    hidden
        .read_to_end(&mut all)
        .expect("hidden reads to the end");
    assert!(
        all.ends_with(b"\r\n\r\nquestion"),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
    let reply = pseudo_random(1 << 20, 5);
    hidden.write_all(&reply).expect("reply");
    hidden.conn.send_close_notify();
    hidden.flush().expect("flush");
    drop(hidden);
    let mut got = Vec::new();
    let _ = m.read_to_end(&mut got);
    assert_eq!(got.len(), reply.len());
    assert_eq!(sha256(&got), sha256(&reply));
    let _ = TcpStream::connect(ts.registrar());
}
