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
    /// The rendezvous server forwards bytes sent after the cookie line with
    /// its `+OK` (lookups from this project's registrar): a mobile client
    /// may send its first bytes with the cookie. Absent from other
    /// registrars' answers; the original's clients wait for the `+OK`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early: bool,
}

impl fmt::Debug for Triple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Triple({}:{}, cookie=***)", self.host, self.port)
    }
}
