//! The relay: two threads per pair, one per direction, each reading into its
//! own buffer and writing it all to the other side. EOF on one side becomes
//! `shutdown(Write)` on the other (half-close, so the last bytes are never
//! lost); an error shuts both sides down; both directions done closes both.
//! Legs are a trait so plain TCP and TLS legs relay through the same loop.

use crate::limits::RELAY_BUF;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

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

/// One direction: `splice(2)` between two TCP sockets where possible, else
/// the portable copy loop.
fn direction(src: &dyn Leg, dst: &dyn Leg, counter: &AtomicU64) {
    #[cfg(target_os = "linux")]
    if let (Some(s), Some(d)) = (src.tcp(), dst.tcp()) {
        if splice::pump(s, d, counter).is_ok() {
            return;
        }
    }
    pump(src, dst, counter)
}

#[cfg(target_os = "linux")]
mod splice {
    //! Socket → pipe → socket with `splice(2)`: the bytes stay in the kernel,
    //! so a relayed pair costs no user-space buffer and half the copies.
    use super::*;
    use rustix::io::Errno;
    use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};

    use crate::limits::{DEFAULT_PIPE, MAX_BIG_PIPES, PIPE_SIZE};

    static BIG_PIPES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// One of the [`MAX_BIG_PIPES`]; returned on drop.
    pub(super) struct BigPipe {
        pub(super) size: usize,
    }

    impl BigPipe {
        /// Enlarge `pipe` to [`PIPE_SIZE`] if a slot is free and the kernel agrees.
        fn try_grow(pipe: &rustix::fd::OwnedFd) -> Option<BigPipe> {
            if BIG_PIPES.fetch_add(1, Ordering::AcqRel) >= MAX_BIG_PIPES {
                BIG_PIPES.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
            match fcntl_setpipe_size(pipe, PIPE_SIZE) {
                Ok(size) => Some(BigPipe { size }),
                Err(_) => {
                    BIG_PIPES.fetch_sub(1, Ordering::AcqRel);
                    None
                }
            }
        }
    }

    impl Drop for BigPipe {
        fn drop(&mut self) {
            BIG_PIPES.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn close_both(a: &TcpStream, b: &TcpStream) {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }

    /// Relay `src` to `dst` until EOF (then half-close `dst`) or an error
    /// (then shut both down). `Err(())` means splice is unavailable and
    /// nothing was moved: use the copy loop instead.
    pub(super) fn pump(src: &TcpStream, dst: &TcpStream, counter: &AtomicU64) -> Result<(), ()> {
        let (pr, pw) = pipe_with(PipeFlags::CLOEXEC).map_err(|_| ())?;
        let _big = BigPipe::try_grow(&pw);
        let size = _big.as_ref().map_or(DEFAULT_PIPE, |b| b.size);
        let mut first = true;
        loop {
            let n = match splice(src, None, &pw, None, size, SpliceFlags::MOVE) {
                Ok(0) => {
                    let _ = dst.shutdown(Shutdown::Write);
                    return Ok(());
                }
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(Errno::INVAL) | Err(Errno::NOSYS) if first => return Err(()),
                Err(_) => {
                    close_both(src, dst);
                    return Ok(());
                }
            };
            first = false;
            // Drain the pipe completely before reading again, so at EOF it is empty.
            let mut left = n;
            while left > 0 {
                match splice(&pr, None, dst, None, left, SpliceFlags::MOVE) {
                    Ok(0) => {
                        close_both(src, dst);
                        return Ok(());
                    }
                    Ok(k) => left -= k,
                    Err(Errno::INTR) => {}
                    Err(_) => {
                        close_both(src, dst);
                        return Ok(());
                    }
                }
            }
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

fn pump(src: &dyn Leg, dst: &dyn Leg, counter: &AtomicU64) {
    let mut buf = vec![0u8; RELAY_BUF];
    loop {
        match src.read(&mut buf) {
            Ok(0) => {
                dst.shutdown_write();
                return;
            }
            Ok(n) => {
                if dst.write_all(&buf[..n]).is_err() {
                    src.abort();
                    dst.abort();
                    return;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                src.abort();
                dst.abort();
                return;
            }
        }
    }
}

/// Relay until both directions end. `initiator` is the mobile client's leg.
/// The pair is listed in `pairs` (when given) so a drain can abort it.
pub fn relay(
    initiator: Arc<dyn Leg>,
    responder: Arc<dyn Leg>,
    pairs: Option<&ActivePairs>,
) -> Totals {
    let start = Instant::now();
    let up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    let _entry = pairs.map(|p| p.add(initiator.clone(), responder.clone()));
    let (i2, r2, d2) = (initiator.clone(), responder.clone(), down.clone());
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let spawned = crate::threads::spawn("relay".to_string(), move || {
        direction(&*r2, &*i2, &d2);
        let _ = done_tx.send(());
    });
    match spawned {
        Ok(()) => {
            direction(&*initiator, &*responder, &up);
            // The other direction ends too: it either sends, or its closure
            // (and the sender in it) is dropped by a panic.
            let _ = done_rx.recv();
        }
        Err(e) => {
            log::warn!(target: "rendezvous::relay", "cannot start a relay thread: {e}");
            initiator.abort();
            responder.abort();
        }
    }
    Totals {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        duration: start.elapsed(),
    }
}

type LegPair = (Arc<dyn Leg>, Arc<dyn Leg>);

/// The pairs relaying now, so a shutdown can wait for them and abort the rest.
#[derive(Default)]
pub struct ActivePairs {
    next: AtomicU64,
    total: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    map: Mutex<HashMap<u64, LegPair>>,
}

/// Removes a pair from [`ActivePairs`] on drop.
pub struct PairEntry<'a> {
    pairs: &'a ActivePairs,
    id: u64,
}

impl Drop for PairEntry<'_> {
    fn drop(&mut self) {
        self.pairs
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl ActivePairs {
    /// An empty set.
    pub fn new() -> ActivePairs {
        ActivePairs::default()
    }

    fn add(&self, a: Arc<dyn Leg>, b: Arc<dyn Leg>) -> PairEntry<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (a, b));
        PairEntry { pairs: self, id }
    }

    /// Add a finished pair's byte counts to the totals.
    pub fn account(&self, t: &Totals) {
        self.bytes_up.fetch_add(t.up, Ordering::Relaxed);
        self.bytes_down.fetch_add(t.down, Ordering::Relaxed);
    }

    /// Pairs relaying now.
    pub fn active(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Pairs ever started, and bytes relayed up and down by finished pairs.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.total.load(Ordering::Relaxed),
            self.bytes_up.load(Ordering::Relaxed),
            self.bytes_down.load(Ordering::Relaxed),
        )
    }

    /// Wait up to `timeout` for every pair to finish, then abort the rest.
    /// Returns how many were aborted.
    pub fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while self.active() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        for (a, b) in map.values() {
            a.abort();
            b.abort();
        }
        map.len()
    }
}

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    #[test]
    fn half_close_keeps_the_reply() {
        // client <-> (x relay y) <-> server
        let (mut client, x) = pair();
        let (y, mut server) = pair();
        let pairs = ActivePairs::new();
        thread::scope(|s| {
            let h = s.spawn(|| relay(Arc::new(x), Arc::new(y), Some(&pairs)));
            client.write_all(b"request").expect("write");
            client.shutdown(Shutdown::Write).expect("half-close");
            let mut got = Vec::new();
            server.read_to_end(&mut got).expect("server reads to EOF");
            assert_eq!(got, b"request");
            server.write_all(b"the whole reply").expect("reply");
            drop(server);
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).expect("client reads");
            assert_eq!(reply, b"the whole reply");
            let t = h.join().expect("relay");
            assert_eq!((t.up, t.down), (7, 15));
        });
        assert_eq!(pairs.active(), 0);
    }
}
