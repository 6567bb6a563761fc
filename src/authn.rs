//! Guessing limits for TOTP authentication. Failures are counted per
//! (UUID, source address) — ten lock that pair for a period that doubles on
//! every further lock — and per UUID across all sources: past
//! [`UUID_FAILURES_PER_STEP`] failures in one TOTP step only the address of
//! the last successful registration may try until the next step. A mobile
//! client that knows a UUID can therefore never lock its hidden server out.
//! Cookie authentication is never limited here.

use crate::limits::{
    LOCK_AFTER_FAILURES, LOCK_BASE, LOCK_MAX, LOCK_MEMORY, MAX_LOCKOUT_ENTRIES as MAX_PAIRS,
    UUID_FAILURES_PER_STEP,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
struct PairState {
    failures: u32,
    locks: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

#[derive(Debug, Clone, Copy, Default)]
struct UuidState {
    step: u64,
    failures: u32,
}

#[derive(Default)]
struct Inner {
    pairs: HashMap<(Uuid, IpAddr), PairState>,
    uuids: HashMap<Uuid, UuidState>,
    last_good: HashMap<Uuid, IpAddr>,
}

/// Why an attempt is refused before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This (UUID, address) is locked for this long.
    PairLocked(Duration),
    /// The UUID's per-step failure cap is reached; retry at the next step.
    UuidCapped(Duration),
}

impl Refusal {
    /// Seconds for `Retry-After` (at least 1).
    pub fn retry_after(&self) -> u64 {
        let d = match self {
            Refusal::PairLocked(d) | Refusal::UuidCapped(d) => *d,
        };
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The limiter. Share it behind an `Arc`.
#[derive(Default)]
pub struct Limiter {
    inner: Mutex<Inner>,
}

impl Limiter {
    /// An empty limiter.
    pub fn new() -> Limiter {
        Limiter::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May `ip` try a token for `uuid` now? `step` is the user's current TOTP
    /// step and `to_next_step` the time until the next one.
    pub fn check(
        &self,
        uuid: Uuid,
        ip: IpAddr,
        step: u64,
        to_next_step: Duration,
    ) -> Result<(), Refusal> {
        let inner = self.lock();
        let now = Instant::now();
        if let Some(until) = inner.pairs.get(&(uuid, ip)).and_then(|p| p.locked_until) {
            if until > now {
                return Err(Refusal::PairLocked(until - now));
            }
        }
        if let Some(u) = inner.uuids.get(&uuid) {
            let capped = u.step == step && u.failures >= UUID_FAILURES_PER_STEP;
            if capped && inner.last_good.get(&uuid) != Some(&ip) {
                return Err(Refusal::UuidCapped(to_next_step));
            }
        }
        Ok(())
    }

    /// Record a failed token. Returns the lock period when this failure engaged one.
    pub fn failure(&self, uuid: Uuid, ip: IpAddr, step: u64) -> Option<Duration> {
        let mut inner = self.lock();
        let now = Instant::now();
        let u = inner.uuids.entry(uuid).or_default();
        if u.step != step {
            *u = UuidState { step, failures: 0 };
        }
        u.failures = u.failures.saturating_add(1);
        if inner.pairs.len() >= MAX_PAIRS && !inner.pairs.contains_key(&(uuid, ip)) {
            prune(&mut inner.pairs, now);
            if inner.pairs.len() >= MAX_PAIRS {
                return None;
            }
        }
        let p = inner.pairs.entry((uuid, ip)).or_insert(PairState {
            failures: 0,
            locks: 0,
            locked_until: None,
            last_seen: now,
        });
        p.last_seen = now;
        p.failures += 1;
        if p.failures >= LOCK_AFTER_FAILURES {
            let period = LOCK_BASE
                .saturating_mul(1u32 << p.locks.min(16))
                .min(LOCK_MAX);
            p.locked_until = Some(now + period);
            p.locks = p.locks.saturating_add(1);
            p.failures = 0;
            return Some(period);
        }
        None
    }

    /// Record a success (by token or by cookie): the pair's count is cleared and
    /// `ip` becomes the UUID's last good address.
    pub fn success(&self, uuid: Uuid, ip: IpAddr) {
        let mut inner = self.lock();
        inner.pairs.remove(&(uuid, ip));
        inner.last_good.insert(uuid, ip);
    }

    /// Forget entries that no longer matter (see [`prune`]).
    pub fn sweep(&self) {
        let mut inner = self.lock();
        prune(&mut inner.pairs, Instant::now());
    }
}

/// Keep an entry while it is locked, for [`LOCK_MEMORY`] after its last lock
/// ended (so the doubling survives a pause), and for [`LOCK_MAX`] after its
/// last failure otherwise.
fn prune(pairs: &mut HashMap<(Uuid, IpAddr), PairState>, now: Instant) {
    pairs.retain(|_, p| match p.locked_until {
        Some(until) if until > now => true,
        Some(until) => now.duration_since(until) < LOCK_MEMORY,
        None => now.duration_since(p.last_seen) < LOCK_MAX,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_secs(30);

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn ten_failures_lock_the_pair_only() {
        let l = Limiter::new();
        let u = Uuid::new_v4();
        for i in 0..9 {
            assert!(l.failure(u, ip(1), 5).is_none(), "failure {i}");
            assert!(l.check(u, ip(1), 5, STEP).is_ok());
        }
        assert_eq!(l.failure(u, ip(1), 5), Some(LOCK_BASE));
        assert!(matches!(
            l.check(u, ip(1), 5, STEP),
            Err(Refusal::PairLocked(_))
        ));
        assert!(
            l.check(u, ip(2), 5, STEP).is_ok(),
            "another address is not locked"
        );
    }

    #[test]
    fn lock_doubles() {
        let l = Limiter::new();
        let u = Uuid::new_v4();
        let mut periods = Vec::new();
        for _ in 0..3 {
            for _ in 0..LOCK_AFTER_FAILURES {
                if let Some(p) = l.failure(u, ip(1), 1) {
                    periods.push(p);
                }
            }
        }
        assert_eq!(periods, vec![LOCK_BASE, LOCK_BASE * 2, LOCK_BASE * 4]);
    }

    #[test]
    fn uuid_cap_spares_the_last_good_address() {
        let l = Limiter::new();
        let u = Uuid::new_v4();
        l.success(u, ip(9));
        for i in 0..UUID_FAILURES_PER_STEP {
            l.failure(u, ip(10 + (i % 5) as u8), 7);
        }
        assert!(matches!(l.check(u, ip(3), 7, STEP), Err(Refusal::UuidCapped(d)) if d == STEP));
        assert!(
            l.check(u, ip(9), 7, STEP).is_ok(),
            "last good address still tries"
        );
        assert!(l.check(u, ip(3), 8, STEP).is_ok(), "next step opens again");
    }
}
