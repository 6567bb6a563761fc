//! `make soak-cluster` (not in `make test`): the soak spread over three
//! `rendezvousd` nodes on one Redis store, with links between them. Two
//! `expose` agents (generic and HTTP-specific), each given all three
//! registrars, serve an in-test echo; `SOAK_PAIRS` pairs (default 1,000),
//! 24 at a time, each arriving at a node in turn, move 1 KiB to 256 KiB
//! both ways checked by SHA-256. When half are done, the nodes where the
//! agents wait (one or two of the three) are killed with `kill -9`. Pairs
//! caught by the kill are counted as broken, not as mismatches; the table
//! gives pairs, bytes, mismatches, and the recovery time of each protocol
//! (kill to the first pair through a live node), and the run fails on a
//! mismatch, or on a failure before the kill or of an attempt started
//! more than [`SETTLE`] after it.

use super::support::*;
use super::{spawn, tcp};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use uuid::Uuid;

const CONCURRENCY: usize = 24;

/// After the kill, failures are expected for this long: the dead nodes'
/// leases (5 s) and the agents' backoff before they refresh (three failed
/// dials, 0.5 to 7 s) and park at a live node.
const SETTLE: Duration = Duration::from_secs(20);

/// A node process: its registrar and rendezvous addresses.
struct Node {
    proc: Proc,
    reg: SocketAddr,
}

fn start_node(redis: &RedisServer, state: &Path, id: &str, secret: &Path) -> Node {
    let secret = secret.to_str().expect("utf-8 path");
    let extra = [
        "--pair-timeout",
        "20",
        "--peer-listen",
        "127.0.0.1:0",
        "--cluster-secret-file",
        secret,
    ];
    let proc = Proc::spawn(id, node_command(&redis.url(), state, id, 5, &extra));
    let reg = proc.listening("registrar");
    proc.listening("rendezvous");
    Node { proc, reg }
}

/// The echo behind both agents: for HTTP, the request head is answered
/// `200` first (a `Content-Length`-free tunnel: the body is the stream);
/// then every byte is echoed until end of file, and the write side closed.
fn echo_service() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = spawn("echo", move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                let mut first = [0u8; 1];
                if s.peek(&mut first).is_ok() && first[0] == b'P' {
                    let head = read_head(&mut s);
                    if !head.starts_with("POST") {
                        return;
                    }
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                }
                let mut r = match s.try_clone() {
                    Ok(r) => r,
                    Err(_) => return,
                };
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// The triple a lookup at `reg` answers, as JSON; why not, on any failure.
fn lookup(reg: SocketAddr, uuid: Uuid) -> Result<serde_json::Value, String> {
    let mut s = tcp(reg).map_err(|e| format!("connect registrar: {e}"))?;
    write!(
        s,
        "GET /?uuid={uuid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send lookup: {e}"))?;
    let r = rendezvous::wire::read_response(&mut s).map_err(|e| format!("lookup: {e}"))?;
    if r.status != 200 {
        return Err(format!("lookup {}", r.status));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("lookup body: {e}"))?;
    Ok(v["result"].clone())
}

/// One pair through the registrar at `reg`: `Ok(bytes moved)`, or why it
/// failed; a mismatch is flagged apart.
fn one_pair(reg: SocketAddr, uuid: Uuid, http: bool, seed: u64) -> Result<u64, (bool, String)> {
    let fail = |e: String| Err((false, e));
    let len = 1024 + (seed.wrapping_mul(2_654_435_761) % (255 * 1024)) as usize;
    let mut data = pseudo_random(len, seed);
    // The echo tells an HTTP request by its first byte.
    data[0] = b'G';
    let mut s = if http {
        let mut s = match tcp(reg) {
            Ok(s) => s,
            Err(e) => return fail(format!("connect registrar: {e}")),
        };
        let auth = data_encoding::BASE64.encode(format!("{uuid}:").as_bytes());
        if let Err(e) = write!(
            s,
            "POST /soak HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n"
        ) {
            return fail(format!("send head: {e}"));
        }
        let head = read_head(&mut s);
        if !head.starts_with("HTTP/1.1 200") {
            return fail(format!("answer {:?}", head.lines().next().unwrap_or("")));
        }
        s
    } else {
        let t = match lookup(reg, uuid) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let at = format!(
            "{}:{}",
            t["host"].as_str().unwrap_or(""),
            t["port"].as_u64().unwrap_or(0)
        );
        let Ok(addr) = at.parse::<SocketAddr>() else {
            return fail(format!("triple {at}"));
        };
        let mut s = match tcp(addr) {
            Ok(s) => s,
            Err(e) => return fail(format!("connect {at}: {e}")),
        };
        let _ = writeln!(s, "{}", t["cookie"].as_str().unwrap_or(""));
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).map(|n| n == 1).unwrap_or(false) && b[0] != b'\n' {
            line.push(b[0]);
        }
        if line != b"+OK" {
            return fail(format!("status {:?}", String::from_utf8_lossy(&line)));
        }
        s
    };
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(e) => return fail(e.to_string()),
    };
    let sent = data.clone();
    let writer = thread::spawn(move || {
        let ok = w.write_all(&sent).is_ok();
        let _ = w.shutdown(std::net::Shutdown::Write);
        ok
    });
    let mut back = Vec::with_capacity(len);
    let read = s.read_to_end(&mut back);
    let wrote = writer.join().unwrap_or(false);
    if let Err(e) = read {
        return fail(format!("read: {e} after {} of {len}", back.len()));
    }
    if !wrote || back.len() != len {
        return fail(format!("{} of {len} bytes back", back.len()));
    }
    if sha256(&back) != sha256(&data) {
        return Err((true, format!("SHA-256 mismatch, {len} bytes")));
    }
    Ok(2 * len as u64)
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    bytes: AtomicU64,
    broken: AtomicU64,
    mismatches: AtomicU64,
    late: Mutex<Vec<String>>,
}

