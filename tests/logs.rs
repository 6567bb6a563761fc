//! The log never holds a secret: full generic and HTTP-specific exchanges
//! (a generic and an HTTP-specific agent, mobile clients, failures) at trace
//! level with a capturing logger, then every line is searched for every
//! token, cookie, secret, Authorization value and raw query string used, and
//! for any UUID-shaped text other than the users' UUIDs (which catches the
//! agents' own cookies, which the test never sees).

mod support;

use rendezvous::agent::client::Registrar;
use rendezvous::agent::dial::Dialer;
use rendezvous::agent::expose::{Agent, ExposeOpts, Protocol};
use rendezvous::agent::settings::{ClientFlags, ServerUrl, Settings};
use rendezvous::tls::{self, Trust};
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let line = format!("{} {} {}", r.level(), r.target(), r.args());
        LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Every UUID-shaped run (8-4-4-4-12 hex digits) in `line`. Cookies are `R`
/// or `I` followed by one, so a cookie anywhere in a line shows up here.
fn uuids_in(line: &str) -> Vec<&str> {
    let b = line.as_bytes();
    let shape = |w: &[u8]| {
        w.iter().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
    };
    (0..b.len().saturating_sub(35))
        .filter(|&i| shape(&b[i..i + 36]))
        .map(|i| &line[i..i + 36])
        .collect()
}

/// True when `needle` occurs in `hay` not surrounded by more digits (tokens
/// are digits; a byte count may contain the same run by chance).
fn contains_token(hay: &str, needle: &str) -> bool {
    let b = hay.as_bytes();
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle) {
        let s = from + i;
        let e = s + needle.len();
        let before = s > 0 && b[s - 1].is_ascii_digit();
        let after = e < b.len() && b[e].is_ascii_digit();
        if !before && !after {
            return true;
        }
        from = s + 1;
    }
    false
}

