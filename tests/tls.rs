//! TLS: a client pinned by fingerprint (or trusting the self-signed certificate
//! as its CA) completes a handshake with a freshly generated server on
//! 127.0.0.1; a wrong pin fails with a clear error; a stalled handshake is cut
//! at its deadline.

mod support;

use rendezvous::certs;
use rendezvous::tls::{self, Trust};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use support::TempDir;

struct Pair {
    _dir: TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    fp: String,
    config: std::sync::Arc<rustls::ServerConfig>,
}

fn pair() -> Pair {
    let dir = TempDir::new("tls");
    let (cert, key) = certs::state_pair(dir.path());
    let fp = certs::write_self_signed(
        &cert,
        &key,
        &["localhost".into(), "127.0.0.1".into()],
        false,
    )
    .expect("generate pair");
    assert_eq!(fp.len(), 64);
    assert!(fp
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(support::mode(&key), 0o600);
    let config = tls::server_config(&cert, &key).expect("server config");
    Pair {
        _dir: dir,
        cert,
        key,
        fp,
        config,
    }
}

/// Serve one connection: handshake, read one line, echo it back.
fn echo_once(
    config: std::sync::Arc<rustls::ServerConfig>,
) -> (u16, thread::JoinHandle<Result<(), String>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tls = tls::accept(s, config, deadline).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).map_err(|e| e.to_string())?;
        tls.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        let _ = tls.flush();
        Ok(())
    });
    (port, h)
}

fn client(port: u16, trust: &Trust, host: &str) -> Result<Vec<u8>, rendezvous::Error> {
    let config = tls::client_config(trust)?;
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut s = tls::connect(sock, config, host, Instant::now() + Duration::from_secs(5))?;
    s.write_all(b"hello\n").map_err(rendezvous::Error::from)?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(out)
}

#[test]
fn pinned_client_handshakes() {
    let p = pair();
    let (port, h) = echo_once(p.config.clone());
    let pin = certs::parse_fingerprint(&p.fp).expect("pin parses");
    let got = client(port, &Trust::Pin(pin), "127.0.0.1").expect("pinned handshake");
    assert_eq!(got, b"hello\n");
    h.join().expect("server thread").expect("server side");
}

#[test]
fn pin_ignores_name_but_not_key() {
    // A pin identifies the certificate, so any name works...
    let p = pair();
    let (port, h) = echo_once(p.config.clone());
    let pin = certs::parse_fingerprint(&p.fp.to_uppercase()).expect("upper case parses");
    assert_eq!(
        client(port, &Trust::Pin(pin), "not-in-the-cert.example").expect("ok"),
        b"hello\n"
    );
    h.join().expect("server thread").expect("server side");
}

#[test]
fn wrong_pin_fails_clearly() {
    let p = pair();
    let (port, h) = echo_once(p.config.clone());
    let mut pin = certs::parse_fingerprint(&p.fp).expect("pin parses");
    pin[0] ^= 1;
    let err = client(port, &Trust::Pin(pin), "127.0.0.1").expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("pinned SHA-256 fingerprint"), "{msg}");
    assert!(
        h.join().expect("server thread").is_err(),
        "server must see the failure"
    );
}

#[test]
fn self_signed_certificate_as_ca() {
    let p = pair();
    let (port, h) = echo_once(p.config.clone());
    let got = client(port, &Trust::Ca(p.cert.clone()), "localhost").expect("ca handshake");
    assert_eq!(got, b"hello\n");
    h.join().expect("server thread").expect("server side");
}

#[test]
fn ca_from_another_pair_is_refused() {
    let p = pair();
    let other = pair();
    let (port, h) = echo_once(p.config.clone());
    assert!(client(port, &Trust::Ca(other.cert.clone()), "localhost").is_err());
    let _ = h.join();
}

#[test]
fn stalled_handshake_is_cut_at_the_deadline() {
    let p = pair();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let config = p.config.clone();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        let start = Instant::now();
        let r = tls::accept(s, config, start + Duration::from_millis(500));
        (r.err().map(|e| e.to_string()), start.elapsed())
    });
    // Trickle one byte at a time, more often than the deadline, never finishing.
    let mut c = TcpStream::connect(addr).expect("connect");
    let hello = [
        0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    for b in hello {
        if c.write_all(&[b]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(150));
    }
    let (err, took) = h.join().expect("server thread");
    let err = err.expect("handshake must fail");
    assert!(err.contains("timed out"), "{err}");
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
}

