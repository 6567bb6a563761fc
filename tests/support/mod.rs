//! Test harness shared by the integration tests, the soak (`tests/soak`) and
//! the benchmark (`benches/relay.rs`), which include it by path: temporary
//! folders, binary paths, a bounded way to run a command, child processes,
//! an in-process server, raw registrar and rendezvous clients, network
//! namespaces.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary folder removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "rendezvous-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn rendezvousd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rendezvousd"));
    c.env_remove("RENDEZVOUS_STATE_DIR")
        .env_remove("RENDEZVOUS_SECRET");
    c
}

pub fn rendezvous() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rendezvous"));
    c.env_remove("RENDEZVOUS_STATE_DIR")
        .env_remove("RENDEZVOUS_SECRET");
    c
}

/// `rendezvousd serve` on a state folder, its registrar on 127.0.0.1 port 0
/// (see `Proc::listening`), standard input and output closed; `args` add to
/// it (`--plaintext`, `--rendezvous none`, …).
pub fn serve_command(state: &Path, args: &[&str]) -> Command {
    let mut c = rendezvousd();
    c.args(["serve", "--registrar", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    c
}

/// `rendezvousd serve` as node `id` of a cluster on `store` (plaintext,
/// rendezvous on 127.0.0.1 port 0 and named 127.0.0.1, a lease of
/// `ttl_secs`), with `extra` flags.
pub fn node_command(store: &str, state: &Path, id: &str, ttl_secs: u32, extra: &[&str]) -> Command {
    let ttl = ttl_secs.to_string();
    let mut args = vec![
        "--rendezvous",
        "127.0.0.1:0",
        "--plaintext",
        "--store",
        store,
        "--public-host",
        "127.0.0.1",
        "--node-id",
        id,
        "--node-ttl",
        &ttl,
    ];
    args.extend_from_slice(extra);
    serve_command(state, &args)
}

/// One generic client attempt through the registrar at `reg`: a lookup,
/// the `I` line at the node it names, and 64 KiB echoed back, checked by
/// SHA-256. `Err` says which step failed.
pub fn echo_through(reg: SocketAddr, uuid: uuid::Uuid, seed: u64) -> Result<(), String> {
    let r = request(reg, "GET", &format!("/?uuid={uuid}"), &[]);
    if r.status != 200 {
        return Err(format!("lookup answered {}", r.status));
    }
    let t = json(&r)["result"].clone();
    let (host, port, i) = (
        t["host"].as_str().unwrap_or(""),
        t["port"].as_u64().unwrap_or(0),
        t["cookie"].as_str().unwrap_or(""),
    );
    // Bounded: the node named may have vanished (its packets dropped).
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("{i}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    // The status line, a failure being an answer like any other (this
    // runs in retry loops).
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 256 {
        match s.read(&mut b) {
            Ok(1) if b[0] != b'\n' => line.push(b[0]),
            Ok(1) => break,
            Ok(_) => return Err(format!("closed before a status at port {port}")),
            Err(e) => return Err(format!("read status at port {port}: {e}")),
        }
    }
    if line != b"+OK" {
        return Err(format!(
            "status {:?} at port {port}",
            String::from_utf8_lossy(&line)
        ));
    }
    let data = pseudo_random(64 * 1024, seed);
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    w.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&sent);
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let mut back = Vec::new();
    let read = s.read_to_end(&mut back);
    // The writer ends with the socket, whatever the read gave.
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    read.map_err(|e| format!("read echo: {e}"))?;
    if sha256(&back) != sha256(&data) {
        return Err(format!(
            "echo mismatch: {} of {} bytes",
            back.len(),
            data.len()
        ));
    }
    Ok(())
}

/// `rendezvousd user add` on `store` with every registrar of `regs` as a
/// `--server`: the provisioning file it wrote (in `state`).
pub fn user_add_servers(store: &str, state: &Path, regs: &[SocketAddr]) -> PathBuf {
    let prov = state.join("agent.conf");
    let mut add = rendezvousd();
    add.args(["user", "add", "--store", store]);
    for r in regs {
        add.args(["--server", &format!("http://{r}")]);
    }
    add.arg("--state-dir").arg(state).arg("--out").arg(&prov);
    let o = run(&mut add);
    assert!(o.status.success(), "user add: {}", stderr(&o));
    prov
}

/// The calls counted in an `INFO commandstats` text, summed over the
/// commands (`cmdstat_NAME:` lines) that `which` takes.
pub fn commandstats_calls(text: &str, which: impl Fn(&str) -> bool) -> i64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix("cmdstat_")
                .and_then(|l| l.split(':').next())
                .is_some_and(&which)
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum()
}

/// `rendezvous expose --protocol http` to `to` at `ts` (over TLS, its
/// certificate as the CA), waited for until its pool of `pool` is parked.
pub fn expose_http(ts: &TestServer, to: SocketAddr, pool: usize) -> Proc {
    let secret = ts.dir.join("secret");
    std::fs::write(&secret, format!("{SECRET_B32}\n")).expect("write secret");
    let mut c = rendezvous();
    c.args([
        "expose",
        "--protocol",
        "http",
        "--pool",
        &pool.to_string(),
        "--server",
    ])
    .arg(format!("https://127.0.0.1:{}", ts.registrar().port()))
    .arg("--ca")
    .arg(ts.dir.join("cert.pem"))
    .args([
        "--uuid",
        &ts.uuid.to_string(),
        "--to",
        &to.to_string(),
        "--secret-file",
    ])
    .arg(secret)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null());
    let p = Proc::spawn("expose-http", c);
    p.wait_line("registered uuid=");
    wait_until("the agent's pool parked", || {
        ts.server().shared().registry.stats().parked_http == pool
    });
    p
}

