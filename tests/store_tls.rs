//! The shared store over TLS (`rediss://` with `--store-ca`) and found
//! through Redis Sentinel (`--store-sentinel`, `--store-service`), against
//! real `redis-server` processes this file starts (the TLS and sentinel
//! ports are TCP ports on 127.0.0.1 that were free a moment before).

mod support;

use rendezvous::clock;
use rendezvous::server::store::redis::RedisStore;
use rendezvous::server::store::StoreArgs;
use std::path::{Path, PathBuf};
use support::{avoid_step_edge, free_port, json, token_at, Opts, RedisServer, TestServer};

/// Write a self-signed certificate for 127.0.0.1 and its key into `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) =
        rendezvous::certs::generate_self_signed(&["127.0.0.1".to_string()]).expect("certificate");
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert).expect("write certificate");
    std::fs::write(&k, key).expect("write key");
    (c, k)
}

/// A redis-server that also speaks TLS on a TCP port: the server, the
/// `rediss://` URL, and its certificate.
fn tls_redis() -> (RedisServer, String, PathBuf) {
    let port = free_port();
    let redis = RedisServer::start_with(|dir| {
        let (c, k) = self_signed(dir, "store");
        [
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &c.display().to_string(),
            "--tls-key-file",
            &k.display().to_string(),
            "--tls-ca-cert-file",
            &c.display().to_string(),
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from)
        .to_vec()
    });
    let cert = redis.dir().join("store.crt");
    (redis, format!("rediss://127.0.0.1:{port}"), cert)
}

fn tls_args(url: &str, ca: Option<&Path>) -> StoreArgs {
    let mut a = StoreArgs::new(url);
    a.ca = ca.map(Path::to_path_buf);
    a
}

/// `--store-ca` is a pin: the store's own certificate is trusted, another
/// is refused, and without it the system's roots refuse a self-signed one.
#[test]
fn a_tls_store_is_reached_with_its_certificate_only() {
    let (redis, url, cert) = tls_redis();
    let store =
        RedisStore::connect(&tls_args(&url, Some(&cert)), clock::system()).expect("TLS store");
    assert!(store.users().is_ok(), "a command over TLS");

    let other = support::TempDir::new("other-cert");
    let (wrong, _) = self_signed(other.path(), "other");
    for (ca, what) in [
        (Some(wrong.as_path()), "another certificate"),
        (None, "the system roots"),
    ] {
        let e = RedisStore::connect(&tls_args(&url, ca), clock::system())
            .err()
            .unwrap_or_else(|| panic!("connected trusting {what}"))
            .to_string();
        assert!(
            e.contains(&url) && e.to_lowercase().contains("certificate"),
            "{what}: {e}"
        );
    }

    // The flags, through the program.
    let list = support::run(
        support::rendezvousd()
            .args(["user", "list", "--store", &url, "--store-ca"])
            .arg(&cert),
    );
    assert!(list.status.success(), "{}", support::stderr(&list));
    let plain = support::run(
        support::rendezvousd()
            .args(["user", "list", "--store", &redis.url(), "--store-ca"])
            .arg(&cert),
    );
    assert_eq!(
        plain.status.code(),
        Some(2),
        "--store-ca on a plain store is a usage error"
    );
    assert!(support::stderr(&plain).contains("--store-ca needs a TLS store"));
}

/// A hidden server registers and pairs through a server whose store is
/// reached over TLS.
#[test]
fn a_server_on_a_tls_store_registers_and_pairs() {
    let (redis, url, cert) = tls_redis();
    let ts = TestServer::start(Opts {
        store: Some(redis.url()),
        store_args: Some(tls_args(&url, Some(&cert))),
        ..Opts::default()
    });
    avoid_step_edge();
    let r = ts.put_token(&token_at(0));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let cookie = json(&r)["result"]["cookie"]
        .as_str()
        .expect("cookie")
        .to_string();
    let key = format!("rdv:rc:{cookie}");
    assert!(
        redis.command(&["EXISTS", &key]).starts_with(":1"),
        "the registration is in the store"
    );
    let i = ts.lookup();
    let mut responder = support::park(ts.rendezvous(), &cookie);
    let (_initiator, status) = support::rv_line(ts.rendezvous(), &format!("{i}\n"));
    assert_eq!(status, "+OK");
    assert_eq!(support::read_line(&mut responder), "+OK");
}

