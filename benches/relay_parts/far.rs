//! A link with latency on loopback, where `tc netem` may be missing (the
//! kernel's sch_netem): a proxy that writes each chunk it reads a fixed
//! delay after it arrived, in order, each way. Chunks in flight overlap,
//! as on a real link; only the delay is modelled, not loss or a rate.
//! The handshake is modelled too: the proxy's kernel completes a
//! connection at once, so what the connecting side sends in its first
//! round trip leaves only once that round trip is over, as on a real link,
//! where `connect` returns when the SYN-ACK is back.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// A proxy to `target` (set once known) with `delay` each way; its
/// address. Its threads end with their connections, and the listener's
/// with the process.
pub(crate) fn delayed(delay: Duration, target: Arc<OnceLock<SocketAddr>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the far link");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for near in l.incoming().flatten() {
            let opened = Instant::now() + 2 * delay;
            let Some(far) = target.get().and_then(|t| TcpStream::connect(t).ok()) else {
                continue;
            };
            let _ = near.set_nodelay(true);
            let _ = far.set_nodelay(true);
            let (Ok(near2), Ok(far2)) = (near.try_clone(), far.try_clone()) else {
                continue;
            };
            one_way(near, far, delay, opened);
            one_way(far2, near2, delay, Instant::now());
        }
    });
    addr
}

/// `from` to `to`, each chunk `delay` after it was read (or after
/// `opened`, when it was read sooner); EOF passed on as a half-close once
/// the chunks before it are written.
fn one_way(mut from: TcpStream, mut to: TcpStream, delay: Duration, opened: Instant) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut b = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut b) {
            let leaves = Instant::now().max(opened);
            if tx.send((leaves + delay, b[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    thread::spawn(move || {
        for (at, chunk) in rx {
            thread::sleep(at.saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
