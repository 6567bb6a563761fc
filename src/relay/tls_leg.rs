//! A TLS leg: one rustls connection shared by the two threads of a pair,
//! with its lock order (connection state, then socket writer).

use crate::relay::leg::Leg;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Mutex, PoisonError};

/// A TLS leg: one rustls connection shared by the pair's two threads.
///
/// Lock order is always *connection state → socket writer*: a thread encrypts
/// (or processes received records) under the connection lock, takes the
/// writer lock before releasing it, and does the blocking socket write holding
/// only the writer lock. No thread blocks on the socket while holding the
/// connection lock; the blocking socket read holds no lock at all.
pub struct TlsLeg {
    conn: Mutex<rustls::Connection>,
    sock: TcpStream,
    /// The socket writer lock, with the buffer of records being written.
    writer: Mutex<Vec<u8>>,
    /// The reading thread's buffers (only it locks this).
    rbuf: Mutex<ReadState>,
}

/// Buffers of a TLS leg's reading side.
struct ReadState {
    /// Records as read from the socket.
    raw: Vec<u8>,
    /// Plaintext taken out of rustls to make room, not yet returned.
    pending: Vec<u8>,
    /// How much of `pending` was returned.
    pos: usize,
}

/// Append every decrypted byte waiting in `conn` to `pending`.
fn move_plaintext(conn: &mut rustls::Connection, pending: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        match conn.reader().read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::UnexpectedEof =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
    }
}

impl TlsLeg {
    /// Wrap an established connection and its socket (timeouts are cleared).
    pub fn new(conn: impl Into<rustls::Connection>, sock: TcpStream) -> TlsLeg {
        let _ = sock.set_read_timeout(None);
        let _ = sock.set_write_timeout(None);
        TlsLeg {
            conn: Mutex::new(conn.into()),
            sock,
            writer: Mutex::new(Vec::new()),
            rbuf: Mutex::new(ReadState {
                raw: vec![0u8; crate::limits::TLS_READ_BUF],
                pending: Vec::new(),
                pos: 0,
            }),
        }
    }

    fn lock_conn(&self) -> std::sync::MutexGuard<'_, rustls::Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take the pending TLS records out of `conn` into the writer's buffer
    /// (the writer lock is taken before the connection lock is released),
    /// then write them to the socket holding only the writer lock.
    fn flush_locked(
        &self,
        mut conn: std::sync::MutexGuard<'_, rustls::Connection>,
    ) -> io::Result<()> {
        if !conn.wants_write() {
            return Ok(());
        }
        let mut out = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        out.clear();
        while conn.wants_write() {
            conn.write_tls(&mut *out)?;
        }
        drop(conn);
        let mut s: &TcpStream = &self.sock;
        let r = Write::write_all(&mut s, &out);
        // Keep the allocation for the next records, unless a burst grew it.
        if out.capacity() > 256 * 1024 {
            *out = Vec::new();
        }
        r
    }
}

impl Leg for TlsLeg {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rs = self.rbuf.lock().unwrap_or_else(PoisonError::into_inner);
        let ReadState { raw, pending, pos } = &mut *rs;
        loop {
            if *pos < pending.len() {
                let n = buf.len().min(pending.len() - *pos);
                buf[..n].copy_from_slice(&pending[*pos..*pos + n]);
                *pos += n;
                if *pos == pending.len() {
                    pending.clear();
                    *pos = 0;
                }
                return Ok(n);
            }
            {
                let mut conn = self.lock_conn();
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The peer closed without close_notify: end of stream all the same.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            let mut s: &TcpStream = &self.sock;
            let n = match Read::read(&mut s, raw) {
                Ok(0) => return Ok(0),
                Ok(n) => n,
                Err(e) => return Err(e),
            };
            let mut conn = self.lock_conn();
            let mut slice = &raw[..n];
            while !slice.is_empty() {
                // rustls refuses more records while 16 KiB of plaintext wait
                // to be read, and one chunk can complete two records: move
                // the plaintext aside first (bounded by the chunk's size).
                move_plaintext(&mut conn, pending)?;
                conn.read_tls(&mut slice)?;
                if let Err(e) = conn.process_new_packets() {
                    // Send the alert, then fail.
                    let _ = self.flush_locked(conn);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            if conn.wants_write() {
                self.flush_locked(conn)?;
            }
        }
    }

    fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let mut conn = self.lock_conn();
            let n = conn.writer().write(buf)?;
            buf = &buf[n..];
            self.flush_locked(conn)?;
        }
        Ok(())
    }

    fn shutdown_write(&self) {
        let mut conn = self.lock_conn();
        conn.send_close_notify();
        let _ = self.flush_locked(conn);
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    fn abort(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}