#[test]
fn half_a_pair_is_never_replaced() {
    let dir = TempDir::new("tls-half");
    let (cert, key) = certs::state_pair(dir.path());
    let (_, created) = certs::ensure_pair(&cert, &key).expect("creates a pair");
    assert!(created);
    let fp = certs::file_fingerprint(&cert).expect("fp");
    assert_eq!(
        certs::ensure_pair(&cert, &key).expect("keeps it"),
        (fp, false)
    );
    std::fs::remove_file(&key).expect("remove key");
    let err = certs::ensure_pair(&cert, &key)
        .expect_err("refuses")
        .to_string();
    assert!(err.contains("missing"), "{err}");
    assert!(!key.exists(), "nothing written");
}

#[test]
fn tls_leg_reads_records_split_across_socket_reads() {
    use rendezvous::relay::{Leg, TlsLeg};
    let p = pair();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let config = p.config.clone();
    let server = thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        tls::accept(s, config, Instant::now() + Duration::from_secs(5)).expect("handshake")
    });
    let pin = certs::parse_fingerprint(&p.fp).expect("pin");
    let cfg = tls::client_config(&Trust::Pin(pin)).expect("config");
    let sock = TcpStream::connect(addr).expect("connect");
    let mut c = tls::connect(
        sock,
        cfg,
        "127.0.0.1",
        Instant::now() + Duration::from_secs(5),
    )
    .expect("client handshake");
    let s = server.join().expect("server thread");
    let leg = TlsLeg::new(s.conn, s.sock);
    // Three full records, sent so that socket reads split them: the end of
    // the first, all of the second and the start of the third arrive together.
    let data: Vec<u8> = (0..3 * 16384u32).map(|i| (i % 251) as u8).collect();
    c.conn.writer().write_all(&data).expect("encrypt");
    let mut wire = Vec::new();
    while c.conn.wants_write() {
        c.conn.write_tls(&mut wire).expect("records");
    }
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while got.len() < 3 * 16384 {
            match leg.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("leg read: {e}"),
            }
        }
        got
    });
    let cuts = [16000, 16000 + 16896, wire.len()];
    let mut from = 0;
    for cut in cuts {
        c.sock.write_all(&wire[from..cut]).expect("send");
        from = cut;
        thread::sleep(Duration::from_millis(200));
    }
    let got = reader.join().expect("reader");
    assert_eq!(got, data);
}

/// A server that presents one certificate and signs with another key.
#[derive(Debug)]
struct Impostor(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Impostor {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A pin (or the certificate as CA) names a certificate, but the server must
/// still prove it holds the certificate's key: a copy of the certificate
/// alone, with another key signing the handshake, is refused, in TLS 1.3 and
/// in TLS 1.2.
#[test]
fn a_copied_certificate_without_its_key_is_refused() {
    let victim = pair();
    let thief = pair();
    let provider = tls::provider();
    let certs = certs::load_certs(&victim.cert).expect("victim's certificate");
    let key = certs::load_key(&thief.key).expect("thief's key");
    let signer = provider
        .key_provider
        .load_private_key(key)
        .expect("signing key");
    let impostor = std::sync::Arc::new(Impostor(std::sync::Arc::new(
        rustls::sign::CertifiedKey::new(certs, signer),
    )));
    let pin = certs::parse_fingerprint(&victim.fp).expect("pin parses");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for trust in [Trust::Pin(pin), Trust::Ca(victim.cert.clone())] {
            let config = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[version])
                .expect("versions")
                .with_no_client_auth()
                .with_cert_resolver(impostor.clone());
            let (port, h) = echo_once(std::sync::Arc::new(config));
            let err = client(port, &trust, "localhost")
                .expect_err("a handshake signed with another key must fail");
            let msg = err.to_string();
            assert!(
                msg.to_ascii_lowercase().contains("signature"),
                "{version:?} {trust:?}: {msg}"
            );
            assert!(h.join().expect("server thread").is_err(), "no echo");
        }
    }
    // The real owner still gets through (the pin and the CA are right).
    let (port, h) = echo_once(victim.config.clone());
    assert_eq!(
        client(port, &Trust::Pin(pin), "localhost").expect("owner"),
        b"hello\n"
    );
    h.join().expect("server thread").expect("server side");
}
