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

    use crate::limits::{BACKLOG, DEFAULT_PIPE, MAX_BIG_PIPES, PIPE_SIZE};

    static BIG_PIPES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// One of the [`MAX_BIG_PIPES`]; returned on drop.
    pub(super) struct BigPipe {
        pub(super) size: usize,
    }

    /// What asking for a bigger pipe gave.
    enum Grow {
        Grown(BigPipe),
        /// All [`MAX_BIG_PIPES`] are taken: ask again at the next backlog.
        NoSlot,
        /// The kernel said no (the user's pipe budget): do not ask again.
        Refused,
    }

    impl BigPipe {
        /// Enlarge `pipe` to [`PIPE_SIZE`] if a slot is free and the kernel agrees.
        fn try_grow(pipe: &rustix::fd::OwnedFd) -> Grow {
            if BIG_PIPES.fetch_add(1, Ordering::AcqRel) >= MAX_BIG_PIPES {
                BIG_PIPES.fetch_sub(1, Ordering::AcqRel);
                return Grow::NoSlot;
            }
            match fcntl_setpipe_size(pipe, PIPE_SIZE) {
                Ok(size) => Grow::Grown(BigPipe { size }),
                Err(_) => {
                    BIG_PIPES.fetch_sub(1, Ordering::AcqRel);
                    Grow::Refused
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
    /// nothing was moved: use the copy loop instead. `Ok(true)` when the
    /// pipe was enlarged on the way.
    ///
    /// The pipe starts at the kernel's default and is enlarged only when one
    /// read takes [`BACKLOG`] bytes or more, that is when data arrives faster
    /// than it is forwarded: the enlarged pipes, a limited number, go to the
    /// bulk transfers, not to the first pairs to start (an idle SSH session
    /// would otherwise hold one for hours), and a pair that stays small pays
    /// for no `fcntl` when it starts.
    pub(super) fn pump(src: &TcpStream, dst: &TcpStream, counter: &AtomicU64) -> Result<bool, ()> {
        let (pr, pw) = pipe_with(PipeFlags::CLOEXEC).map_err(|_| ())?;
        let mut big: Option<BigPipe> = None;
        let mut may_grow = true;
        let mut size = DEFAULT_PIPE;
        let mut first = true;
        let done = |big: &Option<BigPipe>| Ok(big.is_some());
        loop {
            let n = match splice(src, None, &pw, None, size, SpliceFlags::MOVE) {
                Ok(0) => {
                    let _ = dst.shutdown(Shutdown::Write);
                    return done(&big);
                }
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(Errno::INVAL) | Err(Errno::NOSYS) if first => return Err(()),
                Err(_) => {
                    close_both(src, dst);
                    return done(&big);
                }
            };
            first = false;
            // Drain the pipe completely before reading again, so at EOF it is
            // empty (and an enlargement below never has to move data).
            let mut left = n;
            while left > 0 {
                match splice(&pr, None, dst, None, left, SpliceFlags::MOVE) {
                    Ok(0) => {
                        close_both(src, dst);
                        return done(&big);
                    }
                    Ok(k) => left -= k,
                    Err(Errno::INTR) => {}
                    Err(_) => {
                        close_both(src, dst);
                        return done(&big);
                    }
                }
            }
            counter.fetch_add(n as u64, Ordering::Relaxed);
            if may_grow && n >= BACKLOG {
                match BigPipe::try_grow(&pw) {
                    Grow::Grown(b) => {
                        size = b.size;
                        big = Some(b);
                        may_grow = false;
                    }
                    Grow::NoSlot => {}
                    Grow::Refused => may_grow = false,
                }
            }
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

    fn socket(&self) -> &TcpStream {
        &self.sock
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

    /// Run one spliced direction from `x` to `y` while `drive` talks to both
    /// ends; returns whether its pipe was enlarged.
    #[cfg(target_os = "linux")]
    fn pumped(drive: impl FnOnce(&mut TcpStream, &mut TcpStream)) -> bool {
        let (mut client, x) = pair();
        let (y, mut server) = pair();
        let counter = AtomicU64::new(0);
        thread::scope(|s| {
            let h = s.spawn(|| splice::pump(&x, &y, &counter));
            drive(&mut client, &mut server);
            h.join().expect("pump").expect("splice works on TCP")
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn small_exchanges_keep_the_default_pipe() {
        let grown = pumped(|client, server| {
            for i in 0..50u8 {
                client.write_all(&[i; 100]).expect("write");
                let mut got = [0u8; 100];
                server.read_exact(&mut got).expect("read");
                assert_eq!(got, [i; 100]);
            }
            client.shutdown(Shutdown::Write).expect("half-close");
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).expect("EOF");
            assert!(rest.is_empty());
        });
        assert!(!grown, "a pair of small exchanges took an enlarged pipe");
    }

    /// Whether this user may have a pipe of PIPE_SIZE at all (an
    /// unprivileged user past fs.pipe-user-pages-soft may not).
    #[cfg(target_os = "linux")]
    fn can_grow() -> bool {
        let (_r, w) = rustix::pipe::pipe().expect("pipe");
        rustix::pipe::fcntl_setpipe_size(&w, crate::limits::PIPE_SIZE).is_ok()
    }

    /// 8 MiB through one spliced direction at full speed, checked with
    /// SHA-256; whether its pipe was enlarged.
    #[cfg(target_os = "linux")]
    fn bulk() -> bool {
        use ring::digest::{digest, SHA256};
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        pumped(|client, server| {
            thread::scope(|s| {
                s.spawn(|| {
                    client.write_all(&data).expect("write");
                    client.shutdown(Shutdown::Write).expect("half-close");
                });
                let mut got = Vec::new();
                server.read_to_end(&mut got).expect("read");
                assert_eq!(
                    digest(&SHA256, &got).as_ref(),
                    digest(&SHA256, &data).as_ref()
                );
            });
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_bulk_transfer_enlarges_its_pipe() {
        assert_eq!(bulk(), can_grow(), "8 MiB at full speed");
    }

    /// More idle pairs than there are enlarged pipes do not keep a later bulk
    /// transfer on the default pipe.
    #[cfg(target_os = "linux")]
    #[test]
    fn idle_pairs_leave_the_enlarged_pipes_to_bulk() {
        let n = crate::limits::MAX_BIG_PIPES + 8;
        let counter = AtomicU64::new(0);
        thread::scope(|s| {
            let mut idle = Vec::new();
            for _ in 0..n {
                let (client, x) = pair();
                let (y, mut server) = pair();
                let counter = &counter;
                let h = s.spawn(move || splice::pump(&x, &y, counter));
                client.write_all(b"x").expect("write");
                let mut b = [0u8; 1];
                server.read_exact(&mut b).expect("read");
                idle.push((client, server, h));
            }
            assert_eq!(bulk(), can_grow(), "bulk after {n} idle pairs");
            for (client, _server, h) in idle {
                client.shutdown(Shutdown::Write).expect("half-close");
                let grown = h.join().expect("pump").expect("splice");
                assert!(!grown, "an idle pair took an enlarged pipe");
            }
        });
    }
}
