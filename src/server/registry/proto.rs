//! The two protocols whose sockets a registration's pools hold.

/// Which protocol a pool belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// Plain TCP sockets from the rendezvous port.
    Generic,
    /// TLS connections parked inside a `CONNECT`.
    Http,
}

impl Proto {
    pub(super) fn index(self) -> usize {
        match self {
            Proto::Generic => 0,
            Proto::Http => 1,
        }
    }

    /// The name used in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Generic => "generic",
            Proto::Http => "http",
        }
    }
}