#[test]
fn no_secret_reaches_the_log() {
    log::set_boxed_logger(Box::new(Capture)).expect("first logger");
    log::set_max_level(log::LevelFilter::Trace);
    avoid_step_edge();

    let ts = TestServer::start(Opts {
        plaintext: false,
        pair_timeout: Duration::from_millis(300),
        ..Opts::default()
    });
    let cert = ts.dir.join("cert.pem");
    let user1 = ts.uuid;
    let url = format!("https://127.0.0.1:{}", ts.registrar().port());
    let mut secrets: Vec<String> = vec![SECRET_B32.to_string()];
    // Every code the agent or the test may have sent this run.
    let mut tokens: Vec<String> = (-1..=2).map(token_at).collect();

    // Generic: the agent registers (token), parks, refreshes; a mobile client pairs.
    let echo = echo_server();
    let flags = ClientFlags {
        server: vec![url.clone()],
        uuid: Some(ts.uuid.to_string()),
        ca: Some(cert.clone()),
        ..ClientFlags::default()
    };
    std::env::set_var("RENDEZVOUS_SECRET", SECRET_B32);
    let settings = Settings::resolve(&flags, true).expect("settings");
    let agent = Agent::new(
        &settings,
        ExposeOpts {
            to: echo.to_string(),
            pool: 2,
            protocol: Protocol::Generic,
            ..ExposeOpts::default()
        },
    )
    .expect("agent");
    let a2 = agent.clone();
    let runner = std::thread::spawn(move || a2.run());
    wait_until("agent parked", || {
        ts.server().shared().registry.stats().parked_generic == 2
    });
    let dialer = Dialer::new(&settings).expect("dialer");
    let triple = dialer.lookup().expect("lookup");
    secrets.push(triple.cookie.clone());
    let mut s = dialer.dial().expect("paired");
    s.write_all(b"ping").expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read");
    assert_eq!(got, b"ping");

    // Registrar API directly: register, refresh, failures.
    let reg = Registrar::new(
        ServerUrl::parse(&url).expect("url"),
        &Trust::Ca(cert.clone()),
    )
    .expect("registrar");
    let tok = token_at(1);
    tokens.push(tok.clone());
    let t = reg.register(&ts.uuid, &tok).expect("register");
    secrets.push(t.cookie.clone());
    reg.refresh(&ts.uuid, &t.cookie).expect("refresh");
    let wrong = wrong_token();
    tokens.push(wrong.to_string());
    assert!(reg.register(&ts.uuid, wrong).is_err());
    assert!(reg.register(&ts.uuid, &tok).is_err(), "replay");
    let fake = format!("R{}", uuid::Uuid::new_v4());
    secrets.push(fake.clone());
    assert!(reg.refresh(&ts.uuid, &fake).is_err());
    // The rendezvous port with a wrong cookie.
    let fake_i = format!("I{}", uuid::Uuid::new_v4());
    secrets.push(fake_i.clone());
    let (_s, line) = rv_line(ts.rendezvous(), &format!("{fake_i}\n"));
    assert_eq!(line, "-ERR not registered");

    // HTTP-specific: a hidden server CONNECTs with its cookie, a mobile client
    // comes with Basic, another with Digest (no one waiting: 404).
    let cfg = tls::client_config(&Trust::Ca(cert.clone())).expect("config");
    let open = || {
        tls::connect(
            connect(ts.registrar()),
            cfg.clone(),
            "127.0.0.1",
            Instant::now() + IO_TIMEOUT,
        )
        .expect("handshake")
    };
    let mut hidden = open();
    write!(
        hidden,
        "CONNECT uuid:{}?cookie={} HTTP/1.1\r\nHost: x\r\n\r\n",
        ts.uuid, t.cookie
    )
    .expect("send");
    let head = read_head(&mut hidden);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let basic = data_encoding::BASE64.encode(format!("uuid:{}", ts.uuid).as_bytes());
    secrets.push(basic.clone());
    let mut m = open();
    write!(
        m,
        "GET /page?q=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n\r\n"
    )
    .expect("send");
    let fwd = read_head(&mut hidden);
    assert!(fwd.starts_with("GET /page?q=1"), "{fwd}");
    hidden
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        .expect("reply");
    hidden.conn.send_close_notify();
    let _ = hidden.flush();
    drop(hidden);
    let reply = read_head(&mut m);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    drop(m);
    let nonce = "0123456789abcdef0123456789abcdef";
    let digest = format!(
        "Digest username=\"{}\", realm=\"rendezvous\", nonce=\"{nonce}\", uri=\"/\", response=\"deadbeefdeadbeefdeadbeefdeadbeef\"",
        ts.uuid
    );
    secrets.push("deadbeefdeadbeefdeadbeefdeadbeef".into());
    let mut m = open();
    write!(
        m,
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: {digest}\r\n\r\n"
    )
    .expect("send");
    assert!(read_head(&mut m).starts_with("HTTP/1.1 404"));
    // A CONNECT with a token in its query, wrong.
    let mut h2 = open();
    write!(
        h2,
        "CONNECT uuid:{}?response={wrong} HTTP/1.1\r\nHost: x\r\n\r\n",
        ts.uuid
    )
    .expect("send");
    assert!(read_head(&mut h2).starts_with("HTTP/1.1 401"));

    // An HTTP-specific agent, as a second user (its own secret, so its
    // tokens do not collide with the ones above): it CONNECTs with a token,
    // then grows its pool with its cookie (Rendezvous-Cookie); a mobile
    // client's request reaches the service (an echo) through it.
    const SECRET2: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let user2 = uuid::Uuid::new_v4();
    let users = ts.dir.join("users");
    let mut text = std::fs::read_to_string(&users).expect("users");
    text.push_str(&format!("{user2} {SECRET2} 30 6 http agent\n"));
    rendezvous::files::write_atomic(&users, text.as_bytes(), 0o600).expect("write");
    ts.server().reload();
    secrets.push(SECRET2.to_string());
    let secret2 = rendezvous::secret::Secret::from_base32(SECRET2).expect("base32");
    let now = rendezvous::totp::now();
    tokens.extend(
        (0..4).map(|k| rendezvous::totp::generate(&secret2, Default::default(), now + k * 30 - 30)),
    );
    std::env::set_var("RENDEZVOUS_SECRET", SECRET2);
    let settings2 = Settings::resolve(
        &ClientFlags {
            uuid: Some(user2.to_string()),
            ..flags.clone()
        },
        true,
    )
    .expect("settings");
    let http_agent = Agent::new(
        &settings2,
        ExposeOpts {
            to: echo_server().to_string(),
            pool: 2,
            protocol: Protocol::Http,
            ..ExposeOpts::default()
        },
    )
    .expect("agent");
    let a3 = http_agent.clone();
    let http_runner = std::thread::spawn(move || a3.run());
    wait_until("http agent parked", || {
        ts.server().shared().registry.stats().parked_http == 2
    });
    let basic2 = data_encoding::BASE64.encode(format!("{user2}:").as_bytes());
    secrets.push(basic2.clone());
    let mut m = open();
    let request = format!(
        "GET /through-the-agent HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic2}\r\n\r\n"
    );
    m.write_all(request.as_bytes()).expect("send");
    // The echo sends the forwarded head back: the agent relayed it.
    let echoed = read_head(&mut m);
    assert!(echoed.starts_with("GET /through-the-agent"), "{echoed}");
    assert!(!echoed.contains("Authorization"), "{echoed}");
    drop(m);
    wait_until("http agent refilled", || {
        ts.server().shared().registry.stats().parked_http == 2
    });

    agent.stop();
    http_agent.stop();
    runner.join().expect("agent thread").expect("agent ran");
    http_runner
        .join()
        .expect("http agent thread")
        .expect("http agent ran");
    drop(ts);

    let lines = LINES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        lines.len() > 20,
        "the capture saw the exchange: {}",
        lines.len()
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("pair done") && l.contains("proto=generic")));
    assert!(lines
        .iter()
        .any(|l| l.contains("pair done") && l.contains("proto=http")));
    let ts_uuid = user1.to_string();
    let mut cookies_seen: Vec<String> = secrets
        .iter()
        .filter(|s| s.starts_with('R') || s.starts_with('I'))
        .map(|c| c[1..].to_string())
        .collect();
    secrets.append(&mut cookies_seen);
    assert!(lines
        .iter()
        .any(|l| l.contains("registered") && l.contains("proto=http")));
    for line in &lines {
        // The users' UUIDs are public; any other UUID-shaped text would be a
        // cookie (the agents' own included, which this test never sees).
        for u in uuids_in(line) {
            assert!(
                u == ts_uuid || u == user2.to_string(),
                "a cookie or unknown UUID {u:?} in log line {line:?}"
            );
        }
        for s in &secrets {
            assert!(
                !line.contains(s.as_str()),
                "secret {s:?} in log line {line:?}"
            );
        }
        for t in &tokens {
            assert!(!contains_token(line, t), "token {t:?} in log line {line:?}");
        }
        for q in [
            "response=",
            "cookie=",
            "Authorization:",
            "Rendezvous-Cookie",
        ] {
            assert!(!line.contains(q), "{q:?} in log line {line:?}");
        }
    }
}

