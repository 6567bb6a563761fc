//! The HTTP-specific protocol across three nodes on one store (a real
//! `redis-server` on a private Unix socket), over real TLS: a mobile
//! request landing on a node that holds no `CONNECT` of the UUID is
//! forwarded over the peer link to the node that does, never redirected.
//! curl with a body both ways (SHA-256), a WebSocket through node 3 to a
//! `CONNECT` parked on node 1, a link request from outside the cluster
//! refused, and 404 when no node holds the UUID.

mod support;

use rendezvous::tls::{self, ClientStream, Trust};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::*;
use uuid::Uuid;

const SECRET: &[u8] = b"a cluster secret of at least thirty-two bytes";

/// A TLS node on `redis` with the user `uuid` (a new one for `None`) and
/// the cluster's peer link.
fn node(redis: &RedisServer, uuid: Option<Uuid>) -> TestServer {
    TestServer::start(Opts {
        plaintext: false,
        store: Some(redis.url()),
        uuid,
        node_ttl: Duration::from_secs(3),
        cluster_secret: Some(SECRET.to_vec()),
        ..Opts::default()
    })
}

fn cert(ts: &TestServer) -> PathBuf {
    ts.dir.join("cert.pem")
}

fn tls_connect(ts: &TestServer) -> ClientStream {
    let cfg = tls::client_config(&Trust::Ca(cert(ts))).expect("client config");
    tls::connect(
        connect(ts.registrar()),
        cfg,
        "127.0.0.1",
        Instant::now() + IO_TIMEOUT,
    )
    .expect("handshake")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The bytes the upstream answers a POST with.
fn reply_body() -> Vec<u8> {
    pseudo_random(300 * 1024, 77)
}

/// A hidden web server: a WebSocket upgrade is answered 101 and its frames
/// echoed (small, unfragmented); any other request gets its body's SHA-256
/// in `X-Body-Sha256` and [`reply_body`].
fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let head = read_head(&mut s);
                if header(&head, "upgrade").is_some() {
                    let key = header(&head, "sec-websocket-key").unwrap_or("").to_string();
                    let digest = ring::digest::digest(
                        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
                    );
                    let accept = data_encoding::BASE64.encode(digest.as_ref());
                    let _ = write!(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
                    loop {
                        let mut h = [0u8; 2];
                        let mut mask = [0u8; 4];
                        if s.read_exact(&mut h).is_err() || s.read_exact(&mut mask).is_err() {
                            return;
                        }
                        let mut payload = vec![0u8; (h[1] & 0x7f) as usize];
                        if s.read_exact(&mut payload).is_err() {
                            return;
                        }
                        for (i, b) in payload.iter_mut().enumerate() {
                            *b ^= mask[i % 4];
                        }
                        let mut frame = vec![h[0], payload.len() as u8];
                        frame.extend_from_slice(&payload);
                        if s.write_all(&frame).is_err() {
                            return;
                        }
                    }
                }
                let len: usize = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if s.read_exact(&mut body).is_err() {
                    return;
                }
                let hex = data_encoding::HEXLOWER.encode(&sha256(&body));
                let reply = reply_body();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nX-Body-Sha256: {hex}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    reply.len()
                );
                let _ = s.write_all(&reply);
            });
        }
    });
    addr
}

/// curl at `ts` with Basic credentials naming the UUID, POSTing `body`:
/// (exit code, the response head, the response body).
fn curl_post(ts: &TestServer, body: &[u8], tag: &str) -> (i32, String, Vec<u8>) {
    let data = ts.dir.join(&format!("up-{tag}"));
    let (head, out) = (
        ts.dir.join(&format!("head-{tag}")),
        ts.dir.join(&format!("down-{tag}")),
    );
    std::fs::write(&data, body).expect("write body");
    let url = format!("https://127.0.0.1:{}/upload", ts.registrar().port());
    let o = Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "30",
            "-u",
            &format!("{}:", ts.uuid),
            "--cacert",
        ])
        .arg(cert(ts))
        .arg("--data-binary")
        .arg(format!("@{}", data.display()))
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&out)
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let code = o.status.code().unwrap_or(-1);
    assert_eq!(code, 0, "curl: {}", String::from_utf8_lossy(&o.stderr));
    (
        code,
        std::fs::read_to_string(&head).unwrap_or_default(),
        std::fs::read(&out).unwrap_or_default(),
    )
}

