//! The system random source (through ring), for secrets, nonces and jitter.

use ring::rand::{SecureRandom, SystemRandom};

/// Fill `buf` from the operating system's random source.
///
/// The source failing is not something a caller can recover from (every secret
/// and nonce we make would be predictable), so it aborts the process loudly.
pub fn fill(buf: &mut [u8]) {
    if SystemRandom::new().fill(buf).is_err() {
        // writeln!, not eprintln!: the abort must happen even if stderr is a broken pipe.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "rendezvous: the system random source failed"
        );
        std::process::abort();
    }
}

/// A random `u64`, for jitter.
pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}