#[test]
#[ignore = "make soak-cluster"]
fn soak_cluster() {
    let pairs: usize = std::env::var("SOAK_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let redis = RedisServer::start();
    let dir = TempDir::new("soak-cluster");
    let secret = dir.join("cluster.secret");
    std::fs::write(
        &secret,
        "the soak's cluster secret, thirty-two bytes or more",
    )
    .expect("secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // Users first: a node reads the table at start (and a raw HSET
    // announces nothing).
    let (generic, http) = (Uuid::new_v4(), Uuid::new_v4());
    for u in [generic, http] {
        let line = format!("{u} {SECRET_B32} 30 6 soak");
        redis.command(&["HSET", "rdv:users", &u.to_string(), &line]);
    }
    let ids = ["c1", "c2", "c3"];
    let states: Vec<TempDir> = ids.iter().map(|id| TempDir::new(id)).collect();
    let mut nodes: Vec<Option<Node>> = ids
        .iter()
        .zip(&states)
        .map(|(id, st)| Some(start_node(&redis, st.path(), id, &secret)))
        .collect();
    let regs: Vec<SocketAddr> = nodes.iter().flatten().map(|n| n.reg).collect();
    let secret_file = dir.join("totp");
    std::fs::write(&secret_file, SECRET_B32).expect("totp secret");
    let echo = echo_service();
    let agent = |uuid: Uuid, proto: &str| {
        let mut c = rendezvous();
        c.args([
            "expose",
            "--protocol",
            proto,
            "--pool",
            "8",
            "--uuid",
            &uuid.to_string(),
            "--to",
            &echo.to_string(),
        ]);
        for r in &regs {
            c.args(["--server", &format!("http://{r}")]);
        }
        c.arg("--secret-file")
            .arg(&secret_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Proc::spawn(&format!("expose-{proto}"), c)
    };
    let agents = [agent(generic, "generic"), agent(http, "http")];
    for a in &agents {
        a.wait_line("registered uuid=");
    }
    wait_until("both protocols answer", || {
        one_pair(regs[0], generic, false, 1).is_ok() && one_pair(regs[1], http, true, 2).is_ok()
    });

    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicUsize::new(0));
    let killed: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    // Per protocol (generic, HTTP), since the kill: the first pair through
    // and the end of the last failed attempt.
    let first_ok: Arc<[Mutex<Option<Duration>>; 2]> =
        Arc::new([Mutex::new(None), Mutex::new(None)]);
    let last_fail: Arc<[Mutex<Option<Duration>>; 2]> =
        Arc::new([Mutex::new(None), Mutex::new(None)]);
    let live: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(regs.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    // The second half of the pairs waits for the kill to be done.
    let released = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let released = released.clone();
            let (tally, next, killed, first_ok, last_fail, live, stop) = (
                tally.clone(),
                next.clone(),
                killed.clone(),
                first_ok.clone(),
                last_fail.clone(),
                live.clone(),
                stop.clone(),
            );
            spawn("soak-pair", move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= pairs || stop.load(Ordering::Relaxed) {
                    return;
                }
                // The second half starts once the kill is done.
                while k >= pairs / 2 && !released.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_millis(10));
                }
                let http_pair = k % 2 == 1;
                let p = usize::from(http_pair);
                let uuid = if http_pair { http } else { generic };
                // A pair is tried again, at the next live node, until it
                // gets through: the count is of pairs made.
                for attempt in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let reg = {
                        let l = live.lock().expect("live");
                        l[(k / 2 + w + attempt) % l.len()]
                    };
                    let since_kill = *killed.lock().expect("killed");
                    match one_pair(reg, uuid, http_pair, 1000 + k as u64) {
                        Ok(n) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            tally.bytes.fetch_add(n, Ordering::Relaxed);
                            if let Some(t) = since_kill {
                                first_ok[p]
                                    .lock()
                                    .expect("first")
                                    .get_or_insert_with(|| t.elapsed());
                            }
                            break;
                        }
                        Err((mismatch, why)) => {
                            if mismatch {
                                tally.mismatches.fetch_add(1, Ordering::Relaxed);
                            }
                            tally.broken.fetch_add(1, Ordering::Relaxed);
                            let now_killed = *killed.lock().expect("killed");
                            if let Some(t) = now_killed {
                                *last_fail[p].lock().expect("last") = Some(t.elapsed());
                            }
                            // Expected only of a pair the kill caught, or one
                            // tried before the lease and the agents' backoff
                            // could have moved it.
                            let late = now_killed.is_none()
                                || since_kill.is_some_and(|t| t.elapsed() > SETTLE);
                            if late {
                                tally
                                    .late
                                    .lock()
                                    .expect("late")
                                    .push(format!("pair {k} at {reg}: {why}"));
                            }
                            thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
            .expect("worker")
        })
        .collect();

    // Half the pairs started (some still running: the kill catches them).
    wait_until("half the pairs started", || {
        next.load(Ordering::Relaxed) >= pairs / 2
    });
    // The nodes where the agents wait, as the store says.
    let holders = |uuid: Uuid, p: char| {
        redis.command(&["ZRANGE", &format!("rdv:{{{uuid}}}:held:{p}"), "0", "-1"])
    };
    let (g, h) = (holders(generic, 'g'), holders(http, 'h'));
    let victims: Vec<usize> = (0..ids.len())
        .filter(|&i| g.contains(ids[i]) || h.contains(ids[i]))
        .collect();
    assert!(
        !victims.is_empty() && victims.len() < ids.len(),
        "holders: {g:?} {h:?}"
    );
    *killed.lock().expect("killed") = Some(Instant::now());
    for &v in &victims {
        let dead = nodes[v].take().expect("victim");
        dead.proc.signal("KILL");
        live.lock().expect("live").retain(|r| *r != dead.reg);
    }
    released.store(true, Ordering::Release);

    let end = Instant::now() + Duration::from_secs(600);
    for h in workers {
        while !h.is_finished() && Instant::now() < end {
            thread::sleep(Duration::from_millis(50));
        }
        if !h.is_finished() {
            stop.store(true, Ordering::Relaxed);
        }
        let _ = h.join();
    }
    let secs = |m: &Mutex<Option<Duration>>| {
        m.lock()
            .expect("time")
            .map_or("none".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
    };
    let named: Vec<&str> = victims.iter().map(|&v| ids[v]).collect();
    eprintln!("soak-cluster: three nodes (lease 5 s), {CONCURRENCY} pairs at a time, kill -9 at half of {named:?} (where the agents waited)");
    eprintln!("  pairs ok          {}", tally.ok.load(Ordering::Relaxed));
    eprintln!(
        "  attempts failed   {} (pairs the kill caught, or tried before the agents moved; each tried again)",
        tally.broken.load(Ordering::Relaxed)
    );
    eprintln!(
        "  bytes checked     {}",
        tally.bytes.load(Ordering::Relaxed)
    );
    eprintln!(
        "  mismatches        {}",
        tally.mismatches.load(Ordering::Relaxed)
    );
    for (i, name) in ["generic", "http"].iter().enumerate() {
        eprintln!(
            "  recovery {name:<8} first pair through {} after the kill, last failed attempt {}",
            secs(&first_ok[i]),
            secs(&last_fail[i])
        );
    }
    let late = tally.late.lock().expect("late");
    assert_eq!(
        tally.mismatches.load(Ordering::Relaxed),
        0,
        "no byte may be wrong"
    );
    assert!(
        late.is_empty(),
        "failures before the kill or {} s after it:\n{}",
        SETTLE.as_secs(),
        late.join("\n")
    );
    assert!(
        first_ok.iter().all(|r| r.lock().expect("first").is_some()),
        "both protocols recovered"
    );
}