/// Run to completion (these commands finish by themselves) and return the output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .expect("run command")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

// ---- in-process server ----------------------------------------------------

use rendezvous::secret::Secret;
use rendezvous::server::{Config, Server};
use rendezvous::state::StatePaths;
use rendezvous::totp::{self, Params};
use rendezvous::wire::{read_response, ClientResponse};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A known test secret (base32 of "12345678901234567890").
pub const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub fn secret() -> Secret {
    Secret::from_base32(SECRET_B32).expect("valid base32")
}

/// A six-digit token that is not the current one (a guaranteed wrong guess).
pub fn wrong_token() -> &'static str {
    if token_at(0) == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// `PUT ?uuid=&response=` with the current token; the R cookie it returns.
pub fn register_at(reg: SocketAddr, uuid: &uuid::Uuid) -> String {
    let r = request(
        reg,
        "PUT",
        &format!("/?uuid={uuid}&response={}", token_at(0)),
        &[],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    json(&r)["result"]["cookie"]
        .as_str()
        .expect("cookie")
        .to_string()
}

/// A token for the current step (or `offset` steps away).
pub fn token_at(offset: i64) -> String {
    let now = totp::now() as i64 + offset * 30;
    totp::generate(&secret(), Params::default(), now as u64)
}

pub struct TestServer {
    pub server: Option<Server>,
    pub dir: TempDir,
    pub uuid: uuid::Uuid,
    pub cfg: Config,
    /// The server's clock for cookie lifetimes and lockouts: it moves only
    /// when a test advances it.
    pub clock: rendezvous::clock::ManualClock,
}

pub struct Opts {
    pub rendezvous: bool,
    pub plaintext: bool,
    pub pool_max: usize,
    pub pair_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub cookie_ttl: Duration,
    pub public_host: Option<String>,
    pub public_port: Option<u16>,
    pub metrics_from: Option<Vec<rendezvous::server::metrics::Cidr>>,
    pub metrics_listen: Option<String>,
    /// `--store` (a `unix://` URL, through which the user is put in it).
    pub store: Option<String>,
    /// How the server reaches that store, when not by `store` (TLS,
    /// sentinels).
    pub store_args: Option<rendezvous::server::store::StoreArgs>,
    /// The user's UUID (default: a new one), to share one between servers.
    pub uuid: Option<uuid::Uuid>,
    /// `--node-id` with a store (default: a new one per server).
    pub node_id: Option<String>,
    /// `--node-ttl`.
    pub node_ttl: Duration,
    /// With a store: a peer listener on 127.0.0.1:0 and this cluster
    /// secret (`--peer-listen`, `--cluster-secret-file`).
    pub cluster_secret: Option<Vec<u8>>,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            rendezvous: true,
            plaintext: true,
            pool_max: 16,
            pair_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            max_connections: 4096,
            cookie_ttl: Duration::from_secs(600),
            public_host: None,
            public_port: None,
            metrics_from: None,
            metrics_listen: None,
            store: None,
            store_args: None,
            uuid: None,
            node_id: None,
            node_ttl: rendezvous::limits::NODE_TTL,
            cluster_secret: None,
        }
    }
}

