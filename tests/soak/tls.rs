//! HTTP-specific pairs over TLS on both legs, under load: the real
//! rendezvousd with its self-signed certificate, real `expose --protocol
//! http` agents trusting it with `--ca`, and mobile clients speaking TLS with
//! Basic credentials. All pairs are held open at once (the service answers
//! none until every body has arrived); every body goes up and comes back
//! transformed, checked with SHA-256; rendezvousd's descriptors and threads
//! return to their baseline afterwards.
//!
//! The rest of the soak runs the registrar with `--plaintext`, because its
//! pairs send and receive at once from two threads, which a TLS stream does
//! not allow; this test exchanges in turn instead.

use super::*;
use rendezvous::tls::{self, Trust};
use ring::digest::{digest, SHA256};

/// The service: per connection, read the forwarded head and its
/// Content-Length body, wait until `release` is set, then answer with the
/// body XORed with 0x5a and close. Stops when `stop` is set.
struct TlsService {
    addr: SocketAddr,
    bodies: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsService {
    fn start() -> TlsService {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind service");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let bodies = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, r, s) = (bodies.clone(), release.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((sock, _)) => {
                        let (b, r, s) = (b.clone(), r.clone(), s.clone());
                        conns.push(thread::spawn(move || service_conn(sock, &b, &r, &s)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        TlsService {
            addr,
            bodies,
            release,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TlsService {
    fn drop(&mut self) {
        self.release.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Read a head (up to its blank line) and a Content-Length body.
fn read_message<S: Read>(s: &mut S) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "head"));
        }
        head.push(b[0]);
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("head too long"));
        }
    }
    let len = content_length(&head).ok_or_else(|| io::Error::other("no Content-Length"))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((head, body))
}

fn service_conn(
    mut sock: TcpStream,
    bodies: &AtomicUsize,
    release: &AtomicBool,
    stop: &AtomicBool,
) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(IO_LONG));
    let Ok((_head, body)) = read_message(&mut sock) else {
        return;
    };
    bodies.fetch_add(1, Ordering::SeqCst);
    while !release.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(5));
    }
    let reply: Vec<u8> = body.iter().map(|b| b ^ 0x5a).collect();
    let _ = write!(
        sock,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    );
    let _ = sock.write_all(&reply);
}

/// At most this many mobile clients in their TLS handshake and head at once,
/// well under the server's per-address cap (the tests use 127.0.0.1 only).
const TLS_ESTABLISHING: usize = 32;

struct Admission(Mutex<usize>, Condvar);

impl Admission {
    fn enter(&self) {
        let mut n = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *n >= TLS_ESTABLISHING {
            n = self
                .1
                .wait(n)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *n += 1;
    }
    fn leave(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
        self.1.notify_one();
    }
}

/// One mobile client: TLS to the registrar, Basic credentials, a body of
/// `len` bytes; the answer must be that body XORed with 0x5a.
fn tls_pair(
    reg: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    uuid: Uuid,
    id: usize,
    len: usize,
    admission: &Admission,
) -> Result<u64, String> {
    let body: Vec<u8> = (0..len).map(|i| (i * 31 + id * 7) as u8).collect();
    let expect = digest(&SHA256, &body.iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>());
    admission.enter();
    let sent = (|| {
        let sock = TcpStream::connect_timeout(&reg, Duration::from_secs(10))
            .map_err(|e| format!("connect: {e}"))?;
        sock.set_read_timeout(Some(IO_LONG))
            .map_err(|e| e.to_string())?;
        let mut s = tls::connect(sock, cfg, "127.0.0.1", Instant::now() + IO_LONG)
            .map_err(|e| format!("handshake: {e}"))?;
        let auth = data_encoding::BASE64.encode(format!("{uuid}:").as_bytes());
        write!(
            s,
            "POST /tls/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nContent-Length: {len}\r\n\r\n"
        )
        .map_err(|e| format!("send head: {e}"))?;
        Ok::<_, String>(s)
    })();
    admission.leave();
    let mut s = sent?;
    s.write_all(&body).map_err(|e| format!("send body: {e}"))?;
    let (head, reply) = read_message(&mut s).map_err(|e| format!("pair {id}: answer: {e}"))?;
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "pair {id}: {}",
            String::from_utf8_lossy(&head).lines().next().unwrap_or("")
        ));
    }
    if digest(&SHA256, &reply).as_ref() != expect.as_ref() {
        return Err(format!("pair {id}: the answer's SHA-256 differs"));
    }
    Ok(2 * len as u64)
}

