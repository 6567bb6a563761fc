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
    // The line is gathered in place (no heap): this is the deepest call of
    // `connect --listen`'s dial, whose stack page stays resident under the
    // relay (3,976 of 4,096 bytes used with a growing `Vec` and the text's
    // conversion below it, musl build).
    let mut buf = [0u8; MAX_STATUS_LINE + 1];
    let mut len = 0;
    loop {
        let n = match sock.peek(&mut buf[len..]) {
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
        let end = buf[len..len + n].iter().position(|&b| b == b'\n');
        let take = end.map_or(n, |i| i + 1);
        sock.read_exact(&mut buf[len..len + take])
            .map_err(|e| DialError::Io(Error::io("read status", e)))?;
        if let Some(i) = end {
            len += i;
            break;
        }
        len += take;
        if len > MAX_STATUS_LINE {
            return Err(DialError::Invalid("status line too long".into()));
        }
    }
    let line = &buf[..len];
    if line.starts_with(b"+OK") {
        let _ = sock.set_read_timeout(None);
        return Ok(());
    }
    let text = String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_string();
    match text.as_str() {
        "-ERR not registered" => Err(DialError::Refused(TakeError::NotRegistered)),
        "-ERR not ready" => Err(DialError::Refused(TakeError::NotReady)),
        other => Err(DialError::Invalid(other.chars().take(80).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// What `read_status` makes of `parts` (written one by one, 20 ms
    /// apart, then the writer closes), and what the socket holds after.
    fn status_of(parts: &[&[u8]]) -> (std::result::Result<(), DialError>, Vec<u8>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut sock = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let (mut peer, _) = l.accept().expect("accept");
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = std::thread::spawn(move || {
            for p in parts {
                peer.write_all(&p).expect("write");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let status = read_status(&mut sock);
        writer.join().expect("writer");
        let mut rest = Vec::new();
        if status.is_ok() {
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            sock.read_to_end(&mut rest).expect("the rest");
        }
        (status, rest)
    }

    #[test]
    fn ok_leaves_what_follows_unread_though_the_line_came_in_parts() {
        let (status, rest) = status_of(&[b"+OK\nthe answer"]);
        assert!(status.is_ok());
        assert_eq!(rest, b"the answer");
        let (status, rest) = status_of(&[b"+", b"O", b"K\r\n", b"after"]);
        assert!(status.is_ok());
        assert_eq!(rest, b"after");
    }

    #[test]
    fn refusals_and_other_lines_are_told_apart() {
        let refused = |line: &[u8]| match status_of(&[line]).0 {
            Err(DialError::Refused(t)) => Some(t),
            _ => None,
        };
        assert_eq!(refused(b"-ERR not registered\n"), Some(TakeError::NotRegistered));
        assert_eq!(refused(b"-ERR not ready\r\n"), Some(TakeError::NotReady));
        match status_of(&[b"-ERR invalid cookie\n"]).0 {
            Err(DialError::Invalid(text)) => assert_eq!(text, "-ERR invalid cookie"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_long_line_or_a_close_is_an_error() {
        let long = vec![b'x'; MAX_STATUS_LINE + 10];
        match status_of(&[&long[..100], &long[100..]]).0 {
            Err(DialError::Invalid(text)) => assert_eq!(text, "status line too long"),
            other => panic!("{other:?}"),
        }
        match status_of(&[b"+OK"]).0 {
            Err(DialError::Io(e)) => assert!(e.to_string().contains("closed before a status line"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
