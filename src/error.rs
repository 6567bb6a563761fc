//! The crate's error type: one hand-written enum whose variants are split by who
//! acts on them (the operator, the peer, the user at the command line), with a
//! `Display` that reads as `what: why` and an exit-code mapping for the front ends.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Which phase ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The TLS handshake did not finish within its deadline.
    Handshake,
    /// The first request head (or cookie line) did not arrive within its deadline.
    Head,
    /// No responder arrived within the pair timeout.
    Pair,
    /// A TCP connect did not complete.
    Connect,
    /// A read or write on an established connection (its socket timeout).
    Io,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timeout::Handshake => "TLS handshake timed out",
            Timeout::Head => "request head timed out",
            Timeout::Pair => "no hidden server arrived in time",
            Timeout::Connect => "connect timed out",
            Timeout::Io => "timed out",
        })
    }
}

/// Why an authentication failed. Never carries the credential itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The UUID is not in the users file.
    UnknownUser,
    /// The token is malformed or does not match.
    BadToken,
    /// The token's time step was already used.
    Replay,
    /// The cookie is unknown or expired.
    BadCookie,
    /// Too many failures: try again later.
    LockedOut,
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthFailure::UnknownUser => "unknown uuid",
            AuthFailure::BadToken => "bad token",
            AuthFailure::Replay => "token already used",
            AuthFailure::BadCookie => "bad or expired cookie",
            AuthFailure::LockedOut => "locked out",
        })
    }
}

/// Why an initiator got no responder. Mapped to the wire by the callers:
/// `-ERR not registered` / `-ERR not ready` (generic), 404 (HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// No live cookie of that role (or no live registration).
    NotRegistered,
    /// Registered, but no responder arrived within the pair timeout.
    NotReady,
}

/// Everything that can go wrong in this crate.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed; `op` says which ("read users file").
    Io {
        /// What we were doing.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A deadline passed.
    Timeout(Timeout),
    /// TLS failed (handshake, certificate, pin).
    Tls(rustls::Error),
    /// A file or flag has bad content; `line` is 1-based when known.
    Config {
        /// The file (or flag name) at fault.
        path: PathBuf,
        /// The 1-based line number, for files.
        line: Option<usize>,
        /// What is wrong.
        msg: String,
    },
    /// The peer broke the protocol.
    Protocol(String),
    /// Authentication failed (no secret inside).
    Auth(AuthFailure),
    /// The registrar's clock (its `Date` header) minus ours, in seconds, is
    /// too large for a TOTP code to match.
    ClockSkew(i64),
    /// The command line is wrong (exit status 2).
    Usage(String),
    /// The rendezvous server refused a pairing (`-ERR not registered` or
    /// `-ERR not ready`): the caller may look the hidden server up again, or
    /// retry later.
    Refused(TakeError),
    /// The work was stopped (an agent's `stop`) before it finished.
    Stopped,
    /// A runtime failure with its own message ("certificate exists").
    Other(String),
}

impl Error {
    /// The process exit status this error maps to: 2 for usage errors, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Wrap an I/O error with what we were doing.
    pub fn io(op: &'static str, source: io::Error) -> Error {
        Error::Io { op, source }
    }

    /// A configuration error at `path` (and `line`, when known).
    pub fn config(path: impl Into<PathBuf>, line: Option<usize>, msg: impl Into<String>) -> Error {
        Error::Config {
            path: path.into(),
            line,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, source } => write!(f, "{op}: {source}"),
            Error::Timeout(t) => write!(f, "{t}"),
            Error::Tls(e) => write!(f, "tls: {e}"),
            Error::Config {
                path,
                line: Some(line),
                msg,
            } => write!(f, "{}:{line}: {msg}", path.display()),
            Error::Config {
                path,
                line: None,
                msg,
            } => write!(f, "{}: {msg}", path.display()),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Auth(a) => write!(f, "authentication failed: {a}"),
            Error::ClockSkew(s) => write!(
                f,
                "the local clock is {} s {} the registrar's (its Date header), \
                 so TOTP codes cannot match: set the clock (NTP)",
                s.unsigned_abs(),
                if *s > 0 { "behind" } else { "ahead of" }
            ),
            Error::Usage(m) => write!(f, "{m}"),
            Error::Refused(TakeError::NotRegistered) => f.write_str("rendezvous: not registered"),
            Error::Refused(TakeError::NotReady) => {
                f.write_str("rendezvous: not ready (no hidden server waiting)")
            }
            Error::Stopped => f.write_str("stopped"),
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        // An io::Error that carries one of ours (from a Read/Write adapter) is unwrapped.
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(ours) = inner.downcast::<Error>() {
                    return *ours;
                }
            }
            return Error::Other("unknown error".into());
        }
        if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock {
            return Error::Timeout(Timeout::Io);
        }
        Error::Io {
            op: "i/o",
            source: e,
        }
    }
}

impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Error {
        Error::Tls(e)
    }
}

/// Adds context to an `io::Result`, as `anyhow::Context` would.
pub trait IoResultExt<T> {
    /// Wrap the error as `Error::Io { op, .. }`.
    fn op(self, op: &'static str) -> Result<T, Error>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn op(self, op: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::Io { op, source })
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Errors travel through every Result in the relay paths; keep them cheap to move.
        assert!(
            std::mem::size_of::<Error>() <= 72,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn display_reads_what_why() {
        let e = Error::io(
            "read users file",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.to_string(), "read users file: permission denied");
        let c = Error::config("/x/users", Some(3), "bad secret");
        assert_eq!(c.to_string(), "/x/users:3: bad secret");
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(c.exit_code(), 1);
    }

    #[test]
    fn io_error_unwraps_ours() {
        let inner = Error::Usage("bad".into());
        let io = io::Error::other(inner);
        match Error::from(io) {
            Error::Usage(m) => assert_eq!(m, "bad"),
            other => panic!("{other:?}"),
        }
    }
}
