//! The agent's stop flag, which its naps wake on. A nap used to sleep in
//! 100 ms steps to look at the flag: the cookie refresher of an idle
//! `expose` woke 10 times a second for as long as it ran (9 to 10
//! voluntary context switches a second, `/proc/PID/task/*/status`).
//! Now an idle agent wakes only when something is due.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(super) struct Stop {
    set: AtomicBool,
    /// Held by a nap while it looks at the flag, so that [`Stop::set`]
    /// cannot notify between its look and its wait.
    naps: Mutex<()>,
    woken: Condvar,
}

impl Stop {
    pub(super) fn new() -> Stop {
        Stop {
            set: AtomicBool::new(false),
            naps: Mutex::new(()),
            woken: Condvar::new(),
        }
    }

    /// Set the flag and end every nap.
    pub(super) fn set(&self) {
        self.set.store(true, Ordering::Release);
        let _naps = self.naps.lock().unwrap_or_else(PoisonError::into_inner);
        self.woken.notify_all();
    }

    pub(super) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Sleep up to `d`; at once when the flag is set. A `d` beyond any
    /// clock (a registrar's absurd TTL, say) naps until the flag is set:
    /// adding it to `Instant::now()` would panic.
    pub(super) fn nap(&self, d: Duration) {
        let end = Instant::now().checked_add(d);
        let mut naps = self.naps.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.is_set() {
            let left = end.map_or(Duration::MAX, |end| end.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return;
            }
            naps = match self.woken.wait_timeout(naps, left) {
                Ok((naps, _)) => naps,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_nap_ends_when_the_flag_is_set() {
        let stop = Arc::new(Stop::new());
        let napping = stop.clone();
        let start = Instant::now();
        let h = std::thread::spawn(move || napping.nap(Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(50));
        stop.set();
        h.join().expect("nap");
        assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
        // Longer than any clock: until the flag, and no panic.
        let stop = Arc::new(Stop::new());
        let napping = stop.clone();
        let h = std::thread::spawn(move || napping.nap(Duration::MAX));
        std::thread::sleep(Duration::from_millis(50));
        stop.set();
        h.join().expect("a nap of Duration::MAX");
        // Set already: no nap at all.
        let start = Instant::now();
        stop.nap(Duration::from_secs(600));
        assert!(start.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn a_nap_lasts_its_time() {
        let stop = Stop::new();
        let start = Instant::now();
        stop.nap(Duration::from_millis(200));
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(!stop.is_set());
    }
}
