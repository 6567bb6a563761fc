//! One side of a relayed pair, plain TCP or TLS, and the byte counts of a
//! finished pair.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// One side of a relayed pair. Two threads use a leg at once (one reads, the
/// other writes), so every method takes `&self`.
pub trait Leg: Send + Sync {
    /// Read some bytes; `Ok(0)` is end of stream.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write all of `buf`.
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;
    /// No more bytes will be written (half-close).
    fn shutdown_write(&self);
    /// Tear both directions down now (an error on the pair).
    fn abort(&self);
    /// The plain TCP socket, when this leg is one (the relay then moves
    /// bytes with `splice(2)` on Linux, never through user memory).
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
    /// The TCP socket underneath, plain or TLS (for its settings and its
    /// `TCP_INFO`).
    fn socket(&self) -> &TcpStream;
}

impl Leg for TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s: &TcpStream = self;
        Read::read(&mut s, buf)
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut s: &TcpStream = self;
        Write::write_all(&mut s, buf)
    }

    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }

    fn abort(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }

    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }

    fn socket(&self) -> &TcpStream {
        self
    }
}

/// Bytes moved each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Initiator to responder.
    pub up: u64,
    /// Responder to initiator.
    pub down: u64,
    /// How long the pair lasted.
    pub duration: Duration,
}
