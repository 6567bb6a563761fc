//! Socket → pipe → socket with `splice(2)`: the bytes stay in the kernel,
//! so a relayed pair costs no user-space buffer and half the copies.
use rustix::io::Errno;
use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

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
