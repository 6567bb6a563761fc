//! End to end through the real binaries over TLS with a pinned self-signed
//! certificate: `user add` → `serve` → `expose` → `connect` (stdio and
//! `--listen`); recovery after the server is killed and restarted; SIGTERM
//! and SIGHUP.

mod support;

use rendezvous::agent::client::Registrar;
use rendezvous::agent::settings::ServerUrl;
use rendezvous::certs::parse_fingerprint;
use rendezvous::provision::Provision;
use rendezvous::tls::Trust;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

fn user_add(state: &Path, out: &Path) {
    let o = run(rendezvousd()
        .args([
            "user",
            "add",
            "--server",
            "https://127.0.0.1:1",
            "--state-dir",
        ])
        .arg(state)
        .arg("--out")
        .arg(out));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn serve(state: &Path, registrar: &str, rendezvous: &str) -> Proc {
    let mut c = rendezvousd();
    c.args([
        "serve",
        "--registrar",
        registrar,
        "--rendezvous",
        rendezvous,
        "--state-dir",
    ])
    .arg(state)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    Proc::spawn("serve", c)
}

fn expose(prov: &Path, server: &str, to: SocketAddr) -> Proc {
    let mut c = rendezvous();
    c.args(["expose", "--pool", "2", "--config"])
        .arg(prov)
        .args(["--server", server, "--to", &to.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Proc::spawn("expose", c)
}

/// A user, `serve` on ports of its own, and `expose` to `to`, registered:
/// the folder (holding `gw.conf`), the two processes and the registrar URL.
fn served_to(tag: &str, to: SocketAddr) -> (TempDir, Proc, Proc, String) {
    let dir = TempDir::new(tag);
    let (state, prov) = (dir.join("state"), dir.join("gw.conf"));
    user_add(&state, &prov);
    let srv = serve(&state, "127.0.0.1:0", "127.0.0.1:0");
    let url = format!("https://127.0.0.1:{}", srv.listening("registrar").port());
    let agent = expose(&prov, &url, to);
    agent.wait_line("registered uuid=");
    (dir, srv, agent, url)
}

/// `connect --listen` on a port of its own, and the address it listens on.
fn connect_listen(prov: &Path, url: &str) -> (Proc, SocketAddr) {
    let mut c = rendezvous();
    c.args(["connect", "--listen", "127.0.0.1:0", "--config"])
        .arg(prov)
        .args(["--server", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let listener = Proc::spawn("connect-listen", c);
    let line = listener.wait_line("listening on");
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("the --listen address");
    (listener, addr)
}

/// `connect` on stdin/stdout: send `data`, close stdin, return what came back.
fn connect_stdio(prov: &Path, server: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut c = rendezvous();
    c.args(["connect", "--config"])
        .arg(prov)
        .args(["--server", server])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn connect");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read stdout");
    let _ = writer.join();
    let st = child.wait().expect("wait");
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    if st.success() {
        Ok(out)
    } else {
        Err(err)
    }
}

#[test]
fn user_add_serve_expose_connect_over_pinned_tls() {
    let dir = TempDir::new("e2e");
    let state = dir.join("state");
    let prov = dir.join("gw.conf");
    user_add(&state, &prov);
    let srv = serve(&state, "127.0.0.1:0", "127.0.0.1:0");
    let reg = srv.listening("registrar");
    let url = format!("https://127.0.0.1:{}", reg.port());
    srv.wait_line("certificate sha256=");
    let echo = echo_server();
    let agent = expose(&prov, &url, echo);
    agent.wait_line("registered uuid=");

    // stdio: 1 MiB through and back, compared by SHA-256.
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let back = connect_stdio(&prov, &url, &data).expect("connect succeeds");
    assert_eq!(back.len(), data.len());
    assert_eq!(sha256(&back), sha256(&data));

    // --listen: two local connections, each its own rendezvous.
    let (_listener, addr) = connect_listen(&prov, &url);
    for n in 0..2 {
        let mut s = TcpStream::connect(addr).expect("connect local");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let msg = format!("hello {n}");
        s.write_all(msg.as_bytes()).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        assert_eq!(got, msg);
    }
    srv.wait_line("pair done");
    // The agent counts the bytes it passed to the service before relaying.
    agent.wait_line(" up=7 down=7 ");

    // lookup prints the I triple as JSON.
    let o = run(rendezvous()
        .args(["lookup", "--config"])
        .arg(&prov)
        .args(["--server", &url]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert!(v["cookie"].as_str().expect("cookie").starts_with('I'));
    assert_eq!(v["port"], srv.listening("rendezvous").port());
    assert_eq!(
        v["early"], true,
        "our server forwards a client's first bytes"
    );
    assert!(!stderr(&o).contains("accessible"), "{}", stderr(&o));

    // A provisioning file others can read: a warning naming it, not the secret.
    let secret = std::fs::read_to_string(&prov)
        .expect("provisioning file")
        .lines()
        .find_map(|l| l.strip_prefix("secret = ").map(str::to_string))
        .expect("a secret line");
    std::fs::set_permissions(&prov, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = run(rendezvous()
        .args(["lookup", "--config"])
        .arg(&prov)
        .args(["--server", &url]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let warned = format!(
        "provisioning file {} holds a secret and is accessible by group or others (mode 0644); run chmod 600",
        prov.display()
    );
    assert!(stderr(&o).contains(&warned), "{}", stderr(&o));
    assert!(!stderr(&o).contains(&secret), "the secret was logged");
    std::fs::set_permissions(&prov, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // A wrong pin fails clearly with exit 1; a malformed one is a usage error.
    let o = run(rendezvous().args(["lookup", "--config"]).arg(&prov).args([
        "--server",
        &url,
        "--pin-sha256",
        &"00".repeat(32),
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pinned SHA-256"), "{}", stderr(&o));
    let o = run(rendezvous()
        .args(["lookup", "--config"])
        .arg(&prov)
        .args(["--pin-sha256", "abc"]));
    assert_eq!(o.status.code(), Some(2));
    drop(agent);
}

#[test]
fn agent_recovers_after_server_restart_and_signals() {
    let dir = TempDir::new("e2e-restart");
    let state = dir.join("state");
    let prov = dir.join("gw.conf");
    user_add(&state, &prov);
    let mut srv = serve(&state, "127.0.0.1:0", "127.0.0.1:0");
    let reg = srv.listening("registrar");
    let rv = srv.listening("rendezvous");
    let url = format!("https://127.0.0.1:{}", reg.port());
    let echo = echo_server();
    let agent = expose(&prov, &url, echo);
    agent.wait_line("registered uuid=");
    assert_eq!(
        connect_stdio(&prov, &url, b"before").expect("works"),
        b"before"
    );

    // kill -9 and restart on the same ports.
    srv.signal("KILL");
    srv.wait_exit(Duration::from_secs(10));
    let srv2 = serve(&state, &reg.to_string(), &rv.to_string());
    srv2.listening("rendezvous");
    let start = Instant::now();
    loop {
        match connect_stdio(&prov, &url, b"after") {
            Ok(b) if b == b"after" => break,
            _ if start.elapsed() > Duration::from_secs(30) => panic!(
                "no recovery within 30 s\nagent:\n{}\nserver:\n{}",
                agent.log(),
                srv2.log()
            ),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
    eprintln!(
        "agent recovered {:.1} s after the restart",
        start.elapsed().as_secs_f64()
    );

    // SIGHUP picks up a user added to the file.
    let prov2 = dir.join("second.conf");
    user_add(&state, &prov2);
    let p2 = Provision::load(&prov2).expect("provisioning");
    let pin = parse_fingerprint(p2.pin_sha256.as_deref().expect("pin")).expect("pin");
    let registrar =
        Registrar::new(ServerUrl::parse(&url).expect("url"), &Trust::Pin(pin)).expect("client");
    let uuid = p2.uuid.expect("uuid");
    let secret = p2.secret.expect("secret");
    let token = |off: u64| {
        rendezvous::totp::generate(&secret, Default::default(), rendezvous::totp::now() + off)
    };
    assert!(
        registrar.register(&uuid, &token(0)).is_err(),
        "unknown before SIGHUP"
    );
    let mut srv2 = srv2;
    srv2.signal("HUP");
    srv2.wait_line("users reloaded n=2");
    registrar
        .register(&uuid, &token(30))
        .expect("known after SIGHUP");

    // SIGTERM: exit 0.
    srv2.signal("TERM");
    assert_eq!(srv2.wait_exit(Duration::from_secs(20)), Some(0));
    srv2.wait_line("shutdown finished");
}

/// A service that greets and hangs up at once.
fn greeter() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"bye\n");
        }
    });
    addr
}

#[test]
fn connect_exits_when_the_remote_closes_even_with_stdin_open() {
    let (dir, _srv, _agent, url) = served_to("e2e-stdin", greeter());
    let prov = dir.join("gw.conf");
    let mut child = rendezvous()
        .args(["connect", "--config"])
        .arg(&prov)
        .args(["--server", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn connect");
    let stdin = child.stdin.take().expect("stdin: held open, never written");
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read");
    assert_eq!(out, b"bye\n", "stdout carries only the relayed bytes");
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "connect still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
}

#[test]
fn serve_warns_about_a_users_file_or_key_others_can_read_and_stops_on_sigint() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("e2e-mode");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state");
    let users = state.join("users");
    std::fs::write(&users, "").expect("users");
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut c = rendezvousd();
    c.args([
        "serve",
        "--registrar",
        "127.0.0.1:0",
        "--rendezvous",
        "none",
        "--state-dir",
    ])
    .arg(&state)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let srv = Proc::spawn("serve", c);
    let line = srv.wait_line("accessible by group or others");
    assert!(line.contains("WARN") && line.contains("users"), "{line}");
    srv.wait_line("listening on");
    let log = srv.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("key.pem") && l.contains("accessible")),
        "the generated key is 0600: {log}"
    );

    // A key others can read is named at the next reload.
    let key = state.join("key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let mut srv = srv;
    srv.signal("HUP");
    let line = srv.wait_line("key.pem is accessible by group or others");
    assert!(
        line.contains("WARN") && line.contains("(mode 0640); run chmod 600"),
        "{line}"
    );
    srv.wait_line("certificate reloaded");

    // SIGINT is an orderly shutdown too: exit 0.
    srv.signal("INT");
    assert_eq!(srv.wait_exit(Duration::from_secs(20)), Some(0));
    srv.wait_line("shutdown finished");
}

/// A service that answers `OK\n` to each request once it has seen its end
/// (`END\n`), whatever pieces it came in; its thread ends with the process.
fn answers_whole_requests() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
            let (mut seen, mut buf) = (Vec::new(), [0u8; 512]);
            while let Ok(n @ 1..) = s.read(&mut buf) {
                seen.extend_from_slice(&buf[..n]);
                while let Some(i) = seen.windows(4).position(|w| w == b"END\n") {
                    seen.drain(..i + 4);
                    if s.write_all(b"OK\n").is_err() {
                        break;
                    }
                }
            }
        }
    });
    addr
}

/// A mobile client that writes a request in two parts, the second 5 ms
/// after the first, as an HTTP client writes a head and then a body, gets
/// each answer without waiting for the service's delayed ACK of the first
/// part: `expose` connects to the service with Nagle off. With it on, the
/// second part waited for that ACK, 40 ms per request on Linux.
#[test]
fn a_request_in_two_parts_waits_for_no_delayed_ack() {
    let (dir, _srv, _agent, url) = served_to("e2e-nagle", answers_whole_requests());
    let (_listener, addr) = connect_listen(&dir.join("gw.conf"), &url);
    let mut s = TcpStream::connect(addr).expect("connect local");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let pause = Duration::from_millis(5);
    let mut beyond = Vec::new();
    for _ in 0..20 {
        s.write_all(b"POST / with a head,\n").expect("first part");
        std::thread::sleep(pause);
        // From the second part on: what a held part waits, not how long
        // the sleep overslept.
        let start = Instant::now();
        s.write_all(b"and then a body END\n").expect("second part");
        let mut ok = [0u8; 3];
        s.read_exact(&mut ok).expect("the answer");
        assert_eq!(&ok, b"OK\n");
        beyond.push(start.elapsed());
    }
    beyond.sort();
    let median = beyond[beyond.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median {median:?} from the second part to the answer: {beyond:?}"
    );
    eprintln!("a request in two parts: median {median:?} from the second part to the answer");
}
