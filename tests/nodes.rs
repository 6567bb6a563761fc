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
    json, pseudo_random, read_line, request, sha256, token_at, wait_until, Opts, Proc, RedisServer,
    TempDir, TestServer,
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
    let url = redis.url();
    let args = [
        "--rendezvous",
        "127.0.0.1:0",
        "--plaintext",
        "--store",
        &url,
        "--public-host",
        "127.0.0.1",
        "--node-id",
        id,
        "--node-ttl",
        "3",
    ];
    let p = Proc::spawn(id, support::serve_command(state.path(), &args));
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
/// hidden server re-registered at node 2 is found through node 3.
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
            server: Some(format!("http://{}", n3.registrar())),
            uuid: Some(uuid.to_string()),
            ..Default::default()
        },
        false,
    )
    .expect("settings");
    let dialer = rendezvous::agent::dial::Dialer::new(&settings).expect("dialer");
    assert_eq!(dialer.lookup().expect("lookup").port, rv1.port());
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

    // The hidden server registers again, at node 2, and parks there.
    let again = request(
        n2.registrar(),
        "PUT",
        &format!("/?uuid={uuid}&response={}", token_at(1)),
        &[],
    );
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    let r2 = json(&again)["result"]["cookie"]
        .as_str()
        .expect("cookie")
        .to_string();
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
