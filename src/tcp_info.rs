//! The one `getsockopt(TCP_INFO)` the crate needs, the only `unsafe` code in
//! it: neither rustix, socket2 nor nix offers `TCP_INFO`, and the liveness
//! proof needs the kernel's count of unacknowledged segments and its
//! smoothed RTT (see `liveness`), and `connect --listen` whether a spare
//! connection's cookie line was ever acknowledged (see `agent::dial`).
#![allow(unsafe_code)]

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// The start of Linux's `struct tcp_info` (include/uapi/linux/tcp.h),
/// through `tcpi_min_rtt`: eight `__u8`, twenty-four `__u32` (`tcpi_rto`
/// to `tcpi_total_retrans`), four `__u64` (`tcpi_pacing_rate` to
/// `tcpi_bytes_received`), then `tcpi_segs_out`, `tcpi_segs_in`,
/// `tcpi_notsent_bytes` and `tcpi_min_rtt`. The field offsets match the
/// kernel's: the `__u64` group starts at byte 104, a multiple of 8.
#[repr(C)]
#[derive(Default)]
struct RawTcpInfo {
    bytes: [u8; 8],
    words: [u32; 24],
    longs: [u64; 4],
    tail: [u32; 4],
}

/// What the liveness proof reads of a socket's `TCP_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// `tcpi_state`: 1 is ESTABLISHED.
    pub state: u8,
    /// `tcpi_unacked`: segments sent and not yet acknowledged.
    pub unacked: u32,
    /// `tcpi_rtt`: the smoothed round-trip time, in microseconds.
    pub rtt_us: u32,
    /// `tcpi_notsent_bytes` (Linux 4.6 and later; `None` before).
    pub notsent: Option<u32>,
    /// `tcpi_bytes_acked`: sequence space the peer acknowledged (the SYN
    /// counts one), kept after a reset (Linux 4.2 and later; `None` before).
    pub bytes_acked: Option<u64>,
    /// `tcpi_bytes_received`: sequence space received in order after the
    /// SYN (a FIN counts one), kept after a reset (Linux 4.1 and later).
    pub bytes_received: Option<u64>,
}

/// `TCP_ESTABLISHED` in `tcpi_state`.
pub const ESTABLISHED: u8 = 1;
/// `TCP_CLOSE_WAIT` in `tcpi_state`: the peer sent its FIN.
pub const CLOSE_WAIT: u8 = 8;

/// Read `sock`'s `TCP_INFO`.
pub fn tcp_info(sock: &TcpStream) -> io::Result<TcpInfo> {
    let mut raw = RawTcpInfo::default();
    let mut len = std::mem::size_of::<RawTcpInfo>() as libc::socklen_t;
    // SAFETY: `raw` is a live, initialized `repr(C)` struct of plain
    // integers (every bit pattern is valid) and `len` is its exact size, so
    // the kernel, which copies at most `len` bytes into `optval` and writes
    // the length it copied back into `optlen`, writes only inside `raw` and
    // `len`. The descriptor is borrowed from `sock` for the duration of the
    // call, so it is open. Nothing is retained past the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut raw as *mut RawTcpInfo).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let len = len as usize;
    // tcpi_bytes_acked and tcpi_bytes_received are the last two of
    // `longs`, at bytes 120 and 128; tcpi_notsent_bytes the third word of
    // `tail`, at byte 144.
    let acked_end = 8 + 24 * 4 + 3 * 8;
    let received_end = 8 + 24 * 4 + 4 * 8;
    let notsent_end = 8 + 24 * 4 + 4 * 8 + 3 * 4;
    if len < 8 + 24 * 4 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TCP_INFO too short",
        ));
    }
    Ok(TcpInfo {
        state: raw.bytes[0],
        unacked: raw.words[4],
        rtt_us: raw.words[15],
        notsent: (len >= notsent_end).then_some(raw.tail[2]),
        bytes_acked: (len >= acked_end).then_some(raw.longs[2]),
        bytes_received: (len >= received_end).then_some(raw.longs[3]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn reads_a_live_connection() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (mut b, _) = l.accept().expect("accept");
        a.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).expect("read");
        // The answer carries the acknowledgement, and `a` has read it.
        b.write_all(b"pong").expect("write");
        a.read_exact(&mut buf).expect("read");
        let info = tcp_info(&a).expect("tcp_info");
        assert_eq!(info.state, ESTABLISHED);
        assert_eq!(info.notsent, Some(0));
        // Acknowledged: the SYN and four bytes; received: four bytes.
        assert_eq!(info.bytes_acked, Some(5));
        assert_eq!(info.bytes_received, Some(4));
        assert!(info.rtt_us > 0 && info.rtt_us < 1_000_000, "{info:?}");
        assert_eq!(std::mem::size_of::<RawTcpInfo>(), 152);
    }
}
