//! `--cluster-only`: the HTTP-specific protocol on two nodes sharing a
//! Redis store. A request served where its hidden server's `CONNECT` waits
//! (local) against one that lands on the other node and is forwarded over
//! the peer link, alternated in one run: the setup latency of each (TCP
//! connect to the registrar through the whole response, plain HTTP
//! registrar so TLS to the client weighs the same on both paths), and the
//! store round trips each path costs.

use super::{pct, start_server, Report, Server, UUID};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::{read_head, RedisServer, SECRET_B32};

use super::support;

/// Round trips the store has served so far: every operation of the
/// server is one script (`EVALSHA`, or `EVAL` after a restart of the
/// store), and `INFO commandstats` counts the commands a script runs apart,
/// so the scripts are what is counted.
fn store_calls(con: &mut redis::Connection) -> i64 {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .unwrap_or_default();
    support::commandstats_calls(&text, |c| c == "evalsha" || c == "eval")
}

/// A parked `CONNECT` at `reg` with `query`; the `Rendezvous-Cookie` of
/// its 200, and the connection.
fn connect_park(reg: SocketAddr, query: &str) -> Option<(String, TcpStream)> {
    let mut s = TcpStream::connect(reg).ok()?;
    let _ = s.set_nodelay(true);
    write!(s, "CONNECT uuid:{UUID}?{query} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let head = read_head(&mut s);
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let cookie = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("rendezvous-cookie")
            .then(|| v.trim().to_string())
    })?;
    Some((cookie, s))
}

/// Keeps `depth` `CONNECT`s parked at `reg` with `cookie`; each answers
/// the request it gets with a 2-byte body and closes.
fn hidden_pool(
    reg: SocketAddr,
    cookie: String,
    depth: usize,
    stop: Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<()>> {
    (0..depth)
        .map(|_| {
            let (cookie, stop) = (cookie.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some((_, mut s)) = connect_park(reg, &format!("cookie={cookie}")) else {
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let head = loop {
                        let h = read_head(&mut s);
                        if !h.is_empty() || stop.load(Ordering::Relaxed) {
                            break h;
                        }
                    };
                    if head.is_empty() {
                        return;
                    }
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                }
            })
        })
        .collect()
}

/// One request at `reg`, from connect to the whole response; its time in
/// microseconds, `None` when it did not get the 200.
fn one_request(reg: SocketAddr, auth: &str) -> Option<f64> {
    let t = Instant::now();
    let mut s = TcpStream::connect(reg).ok()?;
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n"
    )
    .ok()?;
    let head = read_head(&mut s);
    let mut body = [0u8; 2];
    s.read_exact(&mut body).ok()?;
    (head.starts_with("HTTP/1.1 200") && &body == b"ok").then(|| t.elapsed().as_secs_f64() * 1e6)
}

/// A node process on `redis`.
fn node(dir: &Path, redis: &RedisServer, id: &str, secret: &Path) -> Server {
    let url = redis.url();
    let extra = [
        "--store",
        url.as_str(),
        "--public-host",
        "127.0.0.1",
        "--node-id",
        id,
        "--peer-listen",
        "127.0.0.1:0",
        "--cluster-secret-file",
        secret.to_str().unwrap_or(""),
    ];
    start_server(dir, false, &extra)
}

/// The phase: two nodes, a pool of `CONNECT`s at node A, requests at A
/// (local) and at B (forwarded), alternated.
pub fn cluster_rows(quick: bool, dir: &Path, rep: &mut Report) {
    let redis = RedisServer::start();
    let line = format!("{UUID} {SECRET_B32} 30 6 bench");
    support::redis_command(&redis.socket(), &["HSET", "rdv:users", UUID, &line]);
    let secret = dir.join("cluster.secret");
    std::fs::write(&secret, "a cluster secret for the benchmark, long enough").expect("secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let a = node(dir, &redis, "bench-a", &secret);
    let b = node(dir, &redis, "bench-b", &secret);
    let Some((cookie, first)) = connect_park(a.registrar, &format!("response={}", a.next_token()))
    else {
        rep.rows
            .push(("cluster".into(), "CONNECT refused".into(), String::new()));
        return;
    };
    drop(first);
    let stop = Arc::new(AtomicBool::new(false));
    let pool = hidden_pool(a.registrar, cookie, 8, stop.clone());
    let auth = data_encoding::BASE64.encode(format!("{UUID}:").as_bytes());
    // Warm: node A announced its pool, both paths answer.
    let warm = Instant::now() + Duration::from_secs(10);
    while one_request(b.registrar, &auth).is_none() && Instant::now() < warm {
        thread::sleep(Duration::from_millis(50));
    }
    let mut con = match redis::Client::open(redis.url()).and_then(|c| c.get_connection()) {
        Ok(c) => c,
        Err(e) => {
            rep.rows
                .push(("cluster".into(), format!("store: {e}"), String::new()));
            return;
        }
    };
    let n = if quick { 200 } else { 1000 };
    let (mut local, mut forwarded) = (Vec::new(), Vec::new());
    let (mut local_calls, mut forwarded_calls) = (0, 0);
    for k in 0..n {
        let (reg, out, calls) = if k % 2 == 0 {
            (a.registrar, &mut local, &mut local_calls)
        } else {
            (b.registrar, &mut forwarded, &mut forwarded_calls)
        };
        let c0 = store_calls(&mut con);
        if let Some(us) = one_request(reg, &auth) {
            out.push(us);
        }
        // The hidden side parks a new CONNECT (a cookie renewal, one round
        // trip): counted with the request that used the one before.
        thread::sleep(Duration::from_millis(20));
        *calls += store_calls(&mut con) - c0;
    }
    stop.store(true, Ordering::Relaxed);
    for h in pool {
        let _ = h.join();
    }
    let (nl, nf) = (local.len(), forwarded.len());
    let (l50, f50) = (pct(&mut local, 0.5), pct(&mut forwarded, 0.5));
    let (l99, f99) = (pct(&mut local, 0.99), pct(&mut forwarded, 0.99));
    rep.add("cluster_http_local_p50_us", "cluster: HTTP request served at the holding node, p50", l50, "us",
        format!("{nl} requests; p99 {l99:.0} us; {:.2} store round trips each (the hidden side's re-park, one cookie renewal, and heartbeats included)", local_calls as f64 / nl.max(1) as f64));
    rep.add("cluster_http_forwarded_p50_us", "cluster: HTTP request forwarded from another node, p50", f50, "us",
        format!("{nf} requests; p99 {f99:.0} us; {:.2} store round trips each (the same, and the holder lookup)", forwarded_calls as f64 / nf.max(1) as f64));
    rep.add(
        "cluster_http_forwarded_over_local",
        "cluster: forwarded / local setup, p50",
        f50 / l50,
        "x",
        "the link's TCP and TLS 1.3 handshake and the holder lookup".into(),
    );
}