/// A ClientHello whose SNI extension holds `name` as a host name.
fn client_hello_with_sni(name: &[u8]) -> Vec<u8> {
    let be16 = |n: usize| [(n >> 8) as u8, n as u8];
    let mut sni = vec![0u8]; // host_name
    sni.extend_from_slice(&be16(name.len()));
    sni.extend_from_slice(name);
    let mut list = be16(sni.len()).to_vec();
    list.extend_from_slice(&sni);
    let mut ext = vec![0, 0]; // server_name
    ext.extend_from_slice(&be16(list.len()));
    ext.extend_from_slice(&list);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&be16(ext.len()));
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&be16(body.len()));
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&be16(hs.len()));
    rec.extend_from_slice(&hs);
    rec
}

/// Dependencies' warnings that unauthenticated input triggers stay out of
/// the log at the default level: 300 ClientHellos with an illegal SNI used
/// to write 300 warn lines of attacker text (rustls), unlimited.
#[test]
fn illegal_sni_does_not_flood_the_log() {
    let dir = TempDir::new("sni");
    let mut c = serve_command(dir.path(), &["--rendezvous", "none"]);
    c.env("RUST_LOG", "info");
    let srv = Proc::spawn("serve", c);
    let addr = srv.listening("registrar");
    let before = srv.lines.lock().expect("lines").len();
    let hello = client_hello_with_sni(&format!("{}!", "x".repeat(240)).into_bytes());
    for _ in 0..300 {
        let mut s = connect(addr);
        s.write_all(&hello).expect("send hello");
        let mut buf = [0u8; 512];
        // The server answers with an alert, or closes.
        let _ = s.read(&mut buf);
    }
    // A normal request afterwards: the server is well and its log is live.
    let r = request_tls_health(addr, &dir.join("cert.pem"));
    assert_eq!(r, 200);
    let lines = srv.lines.lock().expect("lines")[before..].to_vec();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("SNI") || l.contains("xxxx")),
        "{}",
        lines.join("\n")
    );
    assert!(
        lines.len() <= 3,
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
}

fn request_tls_health(addr: std::net::SocketAddr, cert: &std::path::Path) -> u16 {
    let cfg = tls::client_config(&Trust::Ca(cert.to_path_buf())).expect("config");
    let sock = connect(addr);
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let mut s = tls::connect(sock, cfg, "127.0.0.1", deadline).expect("handshake");
    s.write_all(b"GET /.well-known/rendezvous/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    rendezvous::wire::read_response(&mut s)
        .expect("response")
        .status
}

/// A state folder others can write, and a users file that is a symbolic
/// link, are warned about at start.
#[test]
fn loose_state_folder_and_linked_users_file_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("loose");
    let state = dir.join("state");
    std::fs::create_dir(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    let real = dir.join("users.real");
    std::fs::write(&real, "").expect("users");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink(&real, state.join("users")).expect("symlink");
    let c = serve_command(&state, &["--plaintext", "--rendezvous", "none"]);
    let srv = Proc::spawn("serve", c);
    srv.wait_line("is writable by group or others (mode 0770); run chmod 700");
    srv.wait_line("is a symbolic link: serve reads its target");
}