// ---- Sentinel ---------------------------------------------------------------

/// One command to a redis-server or sentinel on a TCP port; the reply, raw.
fn tcp_command(port: u16, args: &[&str]) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .expect("timeout");
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A redis-server in sentinel mode, killed when dropped.
struct Sentinel {
    child: std::process::Child,
    port: u16,
    _dir: support::TempDir,
}

impl Sentinel {
    /// A sentinel watching the primary on `primary_port` as `service`, with
    /// a quorum of one.
    fn start(primary_port: u16, service: &str) -> Sentinel {
        let dir = support::TempDir::new("sentinel");
        let port = free_port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {service} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {service} 1000\nsentinel failover-timeout {service} 5000\n",
                dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel (apt-get install -y redis-server)");
        let s = Sentinel {
            child,
            port,
            _dir: dir,
        };
        support::wait_until("the sentinel to answer", || {
            tcp_command(port, &["PING"]).starts_with("+PONG")
        });
        s
    }

    /// The port of the primary it names for `service`.
    fn primary_port(&self, service: &str) -> Option<u16> {
        let r = tcp_command(self.port, &["SENTINEL", "get-master-addr-by-name", service]);
        r.lines().last()?.trim().parse().ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that finds its store through a sentinel, and a failover: the
/// replica becomes the primary, and the server's registrations land there
/// within seconds of the sentinel naming it. `kill` fails the primary
/// (`kill -9`): tokens get 503 meanwhile, never another refusal. Else the
/// failover is forced with the old primary alive, which takes writes until
/// the sentinel reconfigures it (up to its 10 s `INFO` period): the server
/// must leave it as soon as the sentinel names the new one.
fn failover(kill: bool) {
    let (pp, rp) = (free_port(), free_port());
    let mut primary = RedisServer::start_with(|_| vec!["--port".into(), pp.to_string()]);
    let replica = RedisServer::start_with(|_| {
        [
            "--port",
            &rp.to_string(),
            "--replicaof",
            "127.0.0.1",
            &pp.to_string(),
        ]
        .map(String::from)
        .to_vec()
    });
    support::wait_until("the replica to sync", || {
        replica
            .command(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let sentinel = Sentinel::start(pp, "rdv");
    support::wait_until("the sentinel to see the replica", || {
        tcp_command(sentinel.port, &["SENTINEL", "replicas", "rdv"]).contains(&rp.to_string())
    });
    let mut args = StoreArgs::new("");
    args.sentinels = vec![format!("127.0.0.1:{}", sentinel.port)];
    args.service = Some("rdv".into());
    let ts = TestServer::start(Opts {
        store: Some(primary.url()),
        store_args: Some(args),
        ..Opts::default()
    });
    avoid_step_edge();
    let first = ts.put_token(&token_at(0));
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );

    if kill {
        primary.kill();
    } else {
        let forced = tcp_command(sentinel.port, &["SENTINEL", "FAILOVER", "rdv"]);
        assert!(forced.starts_with("+OK"), "SENTINEL FAILOVER: {forced}");
    }
    support::wait_until("the sentinel to name the replica", || {
        sentinel.primary_port("rdv") == Some(rp)
    });
    let named = std::time::Instant::now();
    let next = token_at(1);
    let mut statuses = Vec::new();
    support::wait_until("a registration at the new primary", || {
        let r = ts.put_token(&next);
        statuses.push(r.status);
        if r.status != 200 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            return false;
        }
        let cookie = json(&r)["result"]["cookie"]
            .as_str()
            .unwrap_or("")
            .to_string();
        replica
            .command(&["EXISTS", &format!("rdv:rc:{cookie}")])
            .starts_with(":1")
    });
    assert!(
        named.elapsed() < std::time::Duration::from_secs(5),
        "took {:?} after the sentinel named the new primary: {statuses:?}",
        named.elapsed()
    );
    if kill {
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 503),
            "only 503 while the store moves: {statuses:?}"
        );
    }
}

#[test]
fn after_the_primary_dies_the_server_finds_the_new_one() {
    failover(true);
}

#[test]
fn after_a_forced_failover_the_server_leaves_the_old_primary() {
    failover(false);
}
