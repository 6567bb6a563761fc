//! `rendezvousd`: the server front end. Parses arguments and dispatches to the
//! library; see rendezvousd(8).

use argh::FromArgs;
use rendezvous::programs::{self as cli, cert, user_add, user_list, user_remove};
use rendezvous::{Config, Error, Keepalive, StatePaths};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(FromArgs)]
/// rendezvous server: registrar (HTTPS) and rendezvous server (TCP), and user provisioning
struct Top {
    /// print the version (and the commit it was built from) and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    cmd: Option<Cmd>,
}

// The command line is parsed once, at start: the size of `Serve` (all
// its options) costs nothing worth a box, which argh's derive cannot take.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs)]
#[argh(subcommand)]
enum Cmd {
    Serve(Serve),
    User(User),
    Cert(Cert),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
/// run the registrar and the rendezvous server
struct Serve {
    /// registrar listen address (default 0.0.0.0:8898)
    #[argh(option)]
    registrar: Option<String>,
    /// rendezvous listen address, or "none" (default 0.0.0.0:8899)
    #[argh(option)]
    rendezvous: Option<String>,
    /// host name put into triples (default: the client's Host header)
    #[argh(option)]
    public_host: Option<String>,
    /// port put into triples (default: the rendezvous listen port)
    #[argh(option)]
    public_port: Option<u16>,
    /// state folder (default $RENDEZVOUS_STATE_DIR, else /var/lib/rendezvous)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// users file (default STATE/users)
    #[argh(option)]
    users: Option<PathBuf>,
    /// certificate chain, PEM (default STATE/cert.pem)
    #[argh(option)]
    cert: Option<PathBuf>,
    /// private key, PEM (default STATE/key.pem)
    #[argh(option)]
    key: Option<PathBuf>,
    /// serve the registrar over plain HTTP (TLS terminated elsewhere)
    #[argh(switch)]
    plaintext: bool,
    /// waiting sockets kept per UUID and protocol (default 16)
    #[argh(option)]
    pool_max: Option<usize>,
    /// seconds an initiator waits for a responder (default 10)
    #[argh(option)]
    pair_timeout: Option<u64>,
    /// seconds for the TLS handshake and first head, or the cookie line (default 10)
    #[argh(option)]
    handshake_timeout: Option<u64>,
    /// concurrent connections, all listeners together (default 4096)
    #[argh(option)]
    max_connections: Option<usize>,
    /// seconds an unused R cookie stays valid (default 600)
    #[argh(option)]
    cookie_ttl: Option<u64>,
    /// seconds active pairs may run after SIGTERM (default 10)
    #[argh(option)]
    drain_timeout: Option<u64>,
    /// address range allowed to read the metrics (repeatable; default loopback only)
    #[argh(option)]
    metrics_from: Vec<String>,
    /// seconds of silence before TCP keepalive probes a parked or relayed socket (default 25)
    #[argh(option)]
    keepalive: Option<u64>,
    /// serve the metrics on their own plain-HTTP listener at this address (default off)
    #[argh(option)]
    metrics_listen: Option<String>,
    /// this server's name among the nodes sharing --store (default: the host name)
    #[argh(option)]
    node_id: Option<String>,
    /// seconds a node's lease in the store lasts unrenewed (default 15)
    #[argh(option)]
    node_ttl: Option<u64>,
    /// listen here for other nodes taking parked CONNECTs (HTTP-specific protocol across nodes)
    #[argh(option)]
    peer_listen: Option<String>,
    /// HOST:PORT other nodes reach --peer-listen at (default: --public-host and its port)
    #[argh(option)]
    peer_advertise: Option<String>,
    /// the cluster's shared secret (at least 32 bytes), for links between nodes
    #[argh(option)]
    cluster_secret_file: Option<PathBuf>,
    /// keep the state in Redis or Valkey (redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH) instead of the state folder
    #[argh(option)]
    store: Option<String>,
    /// read the store's password from FILE (default: $RENDEZVOUS_STORE_PASSWORD)
    #[argh(option)]
    store_password_file: Option<PathBuf>,
    /// trust only this PEM (a CA or the store's certificate) for a TLS store
    #[argh(option)]
    store_ca: Option<PathBuf>,
    /// ask these Redis Sentinels for the store's primary, HOST:PORT[,HOST:PORT...] (instead of --store)
    #[argh(option)]
    store_sentinel: Option<String>,
    /// the name the sentinels monitor the store by
    #[argh(option)]
    store_service: Option<String>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "user")]
