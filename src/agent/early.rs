//! `connect --listen`'s view of a local client's first bytes: read once
//! there is a connection to the rendezvous server, and, for a server that
//! forwards them, followed until its status line (see `dial`).

use rustix::net::RecvFlags;
use std::io::Write;
use std::net::TcpStream;
use std::time::Instant;

/// The most a client's first bytes sent with the cookie line may be; what
/// comes after is relayed after the `+OK`. Also what `expose` passes to
/// its service before the next shift starts.
pub(super) const EARLY_MAX: usize = 4096;

/// A local client's first bytes: what it had sent when first looked at,
/// and, for a server that forwards them, what followed before its status.
#[derive(Default)]
pub(super) struct Early<'a> {
    local: Option<&'a TcpStream>,
    pub(super) bytes: Vec<u8>,
    looked: bool,
}

impl<'a> Early<'a> {
    /// What `local` sends first.
    pub(super) fn of(local: &'a TcpStream) -> Early<'a> {
        Early {
            local: Some(local),
            ..Early::default()
        }
    }

    /// The bytes; what has come is read (without waiting) the first time.
    pub(super) fn read(&mut self) -> &[u8] {
        if let (Some(local), false) = (self.local, self.looked) {
            self.looked = true;
            let _ = self.recv_more(local);
        }
        &self.bytes
    }

    /// Add what `local` holds now, up to [`EARLY_MAX`] in all, without
    /// waiting; how many bytes that was (0: end of file).
    fn recv_more(&mut self, local: &TcpStream) -> rustix::io::Result<usize> {
        let start = self.bytes.len();
        self.bytes.resize(EARLY_MAX, 0);
        let got = rustix::net::recv(local, &mut self.bytes[start..], RecvFlags::DONTWAIT);
        let n = got.as_ref().map_or(0, |&(n, _)| n);
        self.bytes.truncate(start + n);
        got.map(|(n, _)| n)
    }

    /// Until the server's status line begins to arrive (or `end`), what
    /// the local client sends goes on to `server` at once, up to
    /// [`EARLY_MAX`] in all, and is kept, to be sent again after a
    /// refusal. A client slower to send than connect was to look (a TLS
    /// client building its hello, a busy phone) would otherwise wait for
    /// the `+OK` to come back before its bytes left. An end of file or an
    /// error on the local socket is left to the relay, which meets it again.
    pub(super) fn follow(&mut self, server: &mut TcpStream, end: Instant) -> std::io::Result<()> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use rustix::io::Errno;
        let Some(local) = self.local else {
            return Ok(());
        };
        while self.bytes.len() < EARLY_MAX {
            let left = end.saturating_duration_since(Instant::now());
            let Ok(timeout) = Timespec::try_from(left) else {
                return Ok(());
            };
            let mut fds = [
                PollFd::new(&*server, PollFlags::IN),
                PollFd::new(local, PollFlags::IN),
            ];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if !fds[0].revents().is_empty() {
                return Ok(());
            }
            match self.recv_more(local) {
                Ok(0) => return Ok(()),
                Ok(n) => server.write_all(&self.bytes[self.bytes.len() - n..])?,
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }
}
