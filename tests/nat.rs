//! Liveness behind NATs that drop connections silently, tested with real
//! silence: three network namespaces of the test's own — the hidden side
//! (`expose` and its local service), a NAT (nftables masquerade, conntrack
//! that does not pick up mid-stream packets) and the server side
//! (`rendezvousd` and the mobile clients) — and nftables rules in the NAT
//! that drop packets without a FIN or an RST:
//!
//! * *forget*: every connection that exists now is dropped from now on, in
//!   both directions, while new ones pass (a carrier NAT that lost its
//!   mappings);
//! * *blackhole*: everything is dropped (the hidden side vanished);
//! * the NAT's idle timeout: conntrack forgets an established flow after
//!   60 s without a packet, as common NATs do.
//!
//! Needs root, iproute2 and nftables; fails with the install command when
//! they are missing. Each test removes its namespaces (and so its rules).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const REGISTRAR: &str = "10.2.0.2:8898";
const RENDEZVOUS: &str = "10.2.0.2:8899";
const METRICS: &str = "127.0.0.1:9100";

fn need_nft() {
    match Command::new("nft").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("this test needs nft(8): apt-get install -y nftables"),
    }
}

/// hidden (10.1.0.2) -- NAT (10.1.0.1 | 10.2.0.1, masquerade) -- server (10.2.0.2)
struct Topology {
    server: Netns,
    nat: Netns,
    hidden: Netns,
    /// The mark new connections get; the current *forget* generation.
    generation: u32,
}

