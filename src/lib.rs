//! # rendezvous
//!
//! A rendezvous server and client that let a *hidden server* behind NAT or a
//! firewall be reached by *mobile clients* through a public server that moves
//! the octets back and forth. Two protocols: the generic one (an HTTPS
//! registrar hands out rendezvous triples; a plain TCP rendezvous server pairs
//! the two sides by cookie) and the HTTP-specific one (the hidden server waits
//! inside an HTTPS `CONNECT`; an ordinary HTTPS client names it in its
//! `Authorization` header). See rendezvous-protocol(7).
//!
//! ## Embedding
//!
//! A gateway's own daemon can run the hidden server's agent, or dial a
//! hidden server, or run a server, with the types at the crate's root; the
//! modules behind them are the crate's inside (`pub(crate)`; the crate's own
//! tests, fuzz targets and benchmark see them through the `internals`
//! feature, which is not an API). `examples/` has an embedded
//! agent and an embedded dialer.
//!
//! ```no_run
//! use rendezvous::{Agent, ClientFlags, ExposeOpts, Settings};
//!
//! // The provisioning file `rendezvousd user add` wrote (it holds the secret).
//! let flags = ClientFlags {
//!     config: Some("/etc/rendezvous/gw.conf".into()),
//!     ..ClientFlags::default()
//! };
//! let settings = Settings::resolve(&flags, true)?;
//! let agent = Agent::new(&settings, ExposeOpts { to: "127.0.0.1:22".into(), ..ExposeOpts::default() })?;
//! // Agent::stop, from another thread, ends run.
//! agent.run()?;
//! # Ok::<(), rendezvous::Error>(())
//! ```
//!
//! ## Threading model
//!
//! Synchronous and thread-per-connection: blocking `std::net` listeners, one
//! accept thread per listener that only accepts, one thread per accepted socket
//! (TLS handshake, head, authentication), and two threads per relayed pair,
//! one per direction. Parked sockets hold no thread. No async runtime.
//!
//! ## Errors
//!
//! Every fallible function returns [`error::Error`]; its `Display` reads
//! `what: why`, and [`error::Error::exit_code`] maps it to the front ends'
//! exit status (2 for usage errors, else 1).
//!
//! ## Log levels
//!
//! Logging goes through the `log` crate; the binaries use our `logger`, which
//! honours `RUST_LOG` (default `info`; no colours, no timestamps when stderr
//! is not a terminal). Targets are module paths, so
//! `RUST_LOG=rendezvous::rendezvous=debug` works (the targets keep the names
//! of the modules they were first written in; rendezvousd(8) lists them).
//!
//! * `warn`: operator-actionable or security-relevant (file modes, reload
//!   errors, lockouts, limits reached), the repeated ones rate-limited.
//! * `info`: lifecycle, and one line per completed unit of work (`pair done`,
//!   registrations, failed authentications without the credential).
//! * `debug`: per-connection state transitions.
//!
//! Errors that stop the process are not logged: the front end prints them as
//! one `prog: what: why` line and exits 1.
//!
//! No level ever logs a TOTP secret, a token, a cookie, an `Authorization`
//! value or a raw query string.

// Denied everywhere; `tcp_info` alone allows it, for one getsockopt whose
// soundness its comment proves.
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// Declares the crate's inside: `pub(crate)` in a normal build, so the
/// compiler sees what nothing uses; public (and hidden from the
/// documentation) with the `internals` feature, which only the crate's own
/// tests, examples, fuzz targets and benchmark turn on (Cargo.toml's
/// dev-dependency on the crate itself).
macro_rules! inside {
    ($($m:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $m;
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $m;
    )*};
}

inside!(
    agent, calendar, certs, cli, clock, files, liveness, logger, notify, provision, random,
    ratelimit, relay, secret, server, signals, state, tcp_info, threads, tls, totp, users, wire,
);
pub mod error;
pub mod limits;

/// What the two programs in `src/bin/` call besides the API below: they
/// parse their command lines, dispatch here, and print one error line.
/// Not an API.
#[doc(hidden)]
pub mod programs {
    pub use crate::agent::dial::{connect_listen, connect_stdio, lookup};
    pub use crate::agent::expose::expose;
    pub use crate::cli::{finish, init_logger, parse_args, version_or_usage};
    pub use crate::provision::read_secret_and_params;
    pub use crate::server::admin::{cert, user_add, user_list, user_remove, StoreArgs, UserAdd};
    pub use crate::server::config::store_password;
    pub use crate::server::serve;
    pub use crate::totp::{totp_now, Params as TotpParams, DEFAULT_DIGITS, DEFAULT_STEP};
}

// The API an embedder needs: run an agent and stop it, dial a hidden
// server and get a stream, run a server and stop it, and the error type.
pub use agent::dial::Dialer;
pub use agent::expose::{Agent, ExposeOpts, Protocol};
pub use agent::settings::{ClientFlags, ServerUrl, Settings};
pub use error::{Error, Result};
pub use liveness::Keepalive;
pub use server::{Config, Server};
pub use state::StatePaths;
pub use tls::Trust;