/// manage the users file
struct User {
    #[argh(subcommand)]
    cmd: UserCmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum UserCmd {
    Add(UserAdd),
    List(UserList),
    Remove(UserRemove),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
/// add a hidden server and print its provisioning file
struct UserAdd {
    /// state folder (default $RENDEZVOUS_STATE_DIR, else /var/lib/rendezvous)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// users file (default STATE/users)
    #[argh(option)]
    users: Option<PathBuf>,
    /// the users table of this store (redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH) instead of the users file
    #[argh(option)]
    store: Option<String>,
    /// read the store's password from FILE (default: $RENDEZVOUS_STORE_PASSWORD)
    #[argh(option)]
    store_password_file: Option<PathBuf>,
    /// trust only this PEM (a CA or the store's certificate) for a TLS store
    #[argh(option)]
    store_ca: Option<PathBuf>,
    /// ask these Redis Sentinels for the store's primary, HOST:PORT[,HOST:PORT...] (instead of --store)
    #[argh(option)]
    store_sentinel: Option<String>,
    /// the name the sentinels monitor the store by
    #[argh(option)]
    store_service: Option<String>,
    /// free-text label
    #[argh(option)]
    label: Option<String>,
    /// the UUID (default: a new random one)
    #[argh(option)]
    uuid: Option<String>,
    /// TOTP step in seconds (default 30)
    #[argh(option, default = "30")]
    step: u64,
    /// TOTP digits, 6 to 8 (default 6)
    #[argh(option, default = "6")]
    digits: u32,
    /// registrar URL for the provisioning file (default https://HOSTNAME:8898); repeat it for several nodes
    #[argh(option)]
    server: Vec<String>,
    /// write the provisioning file here (mode 0600) instead of standard output
    #[argh(option)]
    out: Option<PathBuf>,
    /// pin this certificate (default: the state folder's, created if missing)
    #[argh(option)]
    cert: Option<PathBuf>,
    /// write "ca = PEM" instead of a pin
    #[argh(option)]
    ca: Option<PathBuf>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
/// list hidden servers (never their secrets)
struct UserList {
    /// state folder (default $RENDEZVOUS_STATE_DIR, else /var/lib/rendezvous)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// users file (default STATE/users)
    #[argh(option)]
    users: Option<PathBuf>,
    /// the users table of this store (redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH) instead of the users file
    #[argh(option)]
    store: Option<String>,
    /// read the store's password from FILE (default: $RENDEZVOUS_STORE_PASSWORD)
    #[argh(option)]
    store_password_file: Option<PathBuf>,
    /// trust only this PEM (a CA or the store's certificate) for a TLS store
    #[argh(option)]
    store_ca: Option<PathBuf>,
    /// ask these Redis Sentinels for the store's primary, HOST:PORT[,HOST:PORT...] (instead of --store)
    #[argh(option)]
    store_sentinel: Option<String>,
    /// the name the sentinels monitor the store by
    #[argh(option)]
    store_service: Option<String>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "remove")]
/// remove a hidden server
struct UserRemove {
    /// the UUID to remove
    #[argh(positional)]
    uuid: String,
    /// state folder (default $RENDEZVOUS_STATE_DIR, else /var/lib/rendezvous)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// users file (default STATE/users)
    #[argh(option)]
    users: Option<PathBuf>,
    /// the users table of this store (redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH) instead of the users file
    #[argh(option)]
    store: Option<String>,
    /// read the store's password from FILE (default: $RENDEZVOUS_STORE_PASSWORD)
    #[argh(option)]
    store_password_file: Option<PathBuf>,
    /// trust only this PEM (a CA or the store's certificate) for a TLS store
    #[argh(option)]
    store_ca: Option<PathBuf>,
    /// ask these Redis Sentinels for the store's primary, HOST:PORT[,HOST:PORT...] (instead of --store)
    #[argh(option)]
    store_sentinel: Option<String>,
    /// the name the sentinels monitor the store by
    #[argh(option)]
    store_service: Option<String>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "cert")]
/// create a self-signed certificate pair and print its SHA-256 fingerprint
struct Cert {
    /// state folder (default $RENDEZVOUS_STATE_DIR, else /var/lib/rendezvous)
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// a name for the certificate (repeatable; default localhost, the host name, 127.0.0.1, ::1)
    #[argh(option)]
    host: Vec<String>,
    /// overwrite an existing pair
    #[argh(switch)]
    force: bool,
}

fn parse_uuid(text: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::try_parse(text).map_err(|_| Error::Usage(format!("malformed uuid {text:?}")))
}

/// The store options, as every subcommand that takes them has them.
struct StoreFlags {
    url: Option<String>,
    password_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    sentinel: Option<String>,
    service: Option<String>,
}

/// `--store` (or `--store-sentinel`) and the options beside it; the
/// password from its file or the environment.
fn store_args(f: StoreFlags) -> Result<Option<cli::StoreArgs>, Error> {
    if f.url.is_none() && f.sentinel.is_none() {
        if f.ca.is_some() || f.service.is_some() || f.password_file.is_some() {
            return Err(Error::Usage(
                "--store-ca, --store-service and --store-password-file need --store or --store-sentinel".into(),
            ));
        }
        return Ok(None);
    }
    Ok(Some(cli::StoreArgs {
        url: f.url.unwrap_or_default(),
        password: cli::store_password(f.password_file.as_deref())?,
        ca: f.ca,
        sentinels: f
            .sentinel
            .map(|s| s.split(',').map(|n| n.trim().to_string()).collect())
            .unwrap_or_default(),
        service: f.service,
    }))
}

/// The store flags of a subcommand.
macro_rules! store_flags {
    ($a:expr) => {
        StoreFlags {
            url: $a.store,
            password_file: $a.store_password_file,
            ca: $a.store_ca,
            sentinel: $a.store_sentinel,
            service: $a.store_service,
        }
    };
}

fn run(cmd: Cmd) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    match cmd {
        Cmd::Serve(s) => serve(s),
        Cmd::User(User {
            cmd: UserCmd::Add(a),
        }) => {
            let opts = cli::UserAdd {
                paths: Some(StatePaths::resolve(
                    a.state_dir.as_deref(),
                    a.users.as_deref(),
                    None,
                    None,
                )),
                label: a.label,
                uuid: a.uuid.as_deref().map(parse_uuid).transpose()?,
                step: a.step,
                digits: a.digits,
                server: a.server,
                out: a.out,
                cert: a.cert,
                ca: a.ca,
                store: store_args(store_flags!(a))?,
            };
            user_add(&opts, &mut stdout)
        }
        Cmd::User(User {
            cmd: UserCmd::List(l),
        }) => user_list(
            &StatePaths::resolve(l.state_dir.as_deref(), l.users.as_deref(), None, None),
            store_args(store_flags!(l))?.as_ref(),
            &mut stdout,
        ),
        Cmd::User(User {
            cmd: UserCmd::Remove(r),
        }) => user_remove(
            &StatePaths::resolve(r.state_dir.as_deref(), r.users.as_deref(), None, None),
            store_args(store_flags!(r))?.as_ref(),
            &parse_uuid(&r.uuid)?,
        ),
        Cmd::Cert(c) => cert(
            &StatePaths::resolve(c.state_dir.as_deref(), None, None, None),
            &c.host,
            c.force,
            &mut stdout,
        ),
    }
}

