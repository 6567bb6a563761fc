//! The rendezvous triple the registrar hands out: the rendezvous server's
//! host and port, and a cookie, as JSON.

use std::fmt;

/// A rendezvous triple. Its `Debug` hides the cookie.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Triple {
    /// The rendezvous server's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The cookie (`R…` or `I…`): the caller's secret.
    pub cookie: String,
    /// Seconds an unused `R` cookie lives (registrations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

impl fmt::Debug for Triple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Triple({}:{}, cookie=***)", self.host, self.port)
    }
}
