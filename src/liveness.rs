//! Liveness on real networks. Hidden servers sit behind NATs and LTE links
//! that forget idle mappings without a FIN or an RST, so a socket can be dead
//! while a `peek` says it is open and a write to it succeeds (into the send
//! buffer). Two tools, used by the server and both clients:
//!
//! * [`Keepalive`]: TCP keepalive with an idle time below common NAT
//!   timeouts, which keeps mappings open and finds a dead peer, and
//!   `TCP_USER_TIMEOUT`, so data a vanished peer never acknowledges fails the
//!   connection in bounded time instead of the kernel's ~15 minutes.
//! * [`prove_delivered`]: after writing the first bytes to a parked socket,
//!   wait until the kernel reports them acknowledged by the peer, within a
//!   bound from the socket's own RTT; the other side is committed only then.

use crate::limits::{ACK_PROOF_MAX, ACK_PROOF_MIN, ACK_PROOF_RTTS, KEEPALIVE_PROBES};
use socket2::{SockRef, TcpKeepalive};
use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// TCP keepalive and user-timeout settings (`--keepalive SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            idle: crate::limits::KEEPALIVE,
        }
    }
}

impl Keepalive {
    /// Keepalive after `secs` seconds of silence.
    pub fn from_secs(secs: u64) -> Keepalive {
        Keepalive {
            idle: Duration::from_secs(secs),
        }
    }

    /// Time between unanswered probes: a fifth of the idle time, at least 1 s.
    pub fn interval(&self) -> Duration {
        (self.idle / 5).max(Duration::from_secs(1))
    }

    /// `TCP_USER_TIMEOUT`: the idle time plus two intervals. An idle
    /// connection is given up when two probes went unanswered (one lost
    /// probe on a lossy link is not enough), and data in flight when nothing
    /// was acknowledged for this long.
    pub fn user_timeout(&self) -> Duration {
        self.idle + self.interval() * 2
    }

    /// Set keepalive and the user timeout on `sock`.
    pub fn apply(&self, sock: &TcpStream) -> io::Result<()> {
        let ka = TcpKeepalive::new()
            .with_time(self.idle)
            .with_interval(self.interval())
            .with_retries(KEEPALIVE_PROBES);
        let s = SockRef::from(sock);
        s.set_tcp_keepalive(&ka)?;
        #[cfg(target_os = "linux")]
        s.set_tcp_user_timeout(Some(self.user_timeout()))?;
        Ok(())
    }
}

/// Why bytes written to a socket were not proven delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// Not acknowledged within the bound (the peer is silent: dead, or
    /// behind a path that forgot it).
    Timeout(Duration),
    /// The connection is closed, reset, or its peer has sent a FIN.
    Closed,
}

/// The wait for an acknowledgement on a socket whose smoothed RTT is
/// `rtt`: [`ACK_PROOF_RTTS`] round trips, within [`ACK_PROOF_MIN`] and
/// [`ACK_PROOF_MAX`].
pub fn ack_bound(rtt: Duration) -> Duration {
    (rtt * ACK_PROOF_RTTS).clamp(ACK_PROOF_MIN, ACK_PROOF_MAX)
}

/// Wait until every byte written to `sock` is acknowledged by its peer (the
/// kernel's unacknowledged and unsent counts are both zero), polling its
/// `TCP_INFO`. Returns how long it took. Where `TCP_INFO` is unavailable
/// (other systems) the bytes are taken as delivered.
pub fn prove_delivered(sock: &TcpStream) -> Result<Duration, Undelivered> {
    let start = Instant::now();
    let mut bound = None;
    let mut nap = Duration::from_micros(50);
    loop {
        let info = match crate::tcp_info::tcp_info(sock) {
            Ok(i) => i,
            Err(_) => return Ok(start.elapsed()),
        };
        // A peer may acknowledge, answer and close before the first look:
        // CLOSE_WAIT with nothing unacknowledged is delivered. A reset
        // (CLOSE) purges the send queue, so an empty one proves nothing there.
        let open = matches!(
            info.state,
            crate::tcp_info::ESTABLISHED | crate::tcp_info::CLOSE_WAIT
        );
        if !open {
            return Err(Undelivered::Closed);
        }
        if info.unacked == 0 && info.notsent.unwrap_or(0) == 0 {
            return Ok(start.elapsed());
        }
        if info.state == crate::tcp_info::CLOSE_WAIT {
            // The peer closed without acknowledging all of it.
            return Err(Undelivered::Closed);
        }
        let bound =
            *bound.get_or_insert_with(|| ack_bound(Duration::from_micros(u64::from(info.rtt_us))));
        let waited = start.elapsed();
        if waited >= bound {
            return Err(Undelivered::Timeout(waited));
        }
        std::thread::sleep(nap.min(bound - waited));
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Close `sock` at once with an RST (`SO_LINGER` 0), dropping what it still
/// holds: for a socket that failed its proof, whose unacknowledged bytes
/// would otherwise be retransmitted into the void for minutes.
pub fn abort(sock: &TcpStream) {
    let _ = SockRef::from(sock).set_linger(Some(Duration::ZERO));
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// Ask the kernel to acknowledge the next bytes at once rather than delay
/// the ACK (agents, before waiting on a parked connection: the server's
/// liveness proof waits for that ACK).
pub fn quickack(sock: &TcpStream) {
    #[cfg(target_os = "linux")]
    let _ = SockRef::from(sock).set_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = sock;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn defaults_and_derived_timings() {
        let k = Keepalive::default();
        assert_eq!(k.idle, Duration::from_secs(25));
        assert_eq!(k.interval(), Duration::from_secs(5));
        assert_eq!(k.user_timeout(), Duration::from_secs(35));
        assert_eq!(Keepalive::from_secs(3).interval(), Duration::from_secs(1));
        assert_eq!(ack_bound(Duration::from_micros(30)), ACK_PROOF_MIN);
        assert_eq!(
            ack_bound(Duration::from_millis(200)),
            Duration::from_millis(800)
        );
        assert_eq!(ack_bound(Duration::from_secs(3)), ACK_PROOF_MAX);
    }

    #[test]
    fn applied_settings_read_back() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let s = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        Keepalive::from_secs(10).apply(&s).expect("apply");
        let r = SockRef::from(&s);
        assert!(r.keepalive().expect("keepalive"));
        assert_eq!(r.keepalive_time().expect("idle"), Duration::from_secs(10));
        assert_eq!(
            r.keepalive_interval().expect("intvl"),
            Duration::from_secs(2)
        );
        assert_eq!(r.keepalive_retries().expect("cnt"), KEEPALIVE_PROBES);
        assert_eq!(
            r.tcp_user_timeout().expect("user timeout"),
            Some(Duration::from_secs(14))
        );
    }

    #[test]
    fn a_live_peer_acknowledges_and_a_closed_one_is_seen() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (mut b, _) = l.accept().expect("accept");
        a.write_all(b"+OK\n").expect("write");
        let took = prove_delivered(&a).expect("acknowledged");
        assert!(took < ACK_PROOF_MIN, "{took:?}");
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).expect("read");
        drop(b);
        // The peer is gone: its kernel answers the next bytes with an RST.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let _ = a.write_all(b"x");
            if prove_delivered(&a) == Err(Undelivered::Closed) {
                break;
            }
            assert!(Instant::now() < deadline, "closed peer not seen");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
