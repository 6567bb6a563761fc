//! A hidden server's waiting connection as the registry holds it (no
//! thread: a socket, the bytes it sent early, its peer, its id and its
//! connection slot), and the peek that tells whether it is still open.

use crate::server::accept::ConnSlot;
use crate::tls::ServerStream;
use std::net::{SocketAddr, TcpStream};

/// The socket of a parked responder.
#[derive(Debug)]
pub enum ParkedStream {
    /// A plain TCP socket (generic protocol).
    Tcp(TcpStream),
    /// A TLS connection (HTTP-specific protocol).
    Tls(Box<ServerStream>),
}

impl ParkedStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ParkedStream::Tcp(s) => s,
            ParkedStream::Tls(s) => s.get_ref(),
        }
    }
}

/// A responder waiting in a pool. Holds no thread.
#[derive(Debug)]
pub struct Parked {
    /// The socket.
    pub stream: ParkedStream,
    /// Bytes the responder sent after its cookie line, before any `+OK`.
    pub early: Vec<u8>,
    /// The responder's address.
    pub peer: SocketAddr,
    /// Its connection id, for the log.
    pub conn: u64,
    /// Its place in the connection count.
    pub slot: ConnSlot,
    /// Until when a request must not be written to it (its `200` went
    /// out just before, and the hidden server may drop what comes in the
    /// same read); `None` when it may be written at once.
    pub pause_until: Option<std::time::Instant>,
}

/// Whether a parked socket is still open: a non-blocking peek that sees
/// neither EOF nor an error. Data waiting counts as alive.
pub fn alive(sock: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    #[cfg(target_os = "linux")]
    {
        use rustix::net::{recv, RecvFlags};
        // One syscall: peek without blocking (no fcntl round trips).
        match recv(sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((0, _)) => false,
            Ok(_) => true,
            Err(e) => e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        if sock.set_nonblocking(true).is_err() {
            return false;
        }
        let open = match sock.peek(&mut b) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        };
        sock.set_nonblocking(false).is_ok() && open
    }
}
