//! The pairs relaying now, so a shutdown can wait for them and abort the
//! rest, with the byte counts of finished pairs for the metrics.

use crate::relay::leg::{Leg, Totals};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

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

    pub(super) fn add(&self, a: Arc<dyn Leg>, b: Arc<dyn Leg>) -> PairEntry<'_> {
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