/// GET the metrics page over TLS.
fn tls_metrics(reg: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> Option<String> {
    let sock = TcpStream::connect_timeout(&reg, Duration::from_secs(5)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut s = tls::connect(
        sock,
        cfg.clone(),
        "127.0.0.1",
        Instant::now() + Duration::from_secs(5),
    )
    .ok()?;
    s.write_all(
        b"GET /.well-known/rendezvous/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .ok()?;
    let r = rendezvous::wire::read_response(&mut s).ok()?;
    (r.status == 200).then(|| String::from_utf8_lossy(&r.body).into_owned())
}

/// Run `pairs` concurrent TLS-to-TLS pairs through two agents and check
/// bytes, descriptors and threads.
fn tls_load(pairs: usize) {
    ensure_nofile(8 * pairs as u64 + 1024);
    let dir = TempDir::new("soak-tls");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state");
    let uuids = [Uuid::new_v4(), Uuid::new_v4()];
    let users: String = uuids
        .iter()
        .map(|u| format!("{u} {SECRET_B32} 30 6 tls agent\n"))
        .collect();
    let users_file = state.join("users");
    rendezvous::files::write_atomic(&users_file, users.as_bytes(), 0o600).expect("users");
    let secret = dir.join("secret");
    rendezvous::files::write_atomic(&secret, format!("{SECRET_B32}\n").as_bytes(), 0o600)
        .expect("secret");

    let mut c = rendezvousd();
    c.args([
        "serve",
        "--registrar",
        "127.0.0.1:0",
        "--rendezvous",
        "none",
        "--pair-timeout",
        "20",
        "--state-dir",
    ])
    .arg(&state)
    .env("RUST_LOG", "info")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let mut srv = Proc::spawn("rendezvousd-tls", c);
    let reg = srv.listening("registrar");
    let pid = srv.child.id();
    let cert = state.join("cert.pem");
    let cfg = tls::client_config(&Trust::Ca(cert.clone())).expect("client config");

    let service = TlsService::start();
    let agents: Vec<Proc> = uuids
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let mut c = rendezvous();
            c.args([
                "expose",
                "--protocol",
                "http",
                "--pool",
                "8",
                "--server",
                &format!("https://127.0.0.1:{}", reg.port()),
                "--ca",
            ])
            .arg(&cert)
            .args(["--uuid", &u.to_string(), "--to", &service.addr.to_string()])
            .arg("--secret-file")
            .arg(&secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
            Proc::spawn(
                if i == 0 {
                    "expose-tls-a"
                } else {
                    "expose-tls-b"
                },
                c,
            )
        })
        .collect();
    let parked = || {
        tls_metrics(reg, &cfg)
            .and_then(|m| metric(&m, "rendezvous_parked{proto=\"http\"}"))
            .unwrap_or(0)
    };
    wait_for("both agents parked", Duration::from_secs(30), || {
        parked() == 16
    });
    let mut last = (Instant::now(), fds_threads(pid));
    wait_for("a steady baseline", Duration::from_secs(20), || {
        let now = fds_threads(pid);
        if now != last.1 {
            last = (Instant::now(), now);
        }
        last.0.elapsed() >= Duration::from_millis(500)
    });
    let base = last.1;

    let admission = Arc::new(Admission(Mutex::new(0), Condvar::new()));
    let start = Instant::now();
    let handles: Vec<_> = (0..pairs)
        .map(|id| {
            let (cfg, admission) = (cfg.clone(), admission.clone());
            let uuid = uuids[id % 2];
            let len = 32 * 1024 + (id * 7919) % (128 * 1024);
            spawn("tls-pair", move || {
                tls_pair(reg, cfg, uuid, id, len, &admission)
            })
            .expect("pair thread")
        })
        .collect();
    wait_for(
        "every body at the service, all pairs open at once",
        Duration::from_secs(120),
        || service.bodies.load(Ordering::SeqCst) == pairs,
    );
    let established = start.elapsed();
    let peak = fds_threads(pid);
    service.release.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut bytes = 0u64;
    let mut failures = Vec::new();
    for h in handles {
        match join_by(h, deadline) {
            Ok(Ok(n)) => bytes += n,
            Ok(Err(e)) | Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let back = wait_for(
        "descriptors and threads back to the baseline",
        // Idle threads go within two lingers (2 s each) even while this
        // loop's own metrics requests keep a few busy.
        Duration::from_secs(20),
        || {
            wait_for("agents parked again", Duration::from_secs(30), || {
                parked() == 16
            });
            let (f, t) = fds_threads(pid);
            near(base, f, t)
        },
    );
    let after = fds_threads(pid);
    // Each open pair holds at least its two TLS sockets in rendezvousd.
    assert!(
        peak.0 >= base.0 + 2 * pairs,
        "peak fds {} for {pairs} pairs over baseline {}",
        peak.0,
        base.0
    );
    drop(agents);
    srv.signal("TERM");
    assert_eq!(srv.wait_exit(Duration::from_secs(20)), Some(0));
    eprintln!(
        "tls: {pairs} TLS-to-TLS pairs open at once after {:.2} s; {bytes} bytes verified (SHA-256), 0 failures; \
         rendezvousd fds {} -> {} -> {}, threads {} -> {} -> {} (back {:.2} s after)",
        established.as_secs_f64(),
        base.0,
        peak.0,
        after.0,
        base.1,
        peak.1,
        after.1,
        back.as_secs_f64()
    );
}

/// `make test`: 40 pairs.
#[test]
fn tls_pairs_fast() {
    tls_load(40);
}

/// `make soak`: 300 pairs.
#[test]
#[ignore = "the full TLS load (make soak)"]
fn tls_pairs_full() {
    tls_load(300);
}