impl Topology {
    /// The three namespaces, wired and routed; the NAT forgets an idle
    /// established flow after `nat_idle`.
    fn new(tag: &str, nat_idle: Duration) -> Topology {
        need_nft();
        let server = Netns::new(&format!("{tag}s"));
        let nat = Netns::new(&format!("{tag}n"));
        let hidden = Netns::new(&format!("{tag}h"));
        hidden.ip(&[
            "link", "add", "name", "wan", "type", "veth", "peer", "name", "lan", "netns", &nat.name,
        ]);
        nat.ip(&[
            "link",
            "add",
            "name",
            "wan",
            "type",
            "veth",
            "peer",
            "name",
            "lan",
            "netns",
            &server.name,
        ]);
        hidden.ip(&["addr", "add", "10.1.0.2/24", "dev", "wan"]);
        hidden.ip(&["link", "set", "wan", "up"]);
        hidden.ip(&["route", "add", "default", "via", "10.1.0.1"]);
        nat.ip(&["addr", "add", "10.1.0.1/24", "dev", "lan"]);
        nat.ip(&["addr", "add", "10.2.0.1/24", "dev", "wan"]);
        nat.ip(&["link", "set", "lan", "up"]);
        nat.ip(&["link", "set", "wan", "up"]);
        server.ip(&["addr", "add", "10.2.0.2/24", "dev", "lan"]);
        server.ip(&["link", "set", "lan", "up"]);
        let sysctl = |ns: &Netns, key: &str, value: &str| {
            ns.exec(&["sh", "-c", &format!("echo {value} > /proc/sys/{key}")]);
        };
        sysctl(&nat, "net/ipv4/ip_forward", "1");
        let ruleset = "table inet rdv {
            chain post { type nat hook postrouting priority srcnat; oifname \"wan\" masquerade; }
            chain flows { type filter hook forward priority filter; policy accept; }
            chain local { type filter hook input priority filter; policy drop; }
        }\n";
        let file = std::env::temp_dir().join(format!("{}.nft", nat.name));
        std::fs::write(&file, ruleset).expect("write ruleset");
        nat.exec(&["nft", "-f", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(&file);
        // Conntrack exists in the namespace once a rule uses it: now its
        // settings. Mid-stream packets of a forgotten flow are invalid, not
        // picked up as a new flow.
        sysctl(&nat, "net/netfilter/nf_conntrack_tcp_loose", "0");
        sysctl(
            &nat,
            "net/netfilter/nf_conntrack_tcp_timeout_established",
            &nat_idle.as_secs().to_string(),
        );
        let mut t = Topology {
            server,
            nat,
            hidden,
            generation: 0,
        };
        t.forget();
        t
    }

    /// From now on every connection that exists is dropped silently, both
    /// ways; connections opened later pass.
    fn forget(&mut self) {
        self.forget_where(&[]);
    }

    /// From now on the packets the hidden side sends on every connection
    /// that exists are dropped silently (its ACKs among them); the server's
    /// still arrive, and connections opened later pass both ways.
    fn forget_uplink(&mut self) {
        self.forget_where(&["iifname", "lan"]);
    }

    /// Drop the packets of existing connections that match `only` too.
    fn forget_where(&mut self, only: &[&str]) {
        self.generation += 1;
        let g = self.generation.to_string();
        self.nat
            .exec(&["nft", "flush", "chain", "inet", "rdv", "flows"]);
        let old = [only, &["ct", "mark", "!=", &g, "counter", "drop"]].concat();
        for rule in [
            vec!["ct", "state", "invalid", "counter", "drop"],
            vec!["ct", "state", "new", "ct", "mark", "set", &g],
            old,
            vec!["counter", "accept"],
        ] {
            let mut args = vec!["nft", "add", "rule", "inet", "rdv", "flows"];
            args.extend(rule);
            self.nat.exec(&args);
        }
    }

    /// Drop everything, new connections too.
    fn blackhole(&self) {
        self.nat
            .exec(&["nft", "insert", "rule", "inet", "rdv", "flows", "drop"]);
    }

    /// Bytes the NAT forwarded (the `accept` counter of the flows chain).
    fn forwarded_bytes(&self) -> u64 {
        let text = self
            .nat
            .exec(&["nft", "list", "chain", "inet", "rdv", "flows"]);
        text.lines()
            .filter(|l| l.contains("accept") && l.contains("counter"))
            .filter_map(|l| l.split("bytes ").nth(1))
            .filter_map(|r| r.split_whitespace().next())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    }
}

/// The agents' `--keepalive` in the drop tests: 3 s keeps `make test`
/// short; `NAT_TEST_KEEPALIVE=25` measures the defaults.
fn agent_keepalive() -> String {
    std::env::var("NAT_TEST_KEEPALIVE").unwrap_or_else(|_| "3".into())
}

/// A local service in the hidden namespace: `echo` echoes; otherwise it
/// answers one HTTP request per connection with a 200 naming the path.
/// Stops (its thread ends) when dropped.
struct Service {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    closed: Arc<std::sync::Mutex<Vec<Instant>>>,
    /// What each connection brought, in the order they were accepted.
    received: Received,
}

type Received = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

impl Service {
    fn start(ns: &Netns, echo: bool) -> Service {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let received = Received::default();
        let name = ns.name.clone();
        let (stop2, closed2, received2) = (stop.clone(), closed.clone(), received.clone());
        thread::spawn(move || {
            Netns::enter_named(&name);
            let l = TcpListener::bind("127.0.0.1:0").expect("bind service");
            l.set_nonblocking(true).expect("nonblocking");
            tx.send(l.local_addr().expect("addr")).expect("send addr");
            while !stop2.load(Ordering::Acquire) {
                let Ok((s, _)) = l.accept() else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let (closed, stop) = (closed2.clone(), stop2.clone());
                let received = received2.clone();
                thread::spawn(move || serve_one(s, echo, &stop, &closed, &received));
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("service up");
        Service {
            addr,
            stop,
            closed,
            received,
        }
    }

    /// When the service saw connections end (EOF or error).
    fn closed_at(&self) -> Vec<Instant> {
        self.closed.lock().expect("closed").clone()
    }

    /// How many connections brought bytes that start with `head`.
    fn opened_with(&self, head: &[u8]) -> usize {
        let received = self.received.lock().expect("received");
        received.iter().filter(|b| b.starts_with(head)).count()
    }
}

fn serve_one(
    mut s: TcpStream,
    echo: bool,
    stop: &AtomicBool,
    closed: &std::sync::Mutex<Vec<Instant>>,
    received: &Received,
) {
    let index = {
        let mut r = received.lock().expect("received");
        r.push(Vec::new());
        r.len() - 1
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let got = s.read(&mut buf);
        if let Ok(n) = got {
            received.lock().expect("received")[index].extend_from_slice(&buf[..n]);
        }
        match got {
            Ok(0) => break,
            Ok(n) if echo => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let path = String::from_utf8_lossy(&head)
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{path}",
                        path.len()
                    );
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => break,
        }
    }
    closed.lock().expect("closed").push(Instant::now());
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// rendezvousd in the server namespace, plain HTTP, with one user.
fn serve(t: &Topology, dir: &TempDir, uuid: &uuid::Uuid, extra: &[&str]) -> Proc {
    serve_logging(t, dir, uuid, extra, "info")
}

/// [`serve`], logging at `rust_log`.
fn serve_logging(
    t: &Topology,
    dir: &TempDir,
    uuid: &uuid::Uuid,
    extra: &[&str],
    rust_log: &str,
) -> Proc {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state");
    let users = state.join("users");
    std::fs::write(&users, format!("{uuid} {SECRET_B32}\n")).expect("users");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut c = t.server.command(env!("CARGO_BIN_EXE_rendezvousd").as_ref());
    c.args([
        "serve",
        "--plaintext",
        "--registrar",
        REGISTRAR,
        "--rendezvous",
        RENDEZVOUS,
        "--metrics-listen",
        METRICS,
        "--state-dir",
    ])
    .arg(&state)
    .args(extra)
    .env("RUST_LOG", rust_log)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let p = Proc::spawn("serve", c);
    p.wait_line("(metrics");
    p
}

/// `rendezvous expose` in the hidden namespace.
fn expose(t: &Topology, uuid: &uuid::Uuid, protocol: &str, to: SocketAddr, extra: &[&str]) -> Proc {
    let mut c = t.hidden.command(env!("CARGO_BIN_EXE_rendezvous").as_ref());
    c.args([
        "expose",
        "--server",
        &format!("http://{REGISTRAR}"),
        "--uuid",
        &uuid.to_string(),
        "--protocol",
        protocol,
        "--to",
        &to.to_string(),
    ])
    .args(extra)
    .env("RENDEZVOUS_SECRET", SECRET_B32)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    Proc::spawn(&format!("expose-{protocol}"), c)
}

/// The server's metrics (read from inside the server namespace).
fn metric(name: &str) -> u64 {
    let r = request(METRICS.parse().expect("addr"), "GET", "/metrics", &[]);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn parked(proto: &str) -> u64 {
    metric(&format!("rendezvous_parked{{proto=\"{proto}\"}}"))
}

fn registrar() -> SocketAddr {
    REGISTRAR.parse().expect("addr")
}

/// A generic mobile client: look up, send the I line and `early` after it
/// (bytes sent before the +OK); the status line, and the socket after it.
/// Never waits longer than `wait` for the status.
fn generic_mobile(uuid: &uuid::Uuid, early: &[u8], wait: Duration) -> (String, TcpStream) {
    let r = request(registrar(), "GET", &format!("/?uuid={uuid}"), &[]);
    assert_eq!(
        r.status,
        200,
        "lookup: {}",
        String::from_utf8_lossy(&r.body)
    );
    let cookie = json(&r)["result"]["cookie"]
        .as_str()
        .expect("cookie")
        .to_string();
    let mut s = connect(RENDEZVOUS.parse().expect("addr"));
    s.set_read_timeout(Some(wait)).expect("timeout");
    s.write_all(&[format!("{cookie}\n").as_bytes(), early].concat())
        .expect("send");
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).is_ok_and(|n| n == 1) && b[0] != b'\n' {
        line.push(b[0]);
    }
    (String::from_utf8_lossy(&line).into_owned(), s)
}

/// One echo round trip on `s` within `wait`.
fn echoes(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("timeout");
    if s.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut got = [0u8; 5];
    s.read_exact(&mut got).is_ok() && &got == b"ping\n"
}

/// An HTTP-specific mobile request; the status (0 when none came within `wait`).
fn http_mobile(uuid: &uuid::Uuid, path: &str, wait: Duration) -> u16 {
    let auth = data_encoding::BASE64.encode(format!("{uuid}:").as_bytes());
    let mut s = connect(registrar());
    s.set_read_timeout(Some(wait)).expect("timeout");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    rendezvous::wire::read_response(&mut s).map_or(0, |r| r.status)
}

/// Until `f` holds, at most `within`; how long it took.
fn within(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// The drop tests' course: an agent of `protocol` keeps two connections
/// parked behind the NAT, which forgets them once they have settled; one
/// second later `first`, a mobile client, asserts what it got and says it;
/// then `served`, a mobile client, is retried until the agent has parked
/// anew. The server's own keepalive is slow here: the liveness proof is what
/// keeps dead sockets from the mobile clients.
fn after_a_silent_drop(
    tag: &str,
    protocol: &str,
    first: impl FnOnce(&uuid::Uuid) -> String,
    mut served: impl FnMut(&uuid::Uuid) -> bool,
) {
    let mut t = Topology::new(tag, Duration::from_secs(600));
    let dir = TempDir::new(&format!("nat-{tag}"));
    let uuid = uuid::Uuid::new_v4();
    let svc = Service::start(&t.hidden, protocol == "generic");
    t.server.enter();
    let extra = ["--keepalive", "300", "--pair-timeout", "15"];
    let _srv = serve(&t, &dir, &uuid, &extra);
    let ka = agent_keepalive();
    let agent = expose(
        &t,
        &uuid,
        protocol,
        svc.addr,
        &["--pool", "2", "--keepalive", &ka],
    );
    within("two parked", Duration::from_secs(20), || {
        parked(protocol) == 2
    });
    // Parked long enough to count as settled: the agent replaces them at once.
    thread::sleep(rendezvous::limits::PARK_SETTLED);
    t.forget();
    let dropped_at = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let got = first(&uuid);
    let answered_after = dropped_at.elapsed();
    assert!(metric("rendezvous_liveness_proofs_total{result=\"dropped\"}") >= 1);
    // The agent found its dead connections (keepalive 3 s: user timeout
    // 5 s) and parked new ones.
    agent.wait_line("waiting connection lost after");
    within("agent re-parked", Duration::from_secs(60), || served(&uuid));
    eprintln!(
        "{protocol}: first mobile client answered {got} {:.1} s after the drop; served again within {:.1} s",
        answered_after.as_secs_f64(),
        dropped_at.elapsed().as_secs_f64()
    );
}

/// Generic protocol, a NAT that forgets silently: a mobile client arriving
/// at once is never handed a dead parked socket (the old server gave it +OK
/// and it hung); it is served once the agent, whose keepalive finds its
/// dead connections, has parked new ones. That first client sends bytes
/// with its cookie line (as `connect --listen` does): through the dead
/// sockets' failed proofs they are kept, and a live one gets them once.
#[test]
fn generic_after_a_silent_drop() {
    let first = |uuid: &uuid::Uuid| {
        let (status, mut s) = generic_mobile(uuid, b"early\n", Duration::from_secs(30));
        assert!(
            status == "+OK" || status == "-ERR not ready",
            "status {status:?}"
        );
        if status == "+OK" {
            let mut got = [0u8; 6];
            s.read_exact(&mut got).expect("the early bytes' echo");
            assert_eq!(&got, b"early\n");
            // Next comes the echo of the next line, not the early bytes again.
            assert!(
                echoes(&mut s, Duration::from_secs(5)),
                "+OK, then silence: a dead socket"
            );
        }
        format!("{status:?}")
    };
    after_a_silent_drop("g", "generic", first, |uuid| {
        let (st, mut s) = generic_mobile(uuid, &[], Duration::from_secs(5));
        st == "+OK" && echoes(&mut s, Duration::from_secs(5))
    });
}

/// A one-way silent drop: the packets the hidden side sends on its parked
/// connections are lost (its ACKs among them) while the server's arrive, so
/// the agent gets `+OK` on connections that fail their liveness proof and
/// then an RST, and it has dialed its local service for each. A mobile
/// client sent bytes with its cookie line: they reach the service once,
/// because the server sends them only after a proof holds. (Sent with the
/// `+OK`, as before, each dead connection passed them on too.)
#[test]
fn early_bytes_reach_the_service_once_when_the_hidden_sides_acks_are_lost() {
    let mut t = Topology::new("a", Duration::from_secs(600));
    let dir = TempDir::new("nat-a");
    let uuid = uuid::Uuid::new_v4();
    let svc = Service::start(&t.hidden, true);
    t.server.enter();
    let extra = ["--keepalive", "300", "--pair-timeout", "15"];
    let _srv = serve(&t, &dir, &uuid, &extra);
    let agent = ["--pool", "2", "--keepalive", "30"];
    let _agent = expose(&t, &uuid, "generic", svc.addr, &agent);
    within("two parked", Duration::from_secs(20), || {
        parked("generic") == 2
    });
    t.forget_uplink();
    let (status, mut s) = generic_mobile(&uuid, b"once\n", Duration::from_secs(30));
    assert_eq!(status, "+OK");
    let mut got = [0u8; 5];
    s.read_exact(&mut got).expect("the early bytes' echo");
    assert_eq!(&got, b"once\n");
    assert!(
        echoes(&mut s, Duration::from_secs(5)),
        "the echo after them"
    );
    let failed = metric("rendezvous_liveness_proofs_total{result=\"dropped\"}");
    assert!(
        failed >= 1,
        "no liveness proof failed: the drop did not hold"
    );
    // Each connection that got its +OK had the agent dial the service.
    let dials = usize::try_from(failed).expect("count") + 1;
    within("a dial per +OK", Duration::from_secs(10), || {
        svc.opened_with(b"") >= dials
    });
    assert_eq!(svc.opened_with(b"once\n"), 1, "the early bytes' copies");
    eprintln!("one-way drop: {failed} proofs failed, the early bytes reached the service once");
}

/// A line sent through `connect --listen` on `port` in namespace `ns`,
/// `after` the connection is made, comes back within 10 s.
fn echoed_through_listen(ns: &Netns, port: u16, line: &'static [u8], after: Duration) -> bool {
    let name = ns.name.clone();
    let client = thread::spawn(move || {
        Netns::enter_named(&name);
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        thread::sleep(after);
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut got = vec![0u8; line.len()];
        s.write_all(line).is_ok() && s.read_exact(&mut got).is_ok() && got == line
    });
    client.join().expect("client thread")
}

/// `connect --listen` keeps a spare connection to the rendezvous server.
/// When the server closes it (its `--handshake-timeout`) and the FIN is
/// lost on the way, the spare still looks open, and the next client's
/// cookie line goes out on it and meets an RST that acknowledged none of
/// it: no process read it, and the client is served on a new connection,
/// its bytes arriving once. (Before, that client was cut off.) The client
/// sends its bytes only later: had they gone out with the line, an RST
/// alone would not prove them unread, and the client is cut off as
/// before. The mobile side is behind the NAT here, as a phone is.
#[test]
fn a_spare_whose_close_was_lost_fails_no_client() {
    let t = Topology::new("p", Duration::from_secs(600));
    let dir = TempDir::new("nat-p");
    let uuid = uuid::Uuid::new_v4();
    let svc = Service::start(&t.hidden, true);
    t.server.enter();
    let extra = ["--handshake-timeout", "1"];
    let srv = serve_logging(&t, &dir, &uuid, &extra, "info,rendezvous::rendezvous=debug");
    let _agent = expose(&t, &uuid, "generic", svc.addr, &["--pool", "2"]);
    within("two parked", Duration::from_secs(20), || {
        parked("generic") == 2
    });
    let mut c = t.hidden.command(env!("CARGO_BIN_EXE_rendezvous").as_ref());
    c.args(["connect", "--listen", "127.0.0.1:0", "--server"])
        .arg(format!("http://{REGISTRAR}"))
        .args(["--uuid", &uuid.to_string()])
        .env("RUST_LOG", "info,rendezvous::mobile=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let connect = Proc::spawn("connect", c);
    let line = connect.wait_line("listening on 127.0.0.1:");
    let port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("the --listen port");
    // From now on the server's FINs are lost; its RSTs still arrive.
    t.nat.exec(&[
        "nft", "insert", "rule", "inet", "rdv", "flows", "iifname", "wan", "tcp", "flags", "&",
        "fin", "!=", "0", "counter", "drop",
    ]);
    let now = Duration::ZERO;
    assert!(
        echoed_through_listen(&t.hidden, port, b"one\n", now),
        "the first client"
    );
    connect.wait_line("spare connection ready");
    // The server gives up on the spare after 1 s; connect keeps spares 2 s.
    srv.wait_line("cookie line timed out");
    let later = Duration::from_millis(500);
    assert!(
        echoed_through_listen(&t.hidden, port, b"two\n", later),
        "the client after the lost close:\n{}",
        connect.log()
    );
    connect.wait_line("spare connection closed before the cookie line");
    within("the service saw it", Duration::from_secs(10), || {
        svc.opened_with(b"two\n") >= 1
    });
    // A copy would come at once; a second is allowed for it.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(svc.opened_with(b"two\n"), 1, "the first bytes' copies");
    eprintln!("a spare whose FIN was lost: the client went on a new connection");
}

/// HTTP-specific protocol, a NAT that forgets silently: the agent's parked
/// CONNECTs had no keepalive and a read without deadline, so it never
/// recovered (every client got 404 until it was restarted). Now it finds
/// them dead within its keepalive bound and parks new ones; a mobile client
/// arriving at once gets a live one or a 404, never a hang.
#[test]
fn http_after_a_silent_drop() {
    let first = |uuid: &uuid::Uuid| {
        let status = http_mobile(uuid, "/first", Duration::from_secs(30));
        assert!(status == 200 || status == 404, "status {status}");
        status.to_string()
    };
    after_a_silent_drop("h", "http", first, |uuid| {
        http_mobile(uuid, "/again", Duration::from_secs(5)) == 200
    });
}

/// A relayed pair whose hidden side vanishes (everything dropped, no FIN,
/// no RST) is closed at both ends within the user timeout: the mobile
/// client's connection, and the agent's connection to the local service.
/// Before, the pair stayed open for about 15 minutes with data in flight.
#[test]
fn a_pair_whose_hidden_side_vanishes_is_closed_at_both_ends() {
    let t = Topology::new("v", Duration::from_secs(600));
    let dir = TempDir::new("nat-v");
    let uuid = uuid::Uuid::new_v4();
    let svc = Service::start(&t.hidden, true);
    t.server.enter();
    let _srv = serve(&t, &dir, &uuid, &["--keepalive", "3"]);
    let _agent = expose(
        &t,
        &uuid,
        "generic",
        svc.addr,
        &["--pool", "1", "--keepalive", "3"],
    );
    within("parked", Duration::from_secs(20), || parked("generic") == 1);
    let (status, mut s) = generic_mobile(&uuid, &[], Duration::from_secs(10));
    assert_eq!(status, "+OK");
    assert!(echoes(&mut s, Duration::from_secs(5)));
    t.blackhole();
    let dropped_at = Instant::now();
    // Data in flight toward the vanished side.
    let _ = s.write_all(b"into the void\n");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let mobile_closed = loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break dropped_at.elapsed(),
            Ok(_) => {}
        }
    };
    // keepalive 3 s: user timeout 3 + 2 x 1 = 5 s.
    assert!(
        mobile_closed < Duration::from_secs(15),
        "mobile end closed after {mobile_closed:?}"
    );
    within("local end closed", Duration::from_secs(20), || {
        svc.closed_at().iter().any(|t| *t > dropped_at)
    });
    let local_closed = svc
        .closed_at()
        .iter()
        .filter(|t| **t > dropped_at)
        .map(|t| *t - dropped_at)
        .min()
        .unwrap_or_default();
    assert!(
        local_closed < Duration::from_secs(15),
        "local end closed after {local_closed:?}"
    );
    let _ = s.shutdown(Shutdown::Both);
    eprintln!(
        "vanished hidden side: mobile end closed after {:.1} s, the local service's connection after {:.1} s",
        mobile_closed.as_secs_f64(),
        local_closed.as_secs_f64()
    );
}

/// An idle relayed session survives a NAT that forgets a flow after 60 s
/// without a packet: keepalive (25 s, the default everywhere) refreshes the
/// mapping. Also measures the keepalive traffic through the NAT.
#[test]
fn an_idle_session_survives_a_60_s_nat_timeout() {
    let t = Topology::new("i", Duration::from_secs(60));
    let dir = TempDir::new("nat-i");
    let uuid = uuid::Uuid::new_v4();
    let svc = Service::start(&t.hidden, true);
    t.server.enter();
    let _srv = serve(&t, &dir, &uuid, &[]);
    let _agent = expose(&t, &uuid, "generic", svc.addr, &["--pool", "1"]);
    within("parked", Duration::from_secs(20), || parked("generic") == 1);
    let (status, mut s) = generic_mobile(&uuid, &[], Duration::from_secs(10));
    assert_eq!(status, "+OK");
    assert!(echoes(&mut s, Duration::from_secs(5)));
    // The pool parks a replacement; then everything is idle: the relayed
    // pair's hidden leg and one parked connection cross the NAT.
    within("replacement parked", Duration::from_secs(20), || {
        parked("generic") == 1
    });
    thread::sleep(Duration::from_secs(2));
    let before = t.forwarded_bytes();
    let idle = Duration::from_secs(75);
    thread::sleep(idle);
    let bytes = t.forwarded_bytes() - before;
    assert!(
        echoes(&mut s, Duration::from_secs(10)),
        "the idle session died behind the NAT"
    );
    let per_socket_hour = bytes as f64 / 2.0 * 3600.0 / idle.as_secs_f64();
    eprintln!(
        "idle 75 s behind a 60 s NAT: session alive; {bytes} bytes through the NAT for 2 idle sockets, about {per_socket_hour:.0} bytes per socket per hour"
    );
}

/// A node's machine vanishes: three node processes on one store in a
/// namespace of the test's own, an agent given all three registrars; the
/// node where the agent waits is stopped (no lease renewal, no FIN, no
/// RST) and every packet to and from its ports dropped. The agent's
/// keepalive finds its parked connections dead, its dial to the vanished
/// place times out, and the refresh that follows (at whichever registrar
/// answers, avoiding that place) sends it to a live node, through which
/// clients get through again.
#[test]
fn an_agent_whose_node_vanishes_serves_again_through_another() {
    need_nft();
    let ns = Netns::new("vanish");
    ns.enter();
    let redis = RedisServer::start();
    let states = [TempDir::new("v1"), TempDir::new("v2"), TempDir::new("v3")];
    let ids = ["v1", "v2", "v3"];
    let nodes: Vec<(Proc, SocketAddr, SocketAddr)> = ids
        .iter()
        .zip(&states)
        .map(|(id, st)| {
            let p = Proc::spawn(id, node_command(&redis.url(), st.path(), id, 3, &[]));
            let (reg, rv) = (p.listening("registrar"), p.listening("rendezvous"));
            (p, reg, rv)
        })
        .collect();
    let regs: Vec<SocketAddr> = nodes.iter().map(|n| n.1).collect();
    let prov = support::user_add_servers(&redis.url(), states[0].path(), &regs);
    let uuid = rendezvous::provision::Provision::load(&prov)
        .expect("provisioning file")
        .uuid
        .expect("uuid");
    let echo = echo_server();
    let mut cmd = rendezvous();
    cmd.args([
        "expose",
        "--pool",
        "2",
        "--keepalive",
        &agent_keepalive(),
        "--config",
    ])
    .arg(&prov)
    .args(["--to", &echo.to_string()])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let agent = Proc::spawn("expose", cmd);
    agent.wait_line("registered uuid=");
    within("a client through node 2", Duration::from_secs(30), || {
        echo_through(regs[1], uuid, 1).is_ok()
    });

    // The node lookups name is where the agent waits: it vanishes.
    let r = request(regs[0], "GET", &format!("/?uuid={uuid}"), &[]);
    let port = json(&r)["result"]["port"].as_u64().expect("port");
    let holder = nodes
        .iter()
        .position(|n| u64::from(n.2.port()) == port)
        .expect("a node holds the agent");
    let (gone_reg, gone_rv) = (nodes[holder].1.port(), nodes[holder].2.port());
    nodes[holder].0.signal("STOP");
    let ports = format!("{{ {gone_reg}, {gone_rv} }}");
    let ruleset = format!(
        "table inet vanish {{\n chain input {{\n  type filter hook input priority filter;\n  \
         tcp dport {ports} drop\n  tcp sport {ports} drop\n }}\n}}\n"
    );
    let file = std::env::temp_dir().join(format!("{}.nft", ns.name));
    std::fs::write(&file, ruleset).expect("write ruleset");
    ns.exec(&["nft", "-f", &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);

    let live: Vec<SocketAddr> = (0..3).filter(|&i| i != holder).map(|i| regs[i]).collect();
    let mut attempt = 0u64;
    let served = within(
        "a client through a live node",
        Duration::from_secs(150),
        || {
            attempt += 1;
            echo_through(live[attempt as usize % 2], uuid, 10 + attempt).is_ok()
        },
    );
    let moved = agent
        .lines
        .lock()
        .expect("lines")
        .iter()
        .any(|l| l.contains("parking there"));
    assert!(
        moved,
        "the agent followed a refresh to a live node:\n{}",
        agent.log()
    );
    eprintln!(
        "a node vanished silently: first client through a live node {:.1} s later",
        served.as_secs_f64()
    );
    for n in 0..5u64 {
        echo_through(live[n as usize % 2], uuid, 100 + n)
            .unwrap_or_else(|e| panic!("client {n} after recovery: {e}"));
    }
    // A stopped process still takes SIGKILL (Proc's drop); the namespace,
    // and with it the table, goes when the test ends.
    nodes[holder].0.signal("CONT");
}