fn serve(s: Serve) -> Result<(), Error> {
    let explicit_cert = s.cert.is_some() || s.key.is_some();
    if s.cert.is_some() != s.key.is_some() {
        return Err(Error::Usage("--cert and --key go together".into()));
    }
    let paths = StatePaths::resolve(
        s.state_dir.as_deref(),
        s.users.as_deref(),
        s.cert.as_deref(),
        s.key.as_deref(),
    );
    let mut cfg = Config::new(paths);
    cfg.explicit_cert = explicit_cert;
    if let Some(a) = s.registrar {
        cfg.registrar = a;
    }
    match s.rendezvous.as_deref() {
        Some("none") => cfg.rendezvous = None,
        Some(a) => cfg.rendezvous = Some(a.to_string()),
        None => {}
    }
    cfg.public_host = s.public_host;
    cfg.public_port = s.public_port;
    cfg.plaintext = s.plaintext;
    // Ranges are checked by Config::validate, which names the option.
    let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
    cfg.pair_timeout = secs(s.pair_timeout, cfg.pair_timeout);
    cfg.handshake_timeout = secs(s.handshake_timeout, cfg.handshake_timeout);
    cfg.cookie_ttl = secs(s.cookie_ttl, cfg.cookie_ttl);
    cfg.drain_timeout = secs(s.drain_timeout, cfg.drain_timeout);
    cfg.pool_max = s.pool_max.unwrap_or(cfg.pool_max);
    cfg.max_connections = s.max_connections.unwrap_or(cfg.max_connections);
    if !s.metrics_from.is_empty() {
        cfg.metrics_from = s
            .metrics_from
            .iter()
            .map(|c| c.parse().map_err(Error::Usage))
            .collect::<Result<_, _>>()?;
    }
    cfg.metrics_listen = s.metrics_listen;
    cfg.store = store_args(store_flags!(s))?;
    cfg.node_id = s.node_id;
    cfg.node_ttl = secs(s.node_ttl, cfg.node_ttl);
    cfg.peer_listen = s.peer_listen;
    cfg.peer_advertise = s.peer_advertise;
    cfg.cluster_secret_file = s.cluster_secret_file;
    if let Some(k) = s.keepalive {
        cfg.keepalive = Keepalive::from_secs(k);
    }
    cli::serve(cfg)
}

fn main() -> ExitCode {
    let top: Top = match cli::parse_args() {
        Ok(t) => t,
        Err(code) => return code,
    };
    let (Some(cmd), false) = (top.cmd, top.version) else {
        return cli::version_or_usage("rendezvousd", top.version);
    };
    cli::init_logger();
    cli::finish("rendezvousd", run(cmd))
}
