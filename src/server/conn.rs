//! A registrar connection, plain (`--plaintext`) or TLS, read one socket
//! read at a time so a caller checks its deadline between reads.

use crate::tls::{self, ServerStream};
use std::io::{self, Read, Write};
use std::net::TcpStream;

/// A registrar connection: plain or TLS.
#[derive(Debug)]
pub enum Conn {
    /// `--plaintext`.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<ServerStream>),
}

impl Conn {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

impl crate::wire::TcpBacked for Conn {
    fn tcp(&self) -> &TcpStream {
        Conn::tcp(self)
    }
}

/// One socket read at most per call (see [`tls::read_step`]): `Interrupted`
/// asks the caller, which checks its deadline, to call again.
impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => {
                let s = &mut **s;
                tls::read_step(&mut s.conn, &mut s.sock, buf)
            }
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}
