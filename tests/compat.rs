//! Our clients against a registrar that frames and answers as the original
//! node-rendezvous does (written from the protocol, not from its code):
//! JSON bodies in the chunked coding on a keep-alive connection that it
//! does not close, and errors answered 200 with an `error` member.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
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
