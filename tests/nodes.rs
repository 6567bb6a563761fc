//! Several nodes on one store (a real `redis-server` on a private Unix
//! socket): node 1 a `rendezvousd` process (so it can be killed with
//! `kill -9`), nodes 2 and 3 servers in this process, all on 127.0.0.1
//! with leases of 3 s (a heartbeat a second).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;
use support::{
    echo_through, json, pseudo_random, read_line, request, sha256, token_at, wait_until, Opts,
    Proc, RedisServer, TempDir, TestServer,
};
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(3);

/// An in-process node with the user `uuid`.
fn node(redis: &RedisServer, uuid: Uuid, id: &str) -> TestServer {
    TestServer::start(Opts {
        store: Some(redis.url()),
        uuid: Some(uuid),
        node_id: Some(id.into()),
        node_ttl: TTL,
        ..Opts::default()
    })
}

/// `rendezvousd serve` as node `id` on the store: the process, its
/// registrar and its rendezvous addresses.
fn node_process(redis: &RedisServer, state: &TempDir, id: &str) -> (Proc, SocketAddr, SocketAddr) {
    let p = Proc::spawn(
        id,
        support::node_command(&redis.url(), state.path(), id, 3, &[]),
    );
    let (reg, rv) = (p.listening("registrar"), p.listening("rendezvous"));
    (p, reg, rv)
}

