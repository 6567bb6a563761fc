//! The rendezvous server's line protocol: a connection's first line,
//! `R<cookie>` or `I<cookie>` in at most [`MAX_COOKIE_LINE`] bytes, and the
//! lines it answers, `+OK` or one of the three `-ERR` refusals.

use crate::limits::MAX_COOKIE_LINE;
use crate::secret::Cookie;

pub use crate::error::TakeError;

/// The success line sent to both sides.
pub const OK: &[u8] = b"+OK\n";

/// The wire text of each refusal.
pub fn err_line(e: Option<TakeError>) -> &'static [u8] {
    match e {
        None => b"-ERR invalid cookie\n",
        Some(TakeError::NotRegistered) => b"-ERR not registered\n",
        Some(TakeError::NotReady) => b"-ERR not ready\n",
    }
}

/// What the bytes received so far on a rendezvous connection amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstLine {
    /// No newline yet, and still within [`MAX_COOKIE_LINE`].
    Incomplete,
    /// Too long, or not `R`/`I` followed by a well-formed cookie.
    Invalid,
    /// A cookie; the bytes from `rest` on came after its line.
    Cookie {
        /// The cookie.
        cookie: Cookie,
        /// Offset of the first byte after the newline.
        rest: usize,
    },
}

/// Parse the first line: at most [`MAX_COOKIE_LINE`] bytes including the
/// newline; an optional `\r` before it is ignored.
///
/// ```
/// use rendezvous::wire::{parse_first_line, FirstLine};
/// assert_eq!(parse_first_line(b"R0000"), FirstLine::Incomplete);
/// assert_eq!(parse_first_line(b"hello\n"), FirstLine::Invalid);
/// let line = format!("I{}\nrest", uuid::Uuid::new_v4());
/// assert!(matches!(parse_first_line(line.as_bytes()), FirstLine::Cookie { rest: 38, .. }));
/// ```
pub fn parse_first_line(buf: &[u8]) -> FirstLine {
    let limit = buf.len().min(MAX_COOKIE_LINE);
    let Some(nl) = buf[..limit].iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_COOKIE_LINE {
            FirstLine::Invalid
        } else {
            FirstLine::Incomplete
        };
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    match std::str::from_utf8(line).ok().and_then(Cookie::parse) {
        Some(cookie) => FirstLine::Cookie {
            cookie,
            rest: nl + 1,
        },
        None => FirstLine::Invalid,
    }
}
