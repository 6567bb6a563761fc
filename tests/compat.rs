//! Our clients against a registrar that frames and answers as the original
//! node-rendezvous does (written from the protocol, not from its code):
//! JSON bodies in the chunked coding on a keep-alive connection that it
//! does not close, and errors answered 200 with an `error` member.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// A registrar stand-in: every request on a connection is answered `200`
/// with `body` in two chunks, and the connection kept open (up to 20 s:
/// the stand-in ends by itself).
fn chunked_registrar(body: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let mut r = BufReader::new(&s);
                loop {
                    let mut line = String::new();
                    // The head, up to its blank line.
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(n) if n > 2 => {}
                            Ok(n) if n > 0 => break,
                            _ => return,
                        }
                    }
                    let (a, b) = body.split_at(body.len() / 2);
                    let mut w = &s;
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
                        a.len(),
                        b.len()
                    );
                }
            });
        }
    });
    addr
}

/// `rendezvous lookup` at `server`: exit code, stdout, stderr, and how long
/// it took.
fn lookup(server: SocketAddr) -> (Option<i32>, String, String, Duration) {
    let t = Instant::now();
    let o = rendezvous()
        .args([
            "lookup",
            "--server",
            &format!("http://{server}"),
            "--uuid",
            "35b1f781-d9a7-4fd2-8331-ffb56d9c1a6e",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run lookup");
    (o.status.code(), stdout(&o), stderr(&o), t.elapsed())
}

/// A triple in the chunked coding, on a connection the registrar keeps
/// open: read at once, not when a timeout ends the connection.
#[test]
fn a_chunked_answer_on_a_kept_connection_is_read() {
    let server =
        chunked_registrar(r#"{"result":{"host":"127.0.0.1","port":9,"cookie":"Ia1b2c3"}}"#);
    let (code, out, err, took) = lookup(server);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(
        (v["host"].as_str(), v["port"].as_u64(), v["cookie"].as_str()),
        (Some("127.0.0.1"), Some(9), Some("Ia1b2c3"))
    );
    assert!(
        took < Duration::from_secs(10),
        "read at the end of the body, not at a timeout: {took:?}"
    );
}

/// `200` with an `error` member is the error it names, not a triple.
#[test]
fn an_error_answered_with_200_is_that_error() {
    let server = chunked_registrar(r#"{"error":{"permanent":true,"diagnostic":"unknown uuid"}}"#);
    let (code, out, err, _) = lookup(server);
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("unknown uuid"), "{err}");
    assert!(!err.contains("no triple"), "{err}");
    let ours = chunked_registrar(r#"{"error":{"permanent":false,"diagnostic":"not registered"}}"#);
    let (code, _, err, _) = lookup(ours);
    assert_eq!(code, Some(1));
    assert!(err.contains("not registered"), "{err}");
}

/// A hidden server that reads its `CONNECT`'s `200` and only then, in a
/// read of its own, the request (as the steward's does: Node's `connect`
/// event drops what arrives with the `200`) is served when the mobile
/// client was already waiting: the request follows the `200` after
/// [`FIRST_REQUEST_PAUSE`](rendezvous::limits::FIRST_REQUEST_PAUSE), not
/// in the same delivery. (The hidden side reads 10 ms after the first byte
/// of the `200`: it relies on that sleep ending within the 50 ms pause.)
#[test]
fn the_200_and_a_waiting_request_arrive_apart() {
    let ts = TestServer::start(Opts::default());
    // Registered first: a mobile client of an unknown UUID gets 404 at once.
    let r = ts.register();
    let auth = data_encoding::BASE64.encode(format!("{}:", ts.uuid).as_bytes());
    let reg = ts.registrar();
    let mobile = thread::spawn(move || {
        let mut m = connect(reg);
        write!(
            m,
            "GET /page HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n"
        )
        .expect("send");
        read_head(&mut m)
    });
    // The mobile client waits (its request is read and held).
    thread::sleep(Duration::from_millis(300));
    let mut hidden = connect(reg);
    write!(
        hidden,
        "CONNECT uuid:{}?cookie={r} HTTP/1.1\r\nHost: x\r\n\r\n",
        ts.uuid
    )
    .expect("send");
    // Wait for the first byte, give the rest 10 ms to arrive, then take
    // what is there in one read: without the pause that is the 200 and
    // the request together.
    let mut buf = [0u8; 65536];
    assert!(
        hidden.peek(&mut buf[..1]).expect("peek") > 0,
        "closed before the 200"
    );
    thread::sleep(Duration::from_millis(10));
    let n = std::io::Read::read(&mut hidden, &mut buf).expect("read the 200");
    let first = buf[..n].to_vec();
    let text = String::from_utf8_lossy(&first).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "the request came with the 200: {text:?}"
    );
    let request = read_head(&mut hidden);
    assert!(request.starts_with("GET /page HTTP/1.1"), "{request}");
    assert!(!request.to_ascii_lowercase().contains("authorization"));
    hidden
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        .expect("answer");
    let head = mobile.join().expect("mobile");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
}

/// What the CONNECT stand-in saw: the step a token was for, whether it
/// was the current one (accepted), and when.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u64, bool, std::time::SystemTime)>>>;

/// A registrar stand-in for `expose --protocol http` as the original
/// answers: a `CONNECT` with the current step's code (5 s steps) gets a
/// bare `200` and is held; any other code gets 401 and the connection is
/// closed. The held connections are returned through the channel.
fn current_step_only_registrar(
    seen: Seen,
    held: std::sync::mpsc::Sender<std::net::TcpStream>,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let params = rendezvous::totp::Params { step: 5, digits: 6 };
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let head = read_head(&mut s);
            let token = head
                .split("response=")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("")
                .to_string();
            let now = rendezvous::totp::now();
            let step = params.step_of(now);
            let code = |st: u64| rendezvous::totp::hotp(&secret(), st, 6);
            let for_step = [step.saturating_sub(1), step, step + 1]
                .into_iter()
                .find(|&st| code(st) == token);
            let accepted = for_step == Some(step);
            seen.lock().expect("seen").push((
                for_step.unwrap_or(0),
                accepted,
                std::time::SystemTime::now(),
            ));
            if accepted {
                let _ = s.write_all(b"HTTP/1.1 200\r\n\r\n");
                let _ = held.send(s);
            } else {
                let _ = s.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    addr
}

/// `expose --protocol http` against a registrar that answers a bare `200`
/// (no `Rendezvous-Cookie`) and takes the current step's code only: each
/// waiting CONNECT takes a token; after its next-step code is refused the
/// agent sends that code again as soon as its step begins (not a backoff
/// or a whole step later), and the parked CONNECTs stay open and relay.
#[test]
fn expose_http_parks_on_a_bare_200_and_meets_a_current_step_only_registrar() {
    let seen: Seen = Default::default();
    let (tx, held) = std::sync::mpsc::channel();
    let server = current_step_only_registrar(seen.clone(), tx);
    let dir = TempDir::new("compat-http");
    let prov = dir.join("agent.conf");
    let uuid = uuid::Uuid::new_v4();
    std::fs::write(&prov, format!("server = http://{server}\nuuid = {uuid}\nsecret = {SECRET_B32}\nstep = 5\ndigits = 6\n")).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prov, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // Start at the beginning of a step, so two steps are seen in 10 s.
    while !rendezvous::totp::now().is_multiple_of(5) {
        thread::sleep(Duration::from_millis(50));
    }
    let echo = echo_server();
    let mut c = rendezvous();
    c.args([
        "expose",
        "--protocol",
        "http",
        "--pool",
        "2",
        "--to",
        &echo.to_string(),
        "--config",
    ])
    .arg(&prov);
    c.stdin(Stdio::null()).stdout(Stdio::null());
    let _agent = Proc::spawn("expose-http", c);
    let first = held
        .recv_timeout(Duration::from_secs(10))
        .expect("a parked CONNECT");
    let second = held
        .recv_timeout(Duration::from_secs(15))
        .expect("a second one, the next step");
    let log = seen.lock().expect("seen").clone();
    let accepted: Vec<_> = log.iter().filter(|e| e.1).collect();
    let early: Vec<_> = log.iter().filter(|e| !e.1).collect();
    assert_eq!(accepted.len(), 2, "{log:?}");
    assert_eq!(
        early.len(),
        1,
        "one next-step code refused, no more: {log:?}"
    );
    assert_eq!(
        early[0].0, accepted[1].0,
        "the refused code's step is sent again: {log:?}"
    );
    // Sent again as its step began (within 3 s; a step is 5 s, and the old
    // behaviour skipped to the step after it, which was refused again).
    let at = accepted[1]
        .2
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time");
    let boundary = Duration::from_secs(accepted[1].0 * 5);
    assert!(
        at >= boundary && at - boundary < Duration::from_secs(3),
        "{log:?}"
    );
    // Both stay parked; a request down one is relayed to the service.
    for (i, mut s) in [first, second].into_iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let req = format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes())
            .expect("send a request down the CONNECT");
        let mut back = vec![0u8; req.len()];
        std::io::Read::read_exact(&mut s, &mut back).expect("echoed");
        assert_eq!(back, req.as_bytes());
    }
}

/// `expose` and `connect` take their triples from the chunked registrar:
/// `expose` parks at the rendezvous server the triple names with its `R`
/// cookie, and `connect` dials it with its `I` cookie and relays.
#[test]
fn expose_and_connect_read_chunked_triples() {
    let rv = TcpListener::bind("127.0.0.1:0").expect("bind rendezvous stand-in");
    let at = rv.local_addr().expect("addr");
    let body = format!(
        r#"{{"result":{{"host":"127.0.0.1","port":{},"cookie":"Cxyz","ttl":600}}}}"#,
        at.port()
    );
    let server = chunked_registrar(Box::leak(body.into_boxed_str()));
    let dir = TempDir::new("compat-chunked");
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET_B32).expect("secret");
    let uuid = "35b1f781-d9a7-4fd2-8331-ffb56d9c1a6e";
    let url = format!("http://{server}");
    let echo = echo_server();
    let mut c = rendezvous();
    c.args([
        "expose",
        "--pool",
        "1",
        "--server",
        &url,
        "--uuid",
        uuid,
        "--to",
        &echo.to_string(),
        "--secret-file",
    ])
    .arg(&secret)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let _agent = Proc::spawn("expose", c);
    rv.set_nonblocking(false).expect("blocking");
    let (mut parked, _) = rv.accept().expect("the agent parks");
    parked
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(
        read_line(&mut parked),
        "Cxyz",
        "expose sent the triple's cookie"
    );

    let mut c = rendezvous();
    c.args(["connect", "--server", &url, "--uuid", uuid])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn connect");
    let (mut mobile, _) = rv.accept().expect("connect dials");
    mobile
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(
        read_line(&mut mobile),
        "Cxyz",
        "connect sent the triple's cookie"
    );
    mobile
        .write_all(b"+OK\nfrom the hidden side")
        .expect("answer");
    mobile
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"up").expect("stdin");
    drop(stdin);
    let out = child.wait_with_output().expect("connect ends");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from the hidden side",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `connect --listen` with a local client whose first bytes wait in its
/// socket when the connection is accepted (the process is stopped while
/// the client connects and writes, so they are there, whatever the
/// scheduling). Returns the rendezvous stand-in's dial, its cookie line
/// read, and the local client.
fn listen_and_send_first(registrar_body: String, rv: &mut Standin) -> (Proc, TcpStream, TcpStream) {
    let server = chunked_registrar(Box::leak(registrar_body.into_boxed_str()));
    let mut c = rendezvous();
    c.args([
        "connect",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &format!("http://{server}"),
        "--uuid",
        "35b1f781-d9a7-4fd2-8331-ffb56d9c1a6e",
    ])
    .env("RUST_LOG", "info,rendezvous::mobile=debug")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let listen = Proc::spawn("connect-listen", c);
    let addr = listening_on(&listen);
    let local = client_while_stopped(&listen, addr, b"hello");
    let mut dial = rv.dialed();
    assert_eq!(read_line(&mut dial), "Ixyz", "the cookie line");
    (listen, dial, local)
}

/// A local client of `connect --listen` at `addr` that has connected and
/// sent `first` while the process was stopped: whatever the scheduling,
/// the bytes are there when the connection is accepted.
fn client_while_stopped(listen: &Proc, addr: SocketAddr, first: &[u8]) -> TcpStream {
    listen.signal("STOP");
    let mut local = TcpStream::connect(addr).expect("connect local");
    local.write_all(first).expect("first bytes");
    local
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    listen.signal("CONT");
    local
}

/// The address `connect --listen` logged it listens on.
fn listening_on(listen: &Proc) -> SocketAddr {
    listen
        .wait_line("listening on")
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("address")
        .parse()
        .expect("socket address")
}

/// A rendezvous server stand-in for `connect --listen`, which may connect
/// ahead of its next client (a spare) and send nothing until one comes.
struct Standin {
    listener: TcpListener,
    /// Accepted, nothing received yet.
    quiet: Vec<TcpStream>,
}

impl Standin {
    fn bind() -> Standin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind rendezvous stand-in");
        listener.set_nonblocking(true).expect("nonblocking");
        Standin {
            listener,
            quiet: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("addr").port()
    }

    /// Until `pick` chooses one of the connections accepted so far, within
    /// 10 s (a panic, not a hung test, when connect never dials).
    fn until(&mut self, what: &str, pick: impl Fn(&TcpStream) -> bool) -> TcpStream {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            while let Ok((s, _)) = self.listener.accept() {
                s.set_nonblocking(true).expect("nonblocking");
                self.quiet.push(s);
            }
            if let Some(i) = self.quiet.iter().position(&pick) {
                let s = self.quiet.remove(i);
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                return s;
            }
            assert!(Instant::now() < end, "{what}: not within 10 s");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The next connection to send something.
    fn dialed(&mut self) -> TcpStream {
        self.until("connect dials and sends", |s| {
            matches!(s.peek(&mut [0u8; 1]), Ok(1))
        })
    }

    /// A connection made with nothing sent on it (yet).
    fn spare(&mut self) -> TcpStream {
        self.until("a spare connection", |s| {
            matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
    }
}

/// Nothing has arrived on `s` (beyond what was read).
fn assert_nothing_more(s: &TcpStream, what: &str) {
    s.set_nonblocking(true).expect("nonblocking");
    let got = s.peek(&mut [0u8; 16]);
    assert!(
        matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{what}: {got:?}"
    );
    s.set_nonblocking(false).expect("blocking");
}

fn read_n(s: &mut TcpStream, n: usize) -> String {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("read");
    String::from_utf8_lossy(&b).into_owned()
}

/// `connect --listen` with a triple that says `early`, and one local
/// client paired through `rv`: its first bytes came before the `+OK`.
fn paired_with_early_bytes(rv: &mut Standin) -> Proc {
    let body = format!(
        r#"{{"result":{{"host":"127.0.0.1","port":{},"cookie":"Ixyz","early":true}}}}"#,
        rv.port()
    );
    let (listen, mut dial, mut local) = listen_and_send_first(body, rv);
    assert_eq!(read_n(&mut dial, 5), "hello", "sent before the +OK");
    dial.write_all(b"+OK\nworld").expect("answer");
    assert_eq!(read_n(&mut local, 5), "world");
    listen
}

/// Our registrar's lookup says `early`: the local client's first bytes go
/// with the cookie line, before any `+OK`, and go again with the cookie
/// of a retry (a cached triple refused, looked up again).
#[test]
fn connect_listen_sends_first_bytes_with_the_cookie_when_the_triple_says_early() {
    let mut rv = Standin::bind();
    let listen = paired_with_early_bytes(&mut rv);

    // The triple is cached now; refused, it is looked up again, and the
    // first bytes go with the second cookie line too.
    let mut local = client_while_stopped(&listen, listening_on(&listen), b"again");
    let mut refused = rv.dialed();
    assert_eq!(read_line(&mut refused), "Ixyz");
    assert_eq!(read_n(&mut refused, 5), "again");
    refused.write_all(b"-ERR not registered\n").expect("refuse");
    drop(refused);
    let mut dial = rv.dialed();
    assert_eq!(read_line(&mut dial), "Ixyz");
    assert_eq!(read_n(&mut dial, 5), "again", "sent again with the retry");
    dial.write_all(b"+OK\nthere").expect("answer");
    assert_eq!(read_n(&mut local, 5), "there");
}

/// A registrar that does not say `early` (the original): nothing but the
/// cookie line before the `+OK`; the first bytes come right after it.
#[test]
fn connect_listen_waits_for_the_ok_when_the_triple_does_not_say_early() {
    let mut rv = Standin::bind();
    let body = format!(
        r#"{{"result":{{"host":"127.0.0.1","port":{},"cookie":"Ixyz"}}}}"#,
        rv.port()
    );
    let (_listen, mut dial, mut local) = listen_and_send_first(body, &mut rv);
    // The cookie line is one write: had the first bytes gone with it, they
    // would be here now.
    assert_nothing_more(&dial, "bytes before the +OK");
    dial.write_all(b"+OK\n").expect("answer");
    assert_eq!(read_n(&mut dial, 5), "hello", "sent after the +OK");
    dial.write_all(b"world").expect("reply");
    assert_eq!(read_n(&mut local, 5), "world");
}

/// While clients keep coming, `connect --listen` connects to the
/// rendezvous server ahead of the next one: after a pairing a connection
/// arrives that sends nothing, and the next client's cookie line and first
/// bytes come on it. The spare made after that one, which no client takes,
/// is closed within its age (2 s) without a byte sent.
#[test]
fn connect_listen_sends_the_next_cookie_on_a_spare_connection() {
    let mut rv = Standin::bind();
    let listen = paired_with_early_bytes(&mut rv);
    let mut spare = rv.spare();
    listen.wait_line("spare connection ready");

    let mut second = client_while_stopped(&listen, listening_on(&listen), b"again");
    assert_eq!(
        read_line(&mut spare),
        "Ixyz",
        "the cookie line, on the spare"
    );
    assert_eq!(read_n(&mut spare, 5), "again");
    spare.write_all(b"+OK\nthere").expect("answer");
    assert_eq!(read_n(&mut second, 5), "there");

    let mut unused = rv.spare();
    let made = Instant::now();
    let mut b = [0u8; 1];
    assert_eq!(
        unused.read(&mut b).expect("closed by connect"),
        0,
        "no byte sent"
    );
    assert!(
        made.elapsed() < Duration::from_secs(9),
        "{:?}",
        made.elapsed()
    );
}

/// The local client sends only once the cookie line has gone (slower than
/// connect was to look, as a TLS client building its hello may be): its
/// bytes follow at once, before any `+OK`, and go again with the cookie
/// line of a retry after a refusal.
#[test]
fn connect_listen_forwards_bytes_that_come_before_the_status() {
    let mut rv = Standin::bind();
    let listen = paired_with_early_bytes(&mut rv);
    let mut local = client_while_stopped(&listen, listening_on(&listen), b"");
    let mut dial = rv.dialed();
    assert_eq!(read_line(&mut dial), "Ixyz");
    assert_nothing_more(&dial, "nothing was sent yet");
    local.write_all(b"later").expect("first bytes");
    assert_eq!(read_n(&mut dial, 5), "later", "followed before any status");
    dial.write_all(b"-ERR not registered\n").expect("refuse");
    drop(dial);
    let mut dial = rv.dialed();
    assert_eq!(read_line(&mut dial), "Ixyz");
    assert_eq!(read_n(&mut dial, 5), "later", "sent again with the retry");
    dial.write_all(b"+OK\nanswer").expect("answer");
    assert_eq!(read_n(&mut local, 6), "answer");
    local.write_all(b"more").expect("relayed");
    assert_eq!(read_n(&mut dial, 4), "more");
}
