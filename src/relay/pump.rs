//! The portable copy loop of one direction, for TLS legs (and plain ones
//! where splice(2) is not available): read into a buffer, write it all.

use crate::limits::RELAY_BUF;
use crate::relay::leg::Leg;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// One direction through user memory, until EOF (then half-close `dst`)
/// or an error (then tear both down).
pub(super) fn pump(src: &dyn Leg, dst: &dyn Leg, counter: &AtomicU64) {
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
