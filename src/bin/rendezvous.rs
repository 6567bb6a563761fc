//! `rendezvous`: the client front end (`expose`, `connect`, `lookup`, `totp`).
//! Parses arguments and dispatches to the library; see rendezvous(1).

use argh::FromArgs;
use rendezvous::programs::{self as cli, connect_listen, connect_stdio, expose, lookup};
use rendezvous::programs::{read_secret_and_params, totp_now, TotpParams};
use rendezvous::{limits, ClientFlags, Error, ExposeOpts, Protocol, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(FromArgs)]
/// rendezvous client: expose a hidden server, or connect to one
struct Top {
    /// print the version (and the commit it was built from) and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Cmd {
    Expose(Expose),
    Connect(Connect),
    Lookup(Lookup),
    Totp(Totp),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "expose")]
/// keep waiting connections at the rendezvous server and relay them to a local service
struct Expose {
    /// the local service, HOST:PORT
    #[argh(option)]
    to: String,
    /// provisioning file
    #[argh(option)]
    config: Option<PathBuf>,
    /// registrar URL (https://host:port; default port 8898); repeat it for several nodes
    #[argh(option)]
    server: Vec<String>,
    /// this hidden server's UUID
    #[argh(option)]
    uuid: Option<String>,
    /// file holding the TOTP secret (default: the provisioning file, else $RENDEZVOUS_SECRET)
    #[argh(option)]
    secret_file: Option<PathBuf>,
    /// generic or http (default generic)
    #[argh(option)]
    protocol: Option<String>,
    /// waiting connections to keep (default 4)
    #[argh(option)]
    pool: Option<usize>,
    /// trust this CA (or self-signed certificate) PEM
    #[argh(option)]
    ca: Option<PathBuf>,
    /// trust the server certificate with this SHA-256 fingerprint
    #[argh(option)]
    pin_sha256: Option<String>,
    /// seconds of silence before TCP keepalive probes a connection to the server (default 25)
    #[argh(option)]
    keepalive: Option<u64>,
    /// seconds after which a waiting connection is retired and replaced (default 600)
    #[argh(option)]
    park_max_age: Option<u64>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "connect")]
/// reach a hidden server: relay stdin/stdout, or each connection to --listen
struct Connect {
    /// provisioning file
    #[argh(option)]
    config: Option<PathBuf>,
    /// registrar URL (https://host:port; default port 8898); repeat it for several nodes
    #[argh(option)]
    server: Vec<String>,
    /// the hidden server's UUID
    #[argh(option)]
    uuid: Option<String>,
    /// trust this CA (or self-signed certificate) PEM
    #[argh(option)]
    ca: Option<PathBuf>,
    /// trust the server certificate with this SHA-256 fingerprint
    #[argh(option)]
    pin_sha256: Option<String>,
    /// listen here and relay each accepted connection (default: stdin/stdout)
    #[argh(option)]
    listen: Option<String>,
    /// seconds of silence before TCP keepalive probes the connection to the server (default 25)
    #[argh(option)]
    keepalive: Option<u64>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "lookup")]
/// print the rendezvous triple for a hidden server as JSON
struct Lookup {
    /// provisioning file
    #[argh(option)]
    config: Option<PathBuf>,
    /// registrar URL (https://host:port; default port 8898); repeat it for several nodes
    #[argh(option)]
    server: Vec<String>,
    /// the hidden server's UUID
    #[argh(option)]
    uuid: Option<String>,
    /// trust this CA (or self-signed certificate) PEM
    #[argh(option)]
    ca: Option<PathBuf>,
    /// trust the server certificate with this SHA-256 fingerprint
    #[argh(option)]
    pin_sha256: Option<String>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "totp")]
/// print the current TOTP code
struct Totp {
    /// file holding the secret (base32, or a provisioning file; default $RENDEZVOUS_SECRET)
    #[argh(option)]
    secret_file: Option<PathBuf>,
    /// step in seconds (default: the provisioning file's, else 30)
    #[argh(option)]
    step: Option<u64>,
    /// digits, 6 to 8 (default: the provisioning file's, else 6)
    #[argh(option)]
    digits: Option<u32>,
    /// the password at this Unix time instead of now
    #[argh(option)]
    at: Option<u64>,
}

/// The connection flags that `expose`, `connect` and `lookup` share, moved
/// out of a subcommand's parsed arguments (argh has no flatten).
macro_rules! client_flags {
    ($cmd:ident, $secret_file:expr, $keepalive:expr) => {
        ClientFlags {
            config: $cmd.config,
            server: $cmd.server,
            uuid: $cmd.uuid,
            ca: $cmd.ca,
            pin_sha256: $cmd.pin_sha256,
            secret_file: $secret_file,
            keepalive: $keepalive,
        }
    };
}

fn run(cmd: Cmd) -> Result<(), Error> {
    match cmd {
        Cmd::Totp(t) => {
            let (secret, (step, digits)) = read_secret_and_params(t.secret_file.as_deref())?;
            let params = TotpParams {
                step: t.step.or(step).unwrap_or(cli::DEFAULT_STEP),
                digits: t.digits.or(digits).unwrap_or(cli::DEFAULT_DIGITS),
            };
            totp_now(&secret, params, t.at, &mut std::io::stdout().lock())
        }
        Cmd::Expose(e) => {
            let flags = client_flags!(e, e.secret_file, e.keepalive);
            let settings = Settings::resolve(&flags, true)?;
            let protocol = match e.protocol.as_deref().unwrap_or("generic") {
                "generic" => Protocol::Generic,
                "http" => Protocol::Http,
                other => {
                    return Err(Error::Usage(format!(
                        "--protocol must be generic or http, not {other:?}"
                    )))
                }
            };
            let park_max_age = match e.park_max_age {
                None => limits::PARK_MAX_AGE,
                Some(s @ 1..=86_400) => std::time::Duration::from_secs(s),
                Some(_) => {
                    return Err(Error::Usage(
                        "--park-max-age must be from 1 to 86400 seconds".into(),
                    ))
                }
            };
            let opts = ExposeOpts {
                to: e.to,
                pool: e.pool.unwrap_or(limits::AGENT_POOL),
                protocol,
                park_max_age,
            };
            expose(&settings, opts)
        }
        Cmd::Connect(c) => {
            let flags = client_flags!(c, None, c.keepalive);
            let settings = Settings::resolve(&flags, false)?;
            match c.listen {
                Some(addr) => connect_listen(&settings, &addr),
                None => connect_stdio(&settings),
            }
        }
        Cmd::Lookup(l) => {
            let flags = client_flags!(l, None, None);
            let settings = Settings::resolve(&flags, false)?;
            lookup(&settings, &mut std::io::stdout().lock())
        }
    }
}

fn main() -> ExitCode {
    let top: Top = match cli::parse_args() {
        Ok(t) => t,
        Err(code) => return code,
    };
    let (Some(cmd), false) = (top.cmd, top.version) else {
        return cli::version_or_usage("rendezvous", top.version);
    };
    cli::init_logger();
    cli::finish("rendezvous", run(cmd))
}