/// An agent parked on node 1 only: curl at nodes 2 and 3 (and 1) gets
/// through, its request body and the answer checked by SHA-256; a WebSocket
/// opened at node 3 echoes through node 1; the forwarding counts on both
/// sides' metrics, each labelled with its node.
#[test]
fn http_clients_at_any_node_reach_a_connect_parked_on_another() {
    let redis = RedisServer::start();
    let n1 = node(&redis, None);
    let n2 = node(&redis, Some(n1.uuid));
    let n3 = node(&redis, Some(n1.uuid));
    avoid_step_edge();
    let _agent = expose_http(&n1, upstream(), 3);
    let up = pseudo_random(200 * 1024, 5);
    for (i, ts) in [&n2, &n3, &n1, &n2].into_iter().enumerate() {
        let (_, head, down) = curl_post(ts, &up, &i.to_string());
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        let want = data_encoding::HEXLOWER.encode(&sha256(&up));
        assert_eq!(
            header(&head, "x-body-sha256"),
            Some(want.as_str()),
            "request {i}: the body up"
        );
        assert_eq!(
            sha256(&down),
            sha256(&reply_body()),
            "request {i}: the body down"
        );
    }

    let mut m = tls_connect(&n3);
    write!(
        m,
        "GET /chat?uuid={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        n1.uuid
    )
    .expect("send");
    let head = read_head(&mut m);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    for msg in ["hello across nodes", "frames flow both ways"] {
        let mask = [9u8, 8, 7, 6];
        let mut frame = vec![0x81, 0x80 | msg.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(msg.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        m.write_all(&frame).expect("send frame");
        let mut h = [0u8; 2];
        m.read_exact(&mut h).expect("frame head");
        let mut payload = vec![0u8; (h[1] & 0x7f) as usize];
        m.read_exact(&mut payload).expect("payload");
        assert_eq!(payload, msg.as_bytes());
    }
    drop(m);

    let page = |ts: &TestServer| ts.server().shared().metrics_page();
    let id = |ts: &TestServer| {
        ts.server()
            .shared()
            .node
            .as_ref()
            .map(|n| n.id.clone())
            .unwrap_or_default()
    };
    let (p1, p2, p3) = (page(&n1), page(&n2), page(&n3));
    let served = format!(
        "rendezvous_peer_links_total{{node=\"{}\",result=\"served\"}} 4",
        id(&n1)
    );
    assert!(
        p1.contains(&served),
        "node 1 served three requests and a WebSocket:\n{p1}"
    );
    let forwarded = format!(
        "rendezvous_peer_links_total{{node=\"{}\",result=\"forwarded\"}} 2",
        id(&n2)
    );
    assert!(p2.contains(&forwarded), "node 2 forwarded two:\n{p2}");
    assert!(
        p3.contains(&format!("{{node=\"{}\",result=\"forwarded\"}} 2", id(&n3))),
        "node 3 forwarded two:\n{p3}"
    );
}

/// A link request without the cluster's secret is refused and counted; the
/// link's TLS proves the cluster key (a node with another secret cannot
/// pose as one); with no node holding the UUID and no registration at the
/// node asked, a mobile request gets 404 at once, not after the pair
/// timeout (a slot held, and the store polled, for nothing).
#[test]
fn links_outside_the_cluster_are_refused_and_nobody_holding_is_404() {
    let redis = RedisServer::start();
    let n1 = node(&redis, None);
    let n2 = TestServer::start(Opts {
        plaintext: false,
        store: Some(redis.url()),
        uuid: Some(n1.uuid),
        pair_timeout: Duration::from_secs(60),
        cluster_secret: Some(SECRET.to_vec()),
        ..Opts::default()
    });
    let peer = n1.server().peer_addr().expect("a peer listener");

    // Another cluster's keys: its TLS handshake fails (the key is not ours).
    let other = rendezvous::server::peer::keys::ClusterKeys::from_secret(
        b"another cluster's secret, 32 bytes or more",
    )
    .expect("keys");
    let refused = tls::connect(
        connect(peer),
        other.client.clone(),
        "rendezvous-cluster",
        Instant::now() + IO_TIMEOUT,
    );
    assert!(
        refused.is_err(),
        "a client pinned to another key refuses our listener"
    );

    // Our key but a forged tag: the request is refused without an answer.
    let ours = rendezvous::server::peer::keys::ClusterKeys::from_secret(SECRET).expect("keys");
    let mut s = tls::connect(
        connect(peer),
        ours.client.clone(),
        "rendezvous-cluster",
        Instant::now() + IO_TIMEOUT,
    )
    .expect("handshake");
    let mut req = rendezvous::server::peer::wire::request(
        &other,
        &n1.uuid,
        Duration::from_secs(1),
        b"GET / HTTP/1.1\r\n\r\n",
    );
    s.write_all(&req).expect("send");
    let mut got = Vec::new();
    s.sock.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "no answer to a forged request");
    wait_until("the refusal counted", || {
        n1.server()
            .shared()
            .metrics_page()
            .contains("result=\"refused\"} 1")
    });

    // An authentic request for a UUID parked nowhere: not ready.
    req = rendezvous::server::peer::wire::request(
        &ours,
        &n1.uuid,
        Duration::from_secs(1),
        b"GET / HTTP/1.1\r\n\r\n",
    );
    let mut s = tls::connect(
        connect(peer),
        ours.client.clone(),
        "rendezvous-cluster",
        Instant::now() + IO_TIMEOUT,
    )
    .expect("handshake");
    s.write_all(&req).expect("send");
    assert_eq!(read_head_line(&mut s), "-ERR not ready");

    let mut m = tls_connect(&n2);
    let auth = data_encoding::BASE64.encode(format!("uuid:{}", n1.uuid).as_bytes());
    write!(
        m,
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n"
    )
    .expect("send");
    let asked = Instant::now();
    let head = read_head(&mut m);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "404 at once, not after the 60 s pair timeout: {:?}",
        asked.elapsed()
    );
}

/// One line, without its newline.
fn read_head_line(s: &mut ClientStream) -> String {
    s.sock.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).map(|n| n == 1).unwrap_or(false) && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}