impl TestServer {
    pub fn start(opts: Opts) -> TestServer {
        init_log();
        let dir = TempDir::new("srv");
        let uuid = opts.uuid.unwrap_or_else(uuid::Uuid::new_v4);
        std::fs::write(
            dir.join("users"),
            format!("{} {SECRET_B32} 30 6 test\n", uuid.hyphenated()),
        )
        .expect("write users");
        if let Some(url) = &opts.store {
            // With --store the users file is not read: the user goes in the store.
            let socket = Path::new(url.strip_prefix("unix://").expect("a unix:// store"));
            let line = format!("{} {SECRET_B32} 30 6 test", uuid.hyphenated());
            let reply = redis_command(
                socket,
                &["HSET", "rdv:users", &uuid.hyphenated().to_string(), &line],
            );
            assert!(reply.starts_with(':'), "HSET: {reply}");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("users"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let mut cfg = Config::new(StatePaths::resolve(Some(dir.path()), None, None, None));
        cfg.plaintext = opts.plaintext;
        cfg.pool_max = opts.pool_max;
        cfg.pair_timeout = opts.pair_timeout;
        cfg.handshake_timeout = opts.handshake_timeout;
        cfg.max_connections = opts.max_connections;
        cfg.cookie_ttl = opts.cookie_ttl;
        cfg.public_host = opts.public_host;
        cfg.public_port = opts.public_port;
        if let Some(m) = opts.metrics_from {
            cfg.metrics_from = m;
        }
        cfg.metrics_listen = opts.metrics_listen;
        cfg.store = opts
            .store_args
            .or_else(|| opts.store.map(rendezvous::server::store::StoreArgs::new));
        if cfg.store.is_some() {
            // Every server on a store is a node: its own id, and the
            // address other nodes name it by.
            cfg.public_host = cfg.public_host.or_else(|| Some("127.0.0.1".into()));
            cfg.node_id = Some(
                opts.node_id
                    .unwrap_or_else(|| format!("test-{}", uuid::Uuid::new_v4().simple())),
            );
            cfg.node_ttl = opts.node_ttl;
            if let Some(secret) = &opts.cluster_secret {
                let f = dir.join("cluster.secret");
                std::fs::write(&f, secret).expect("write cluster secret");
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
                cfg.peer_listen = Some("127.0.0.1:0".into());
                cfg.cluster_secret_file = Some(f);
            }
        }
        cfg.drain_timeout = Duration::from_secs(2);
        let reg = TcpListener::bind("127.0.0.1:0").expect("bind registrar");
        let rv = opts
            .rendezvous
            .then(|| TcpListener::bind("127.0.0.1:0").expect("bind rendezvous"));
        if !opts.rendezvous {
            cfg.rendezvous = None;
        }
        let clock = rendezvous::clock::ManualClock::new();
        let server = Server::start_with_clock(cfg.clone(), reg, rv, Arc::new(clock.clone()))
            .expect("server starts");
        TestServer {
            server: Some(server),
            dir,
            uuid,
            cfg,
            clock,
        }
    }

    /// Stop the server (as SIGTERM does) and start a new one on the same
    /// state folder, on new ports.
    pub fn restart(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.shutdown();
        }
        let reg = TcpListener::bind("127.0.0.1:0").expect("bind registrar");
        let rv = self
            .cfg
            .rendezvous
            .is_some()
            .then(|| TcpListener::bind("127.0.0.1:0").expect("bind rendezvous"));
        let clock = Arc::new(self.clock.clone());
        self.server = Some(
            Server::start_with_clock(self.cfg.clone(), reg, rv, clock).expect("server restarts"),
        );
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub fn registrar(&self) -> SocketAddr {
        self.server().registrar_addr()
    }

    pub fn rendezvous(&self) -> SocketAddr {
        self.server().rendezvous_addr().expect("rendezvous enabled")
    }

    /// `PUT ?uuid=&response=tok` for this server's user, from 127.0.0.1.
    pub fn put_token(&self, tok: &str) -> ClientResponse {
        let target = format!("/?uuid={}&response={tok}", self.uuid);
        request(self.registrar(), "PUT", &target, &[])
    }

    /// Register with a fresh token and return the R cookie.
    pub fn register(&self) -> String {
        register_at(self.registrar(), &self.uuid)
    }

    /// Get another R cookie without a new token: the registry directly
    /// (tokens are single-use per step, and tests must not wait for steps).
    pub fn extra_r_cookie(&self) -> String {
        let shared = self.server().shared();
        shared
            .registry
            .register_with(self.uuid, || Ok::<(), ()>(()))
            .expect("register")
            .expose()
    }

    pub fn lookup(&self) -> String {
        let r = request(
            self.registrar(),
            "GET",
            &format!("/?uuid={}", self.uuid),
            &[],
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        json(&r)["result"]["cookie"]
            .as_str()
            .expect("cookie")
            .to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.shutdown();
        }
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// One request on a new connection.
pub fn request(addr: SocketAddr, method: &str, target: &str, headers: &[&str]) -> ClientResponse {
    let mut s = connect(addr);
    send(&mut s, method, target, headers);
    read_response(&mut s).expect("response")
}

pub fn send(s: &mut TcpStream, method: &str, target: &str, headers: &[&str]) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
}

pub fn json(r: &ClientResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("json body")
}

/// Write a cookie line and read the status line byte by byte.
pub fn rv_line(addr: SocketAddr, line: &str) -> (TcpStream, String) {
    let mut s = connect(addr);
    s.write_all(line.as_bytes()).expect("send line");
    let status = read_line(&mut s);
    (s, status)
}

/// Read an HTTP head through its blank line, one byte at a time so nothing
/// after it is consumed; `head` holds what was already read. A head over
/// 16 KiB, or EOF before its end, is an error.
pub fn read_head_after<R: Read>(mut r: R, mut head: Vec<u8>) -> std::io::Result<Vec<u8>> {
    use std::io::ErrorKind;
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "head too long"));
        }
        match r.read(&mut b) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(_) => head.push(b[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(head)
}

/// An HTTP head as text (nothing after it consumed), or what of it arrived
/// before EOF or an error: the callers assert on its status line.
pub fn read_head<S: Read>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

pub fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => out.push(b[0]),
            Err(e) => panic!("read status: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Park a responder; returns the socket (its +OK comes later).
pub fn park(addr: SocketAddr, cookie: &str) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(format!("{cookie}\n").as_bytes())
        .expect("send cookie");
    s
}

/// Wait (bounded) until `f` holds.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

// ---- child processes -------------------------------------------------------

use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

/// A child process killed (and reaped) on drop, whose stderr lines are collected.
pub struct Proc {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stderr(Stdio::piped());
        if cmd.get_envs().all(|(k, _)| k != "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd.spawn().expect("spawn");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("stderr");
        let l = lines.clone();
        let tag = name.to_string();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_VERBOSE").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                l.lock().expect("lines").push(line);
            }
        });
        Proc {
            child,
            lines,
            name: name.to_string(),
        }
    }

    /// Wait (bounded) for a stderr line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if std::time::Instant::now() > end {
                panic!(
                    "{}: no line with {needle:?} in:\n{}",
                    self.name,
                    self.lines.lock().expect("lines").join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// The address in a "listening on ADDR (what" line.
    pub fn listening(&self, what: &str) -> SocketAddr {
        let line = self.wait_line(&format!("({what}"));
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("address in line");
        addr.parse().expect("socket address")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Wait (bounded) for exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let end = std::time::Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st.code();
            }
            if std::time::Instant::now() > end {
                panic!(
                    "{} did not exit within {within:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An echo server on 127.0.0.1:0 (each connection echoes until EOF, then
/// half-closes). Its thread ends when the test process does; connections are
/// served on their own threads.
pub fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = s.try_clone().expect("clone");
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// Tests that count on one TOTP step (replays, per-step caps) start with at
/// least 5 s left in the current 30 s step, so they never straddle two.
pub fn avoid_step_edge() {
    let left = 30 - totp::now() % 30;
    if left < 5 {
        std::thread::sleep(Duration::from_secs(left + 1));
    }
}

/// Deterministic test data (xorshift), different per seed.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---- network namespaces ------------------------------------------------------

/// A network namespace of the test's own (`ip netns add`), deleted on drop
/// with everything in it. Needs root and iproute2; a test that uses one
/// fails with the install command when either is missing, never skips.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "rdvt-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .stderr(Stdio::piped())
            .output();
        match ok {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "this test needs root to create a network namespace (ip netns add): {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!(
                "this test needs ip(8) to create a network namespace: {e}; \
                 install it with: apt-get install -y iproute2"
            ),
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS…`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let o = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            o.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Run `args` inside the namespace (`ip netns exec`), which must succeed.
    pub fn exec(&self, args: &[&str]) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("run ip netns exec");
        assert!(
            o.status.success(),
            "in {}: {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &std::ffi::OsStr) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c.env_remove("RENDEZVOUS_STATE_DIR")
            .env_remove("RENDEZVOUS_SECRET");
        c
    }

    /// Move the calling thread into the namespace: the sockets it creates
    /// from now on, and the threads it starts, live there.
    pub fn enter(&self) {
        Netns::enter_named(&self.name);
    }

    /// [`Netns::enter`] by name (from a thread that does not own it).
    pub fn enter_named(name: &str) {
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
        use std::os::fd::AsFd;
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A TCP connection from `from` (an address of the current namespace).
pub fn connect_from(from: std::net::IpAddr, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    sock.bind(&SocketAddr::new(from, 0).into())
        .expect("bind source");
    sock.connect(&to.into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

// ---- a real redis-server ----------------------------------------------------

/// A `redis-server` of the test's own: no TCP port (`--port 0`), a Unix
/// socket in a private folder, no persistence (`--save ''`); killed by its
/// PID on drop. A missing binary fails the test with the install command.
pub struct RedisServer {
    child: Option<Child>,
    dir: TempDir,
    extra: Vec<String>,
    valkey: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(|_| Vec::new())
    }

    /// With more arguments, which `args` makes given the server's folder.
    pub fn start_with(args: impl FnOnce(&Path) -> Vec<String>) -> RedisServer {
        let dir = TempDir::new("redis");
        let extra = args(dir.path());
        let mut r = RedisServer {
            child: None,
            dir,
            extra,
            valkey: false,
        };
        r.restart();
        r
    }

    /// Valkey instead of Redis, on a Unix socket the same way.
    pub fn start_valkey() -> RedisServer {
        let mut r = RedisServer {
            child: None,
            dir: TempDir::new("valkey"),
            extra: Vec::new(),
            valkey: true,
        };
        r.restart();
        r
    }

    /// The server program: `redis-server`, or Valkey's. Debian bookworm
    /// has Valkey in backports only, where `valkey-tools` ships the server
    /// as `valkey-check-rdb` (the `valkey-server` package adds the name and
    /// a system service); the program acts by the name it is called by.
    fn program(&self) -> Command {
        let in_path = |name: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        };
        if !self.valkey {
            assert!(
                in_path("redis-server"),
                "redis-server is missing: the store tests need a real one (apt-get install -y redis-server)"
            );
            return Command::new("redis-server");
        }
        if in_path("valkey-server") {
            return Command::new("valkey-server");
        }
        let tools = Path::new("/usr/bin/valkey-check-rdb");
        assert!(
            tools.is_file(),
            "valkey is missing: the store tests run Valkey too (apt-get install -y valkey-tools; on Debian bookworm from bookworm-backports, as .ci/run does)"
        );
        let mut c = Command::new(tools);
        std::os::unix::process::CommandExt::arg0(&mut c, "valkey-server");
        c
    }

    /// Its folder, for files it is given.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// `--store` for it.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Start it (again, on the same socket) and wait until it answers.
    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = self
            .program()
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--unixsocket")
            .arg(self.socket())
            .args(["--unixsocketperm", "700"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--maxmemory-policy", "noeviction"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the store's server");
        self.child = Some(child);
        wait_until("the store's server to answer", || self.ping());
    }

    /// `kill -9`, and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// One command's reply, raw (RESP), for assertions such as `INFO`.
    pub fn command(&self, args: &[&str]) -> String {
        redis_command(&self.socket(), args)
    }
}

/// A TCP port on 127.0.0.1 free a moment ago, for a program that takes a
/// port number and not a listening socket (redis-server's TLS port, a
/// sentinel).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Where the RESP reply starting at `at` in `buf` ends, once it is all
/// there (`None` while it is not).
fn resp_end(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[at + 1..line_end]).ok()?;
    let next = line_end + 2;
    match buf[at] {
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some(next);
            }
            let end = next + n as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut pos = next;
            for _ in 0..n.max(0) {
                pos = resp_end(buf, pos)?;
            }
            Some(pos)
        }
        _ => Some(next),
    }
}

/// One command to the redis-server on `socket`; its reply, raw (RESP),
/// read until it is complete (at most 10 s).
pub fn redis_command(socket: &Path, args: &[&str]) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect redis");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while resp_end(&out, 0).is_none() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
