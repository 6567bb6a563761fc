//! The security state of token authentication, behind one type
//! ([`SecurityState`]): each UUID's TOTP replay floor, failures and locks per
//! (UUID, source address), failures per UUID per time step, and each UUID's
//! last good address.
//!
//! Failures are counted per (UUID, source address) — ten lock that pair for a
//! period that doubles on every further lock — and per UUID across all
//! sources: past [`UUID_FAILURES_PER_STEP`] failures in one TOTP step only the
//! UUID's last good address may try until the next step. A mobile client that
//! knows a UUID can therefore never lock its hidden server out.
//!
//! An attempt is judged in one step under the state's lock
//! ([`SecurityState::token`]): the throttles, the replay floor and the
//! failure count together, so attempts sent at once count as if they came
//! one after another. A cookie success ([`SecurityState::cookie_success`]) records the last good
//! address and nothing else: it never shortens a lock or forgets a failure.
//!
//! The state outlives the process (`file`): [`SecurityState::save`] writes it to the
//! state folder and [`SecurityState::load`] reads it back at start, so a
//! restart neither reopens a replay nor forgets who the hidden server is.

mod file;

use crate::clock::Clock;
use crate::server::store::ops::{judge, lock_period, Failed, Throttled, TokenAttempt, Verdict};
use crate::limits::{
    LOCK_AFTER_FAILURES, LOCK_MAX, LOCK_MEMORY, MAX_LOCKOUT_ENTRIES as MAX_PAIRS,
    UUID_FAILURES_PER_STEP,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
struct PairState {
    /// Failures since the last lock (or the last token success).
    failures: u32,
    /// Locks so far: the next one lasts `LOCK_BASE * 2^locks`.
    locks: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

impl PairState {
    fn new(now: Instant) -> PairState {
        PairState {
            failures: 0,
            locks: 0,
            locked_until: None,
            last_seen: now,
        }
    }

    /// Nothing to remember: no failure, no lock history.
    fn empty(&self) -> bool {
        self.failures == 0 && self.locks == 0
    }
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
    floors: HashMap<Uuid, u64>,
}

/// The security state. Share it behind an `Arc`.
pub struct SecurityState {
    inner: Mutex<Inner>,
    /// Changed since the last [`SecurityState::save`].
    dirty: AtomicBool,
    clock: Arc<dyn Clock>,
}

impl Default for SecurityState {
    fn default() -> SecurityState {
        SecurityState {
            inner: Mutex::default(),
            dirty: AtomicBool::new(false),
            clock: crate::clock::system(),
        }
    }
}

impl SecurityState {
    /// An empty state.
    pub fn new() -> SecurityState {
        SecurityState::default()
    }

    /// The same state, reading time from `clock` (locks and their ends).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> SecurityState {
        self.clock = clock;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Judge a token attempt in one step under the state's lock: refused
    /// unchecked while the pair is locked or the UUID capped (unless `ip` is
    /// its last good address); else accepted for the earliest fresh step
    /// (the floor raised, the pair's failures cleared, `ip` the last good
    /// address), or counted as a failure that may engage a lock.
    pub fn token(&self, a: &TokenAttempt) -> Verdict {
        self.token_at(a, self.clock.now())
    }

    fn token_at(&self, a: &TokenAttempt, now: Instant) -> Verdict {
        let mut inner = self.lock();
        let key = (a.uuid, a.ip);
        let locked = inner.pairs.get(&key).and_then(|p| p.locked_until);
        if let Some(until) = locked.filter(|u| *u > now) {
            return Verdict::Throttled(Throttled::PairLocked(until - now));
        }
        let last_good = inner.last_good.get(&a.uuid) == Some(&a.ip);
        let u = inner.uuids.entry(a.uuid).or_default();
        if a.step > u.step {
            u.step = a.step;
            u.failures = 0;
        }
        // An attempt timed in an earlier step than one already seen (threads
        // race at a step's edge) counts toward that step no more.
        let this_step = a.step == u.step;
        if this_step && !last_good && u.failures >= UUID_FAILURES_PER_STEP {
            return Verdict::Throttled(Throttled::UuidCapped(a.to_next_step));
        }
        match judge(&a.matched, inner.floors.get(&a.uuid).copied()) {
            Ok(step) => {
                inner.floors.insert(a.uuid, step);
                if let Some(p) = inner.pairs.get_mut(&key) {
                    p.failures = 0;
                    if p.empty() {
                        inner.pairs.remove(&key);
                    }
                }
                inner.last_good.insert(a.uuid, a.ip);
                self.touch();
                Verdict::Accepted(step)
            }
            Err(why) => {
                if this_step {
                    let u = inner.uuids.entry(a.uuid).or_default();
                    u.failures = u.failures.saturating_add(1);
                }
                let locked = pair_failure(&mut inner.pairs, key, now);
                if locked.is_some() {
                    self.touch();
                }
                Verdict::Failed(Failed { why, locked })
            }
        }
    }

    /// A success by cookie: `ip` becomes the UUID's last good address.
    /// Nothing else changes: a lock, a failure count and the doubling history
    /// stay as they are (a visitor sharing the hidden server's address can
    /// cause cookie successes at will).
    pub fn cookie_success(&self, uuid: Uuid, ip: IpAddr) {
        if self.lock().last_good.insert(uuid, ip) != Some(ip) {
            self.touch();
        }
    }

    /// The UUID's replay floor: the last time step accepted.
    pub fn floor(&self, uuid: &Uuid) -> Option<u64> {
        self.lock().floors.get(uuid).copied()
    }

    /// Forget entries that no longer matter: see `prune`.
    pub fn sweep(&self) {
        let now = self.clock.now();
        let mut inner = self.lock();
        prune(&mut inner.pairs, now);
        inner.uuids.retain(|_, u| u.failures > 0);
    }

    /// Forget every UUID that `keep` rejects (users removed from the file).
    pub fn retain_users(&self, keep: impl Fn(&Uuid) -> bool) {
        let mut inner = self.lock();
        let before = inner.floors.len() + inner.last_good.len() + inner.pairs.len();
        inner.floors.retain(|u, _| keep(u));
        inner.last_good.retain(|u, _| keep(u));
        inner.pairs.retain(|(u, _), _| keep(u));
        inner.uuids.retain(|u, _| keep(u));
        if inner.floors.len() + inner.last_good.len() + inner.pairs.len() != before {
            self.touch();
        }
    }

    /// Whether anything worth saving changed since the last call; clears the mark.
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }
}

/// Count a failure of the pair `key`; returns the lock period when it
/// engaged one.
fn pair_failure(
    pairs: &mut HashMap<(Uuid, IpAddr), PairState>,
    (uuid, ip): (Uuid, IpAddr),
    now: Instant,
) -> Option<Duration> {
    let p = pair_entry(pairs, uuid, ip, now)?;
    p.last_seen = now;
    p.failures += 1;
    if p.failures < LOCK_AFTER_FAILURES {
        return None;
    }
    let period = lock_period(p.locks);
    p.locked_until = Some(now + period);
    p.locks = p.locks.saturating_add(1);
    p.failures = 0;
    Some(period)
}

/// The pair's entry, created if the table has room (pruning it first when
/// full). `None` when it has none: the failure then counts only toward the
/// per-UUID cap, and no history is wiped to make room.
fn pair_entry(
    pairs: &mut HashMap<(Uuid, IpAddr), PairState>,
    uuid: Uuid,
    ip: IpAddr,
    now: Instant,
) -> Option<&mut PairState> {
    if pairs.len() >= MAX_PAIRS && !pairs.contains_key(&(uuid, ip)) {
        prune(pairs, now);
        if pairs.len() >= MAX_PAIRS {
            return None;
        }
    }
    Some(
        pairs
            .entry((uuid, ip))
            .or_insert_with(|| PairState::new(now)),
    )
}

/// Keep an entry while it is locked, for
/// [`LOCK_MEMORY`] after its last lock ended (so the doubling survives a
/// pause), and for [`LOCK_MAX`] after its last failure otherwise.
fn prune(pairs: &mut HashMap<(Uuid, IpAddr), PairState>, now: Instant) {
    pairs.retain(|_, p| match p.locked_until {
        Some(until) if until > now => true,
        Some(until) => now.duration_since(until) < LOCK_MEMORY,
        None => p.failures > 0 && now.duration_since(p.last_seen) < LOCK_MAX,
    });
}

#[cfg(test)]
mod tests {
    // What both stores must do is tested once for both, in tests/store.rs;
    // here what only the embedded store has: its file.
    use super::*;

    const STEP: Duration = Duration::from_secs(30);

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn attempt(uuid: Uuid, from: IpAddr, step: u64, matched: &[u64]) -> TokenAttempt {
        TokenAttempt {
            uuid,
            ip: from,
            step,
            to_next_step: STEP,
            matched: matched.to_vec(),
        }
    }

    /// Floors, last good addresses and locks with their history survive a
    /// save and load (a restart); a visitor spending the per-UUID cap right
    /// after it does not keep the last good address out.
    #[test]
    fn the_state_survives_a_restart() {
        let s = SecurityState::new();
        let u = Uuid::new_v4();
        assert_eq!(s.token(&attempt(u, ip(9), 7, &[7])), Verdict::Accepted(7));
        for _ in 0..LOCK_AFTER_FAILURES {
            s.token(&attempt(u, ip(1), 7, &[]));
        }
        let loaded = SecurityState::from_text(&s.to_text()).expect("reads back");
        assert_eq!(loaded.floor(&u), Some(7), "replay floor kept");
        assert!(
            matches!(loaded.token(&attempt(u, ip(1), 7, &[])), Verdict::Throttled(Throttled::PairLocked(d)) if d > crate::limits::LOCK_BASE - Duration::from_secs(5)),
            "lock kept"
        );
        for i in 0..UUID_FAILURES_PER_STEP {
            loaded.token(&attempt(u, ip(20 + (i % 5) as u8), 8, &[]));
        }
        assert!(
            matches!(loaded.token(&attempt(u, ip(9), 8, &[])), Verdict::Failed(_)),
            "the agent's address is still let in after a restart"
        );
        assert!(matches!(
            loaded.token(&attempt(u, ip(3), 8, &[])),
            Verdict::Throttled(Throttled::UuidCapped(_))
        ));
        // The doubling history came along: the next lock of ip(1) is 2x.
        let inner = loaded.lock();
        assert_eq!(inner.pairs.get(&(u, ip(1))).map(|p| p.locks), Some(1));
    }

    #[test]
    fn a_torn_state_file_is_an_empty_state() {
        let s = SecurityState::new();
        s.cookie_success(Uuid::new_v4(), ip(1));
        let text = s.to_text();
        for cut in [0, 1, text.len() / 2, text.len() - 1] {
            assert!(
                SecurityState::from_text(&text[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(SecurityState::from_text(
            r#"{"version":99,"floors":{},"last_good":{},"pairs":[]}"#
        )
        .is_err());
    }
}
