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
//! Logging goes through the `log` crate; the binaries use `env_logger`, which
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

pub mod agent;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod error;
pub mod files;
pub mod limits;
pub mod liveness;
pub mod notify;
pub mod provision;
pub mod random;
pub mod ratelimit;
pub mod relay;
pub mod secret;
pub mod server;
pub mod signals;
pub mod state;
pub mod tcp_info;
pub mod threads;
pub mod tls;
pub mod totp;
pub mod users;
pub mod wire;

pub use error::{Error, Result};