/// The triple a lookup at `registrar` answers: host, port, `I` cookie.
fn lookup(registrar: SocketAddr, uuid: Uuid) -> (String, u16, String) {
    let r = request(registrar, "GET", &format!("/?uuid={uuid}"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = json(&r);
    let t = &v["result"];
    (
        t["host"].as_str().expect("host").to_string(),
        t["port"].as_u64().expect("port") as u16,
        t["cookie"].as_str().expect("cookie").to_string(),
    )
}

/// Pair a mobile client, by the triple a lookup at `registrar` gives, with
/// the responder parked as `parked`, and move 256 KiB each way, checked by
/// SHA-256.
fn pair_by_lookup(registrar: SocketAddr, uuid: Uuid, mut parked: TcpStream) {
    let (host, port, i) = lookup(registrar, uuid);
    let mut mobile = TcpStream::connect((host.as_str(), port)).expect("connect to the named node");
    mobile
        .write_all(format!("{i}\n").as_bytes())
        .expect("send I");
    assert_eq!(read_line(&mut mobile), "+OK", "mobile");
    assert_eq!(read_line(&mut parked), "+OK", "hidden server");
    let up = pseudo_random(256 * 1024, 1);
    let down = pseudo_random(256 * 1024, 2);
    let (u, d) = (up.clone(), down.clone());
    let mut m2 = mobile.try_clone().expect("clone");
    let mut p2 = parked.try_clone().expect("clone");
    let writers = [
        thread::spawn(move || {
            m2.write_all(&u).expect("mobile writes");
            m2.shutdown(std::net::Shutdown::Write).expect("half-close");
        }),
        thread::spawn(move || {
            p2.write_all(&d).expect("hidden server writes");
            p2.shutdown(std::net::Shutdown::Write).expect("half-close");
        }),
    ];
    let mut got_up = Vec::new();
    let mut got_down = Vec::new();
    parked
        .read_to_end(&mut got_up)
        .expect("hidden server reads");
    mobile.read_to_end(&mut got_down).expect("mobile reads");
    for w in writers {
        w.join().expect("writer");
    }
    assert_eq!(sha256(&got_up), sha256(&up), "mobile to hidden server");
    assert_eq!(sha256(&got_down), sha256(&down), "hidden server to mobile");
}

/// A hidden server registered and parked at node 1 is found through nodes
/// 2 and 3, whose lookups name node 1; after `kill -9` of node 1 its
/// parked socket closes, lookups stop naming it within the lease, and the
/// hidden server, told by a refresh at node 2 to wait there, is found
/// through node 3. Refreshes and registrations name the holding node too.
#[test]
fn lookups_at_any_node_name_the_node_where_the_hidden_server_waits() {
    let redis = RedisServer::start();
    let uuid = Uuid::new_v4();
    let n2 = node(&redis, uuid, "n2"); // also puts the user in the store
    let n3 = node(&redis, uuid, "n3");
    let state = TempDir::new("n1");
    let (mut p1, reg1, rv1) = node_process(&redis, &state, "n1");
    support::avoid_step_edge();

    let r = support::register_at(reg1, &uuid);
    let parked = support::park(rv1, &r);
    wait_until("node 2 to name node 1", || {
        lookup(n2.registrar(), uuid).1 == rv1.port()
    });
    wait_until("node 3 to name node 1", || {
        lookup(n3.registrar(), uuid).1 == rv1.port()
    });
    // A mobile client's dialer, asking node 3, caches node 1's triple.
    let settings = rendezvous::agent::settings::Settings::resolve(
        &rendezvous::agent::settings::ClientFlags {
            server: vec![format!("http://{}", n3.registrar())],
            uuid: Some(uuid.to_string()),
            ..Default::default()
        },
        false,
    )
    .expect("settings");
    let dialer = rendezvous::agent::dial::Dialer::new(&settings).expect("dialer");
    assert_eq!(dialer.lookup().expect("lookup").port, rv1.port());
    // A refresh at node 3 and a token registration at node 2 name node 1
    // too: the hidden server's pool stays in one place.
    let put = |reg: SocketAddr, q: String| {
        let r = request(reg, "PUT", &format!("/?uuid={uuid}&{q}"), &[]);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        json(&r)["result"]["port"].as_u64().expect("port") as u16
    };
    assert_eq!(
        put(n3.registrar(), format!("cookie={r}")),
        rv1.port(),
        "refresh at node 3"
    );
    assert_eq!(
        put(n2.registrar(), format!("response={}", token_at(1))),
        rv1.port(),
        "registration at node 2"
    );
    pair_by_lookup(n3.registrar(), uuid, parked);

    let mut waiting = support::park(rv1, &r);
    wait_until("node 2 to name node 1 again", || {
        lookup(n2.registrar(), uuid).1 == rv1.port()
    });
    p1.signal("KILL");
    p1.wait_exit(Duration::from_secs(10));
    let mut buf = [0u8; 1];
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert!(
        matches!(waiting.read(&mut buf), Ok(0) | Err(_)),
        "the socket parked at the dead node is closed"
    );
    wait_until("lookups to stop naming the dead node", || {
        lookup(n2.registrar(), uuid).1 != rv1.port()
    });

    // The hidden server refreshes its cookie at node 2 (no token: the
    // registration outlived the node), is told to wait there, and parks.
    assert_eq!(
        put(n2.registrar(), format!("cookie={r}")),
        n2.rendezvous().port(),
        "refresh after the death"
    );
    let r2 = r.clone();
    let parked = support::park(n2.rendezvous(), &r2);
    wait_until("node 3 to name node 2", || {
        lookup(n3.registrar(), uuid).1 == n2.rendezvous().port()
    });
    pair_by_lookup(n3.registrar(), uuid, parked);

    // The dialer's cached triple names the dead node: its connection fails,
    // and one new lookup sends it to node 2.
    let mut hidden = support::park(n2.rendezvous(), &r2);
    wait_until("parked at node 2", || {
        n2.server().shared().registry.stats().parked_generic == 1
    });
    let mut mobile = dialer.dial().expect("the dialer finds the live node");
    mobile.write_all(b"x").expect("write");
    let mut got = [0u8; 5];
    hidden.read_exact(&mut got).expect("read");
    assert_eq!(&got, b"+OK\nx");
}

/// A node id is one server's: a second server with it waits one lease and
/// gives up (exit 1); after `kill -9` of the holder, a restart waits for
/// the lease to lapse and joins.
#[test]
fn a_node_id_held_by_a_live_server_is_refused() {
    let redis = RedisServer::start();
    let (s1, s2) = (TempDir::new("dup1"), TempDir::new("dup2"));
    let (mut first, _, _) = node_process(&redis, &s1, "dup");
    let url = redis.url();
    let args = [
        "--plaintext",
        "--rendezvous",
        "127.0.0.1:0",
        "--store",
        &url,
        "--public-host",
        "127.0.0.1",
        "--node-id",
        "dup",
        "--node-ttl",
        "3",
    ];
    let mut second = Proc::spawn("dup2", support::serve_command(s2.path(), &args));
    assert_eq!(second.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        second.log().contains("held by another running server"),
        "{}",
        second.log()
    );

    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let (restarted, _, _) = node_process(&redis, &s1, "dup");
    restarted.wait_line("node dup joined");
}

/// Three node processes and a `rendezvous expose` agent given all three
/// registrars by the provisioning file that `user add --server` (repeated)
/// wrote. `kill -9` of the node where the agent waits, with a pair running
/// through it: the pair closes; within the agent's backoff (a refused dial
/// makes it refresh its cookie at whichever registrar answers, avoiding
/// the dead place, and follow the triple) it serves again through a live
/// node, and every client after the first success gets through. The
/// killed node, restarted, joins again.
#[test]
fn an_agent_whose_node_is_killed_serves_again_through_another() {
    let redis = RedisServer::start();
    let states = [TempDir::new("k1"), TempDir::new("k2"), TempDir::new("k3")];
    let mut nodes: Vec<Option<(Proc, SocketAddr, SocketAddr)>> = ["k1", "k2", "k3"]
        .iter()
        .zip(&states)
        .map(|(id, st)| Some(node_process(&redis, st, id)))
        .collect();
    let regs: Vec<SocketAddr> = nodes.iter().flatten().map(|n| n.1).collect();
    let prov = support::user_add_servers(&redis.url(), states[0].path(), &regs);
    let p = rendezvous::provision::Provision::load(&prov).expect("provisioning file");
    let uuid = p.uuid.expect("uuid");
    assert_eq!(
        p.server.as_deref().unwrap_or("").split(' ').count(),
        3,
        "every registrar is in the file"
    );

    let echo = support::echo_server();
    let mut agent_cmd = support::rendezvous();
    agent_cmd
        .args(["expose", "--pool", "2", "--config"])
        .arg(&prov)
        .args(["--to", &echo.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let agent = Proc::spawn("expose", agent_cmd);
    agent.wait_line("registered uuid=");
    wait_until("a client through node 2's registrar", || {
        echo_through(regs[1], uuid, 1).is_ok()
    });
    echo_through(regs[2], uuid, 2).expect("a client through node 3's registrar");

    // The node where the agent waits is the one lookups name.
    let port = lookup(regs[0], uuid).1;
    let holder = nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(|n| n.2.port() == port))
        .expect("a node holds the agent");
    let (mut dead, _, dead_rv) = nodes[holder].take().expect("holder");
    // A pair relaying through that node when it dies.
    let (_, _, i) = lookup(regs[0], uuid);
    let mut running = TcpStream::connect(dead_rv).expect("connect");
    running
        .write_all(format!("{i}\n").as_bytes())
        .expect("send I");
    assert_eq!(read_line(&mut running), "+OK");
    running.write_all(b"ping").expect("write");
    let mut echoed = [0u8; 4];
    running.read_exact(&mut echoed).expect("echo");
    let killed = std::time::Instant::now();
    // When the agent says it moved (its log, watched every 10 ms).
    let lines = agent.lines.clone();
    let moved = thread::spawn(move || {
        while killed.elapsed() < Duration::from_secs(60) {
            if lines
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.contains("parking there"))
            {
                return Some(killed.elapsed());
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    });
    dead.signal("KILL");
    dead.wait_exit(Duration::from_secs(10));
    running
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut b = [0u8; 1];
    assert!(
        matches!(running.read(&mut b), Ok(0) | Err(_)),
        "a pair through the killed node is closed"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "closed at once, not by a timeout"
    );
    let live: Vec<SocketAddr> = nodes.iter().flatten().map(|n| n.1).collect();

    let mut attempt = 0u64;
    let recovered = loop {
        attempt += 1;
        let reg = live[attempt as usize % live.len()];
        if echo_through(reg, uuid, 10 + attempt).is_ok() {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no client got through within 60 s of the kill; agent log:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(200));
    };
    let moved = moved.join().expect("watcher").expect("the agent moved");
    eprintln!(
        "recovery after kill -9 of the agent's node: agent re-parked at {:.2} s, first client through at {:.2} s",
        moved.as_secs_f64(),
        recovered.as_secs_f64()
    );
    for n in 0..10u64 {
        let reg = live[n as usize % live.len()];
        echo_through(reg, uuid, 100 + n)
            .unwrap_or_else(|e| panic!("client {n} after recovery: {e}"));
    }

    let id = ["k1", "k2", "k3"][holder];
    let (again, _, _) = node_process(&redis, &states[holder], id);
    again.wait_line(&format!("node {id} joined"));
}
