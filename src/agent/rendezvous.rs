//! Both agents' side of the rendezvous server: connect, send the cookie
//! line (a mobile client's first bytes may follow it), read the status
//! line and not one relayed byte after it.

use crate::agent::client::{connect_any, DialError};
use crate::error::{Error, IoResultExt, Result};
use crate::limits::{CLIENT_TIMEOUT, MAX_STATUS_LINE};
use crate::wire::{TakeError, Triple};
use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Connect to a triple's rendezvous server and send the cookie line.
pub fn connect_for_park(triple: &Triple) -> Result<TcpStream> {
    let mut sock = connect_rendezvous(triple)?;
    sock.write_all(&cookie_line(triple, &[])).op("send cookie")?;
    Ok(sock)
}

/// A connection to a triple's rendezvous server, Nagle off.
pub fn connect_rendezvous(triple: &Triple) -> Result<TcpStream> {
    let sock = connect_any(&triple.host, triple.port, CLIENT_TIMEOUT)?;
    let _ = sock.set_nodelay(true);
    Ok(sock)
}

/// The cookie line, and `early` after it.
pub fn cookie_line(triple: &Triple, early: &[u8]) -> Vec<u8> {
    [triple.cookie.as_bytes(), b"\n", early].concat()
}

/// Read the status line, and not one relayed byte after it: peek at what
/// came, read the line (2 calls for `+OK`; byte by byte took 4).
pub fn read_status(sock: &mut TcpStream) -> std::result::Result<(), DialError> {
    let mut line = Vec::new();
    let mut buf = [0u8; MAX_STATUS_LINE + 1];
    loop {
        let room = MAX_STATUS_LINE + 1 - line.len();
        let n = match sock.peek(&mut buf[..room]) {
            Ok(0) => {
                let eof = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a status line",
                );
                return Err(DialError::Io(Error::io("read status", eof)));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DialError::Io(Error::io("read status", e))),
        };
        let end = buf[..n].iter().position(|&b| b == b'\n');
        let take = end.map_or(n, |i| i + 1);
        sock.read_exact(&mut buf[..take])
            .map_err(|e| DialError::Io(Error::io("read status", e)))?;
        line.extend_from_slice(&buf[..end.unwrap_or(take)]);
        if end.is_some() {
            break;
        }
        if line.len() > MAX_STATUS_LINE {
            return Err(DialError::Invalid("status line too long".into()));
        }
    }
    let text = String::from_utf8_lossy(&line)
        .trim_end_matches('\r')
        .to_string();
    match text.as_str() {
        s if s.starts_with("+OK") => {
            let _ = sock.set_read_timeout(None);
            Ok(())
        }
        "-ERR not registered" => Err(DialError::Refused(TakeError::NotRegistered)),
        "-ERR not ready" => Err(DialError::Refused(TakeError::NotReady)),
        other => Err(DialError::Invalid(other.chars().take(80).collect())),
    }
}
