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
//! An attempt is reserved when it is checked ([`SecurityState::begin`]) and
//! settled by [`Attempt::commit`], so attempts sent at once count as if they
//! came one after another: no more can be in flight than the allowance left.
//! A cookie success ([`SecurityState::cookie_success`]) records the last good
//! address and nothing else: it never shortens a lock or forgets a failure.
//!
//! The state outlives the process (`file`): [`SecurityState::save`] writes it to the
//! state folder and [`SecurityState::load`] reads it back at start, so a
//! restart neither reopens a replay nor forgets who the hidden server is.

use crate::error::AuthFailure;
mod file;

use crate::clock::Clock;
use crate::limits::{
    LOCK_AFTER_FAILURES, LOCK_BASE, LOCK_MAX, LOCK_MEMORY, MAX_LOCKOUT_ENTRIES as MAX_PAIRS,
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
    /// Attempts checked and not yet settled.
    inflight: u32,
    /// Locks so far: the next one lasts `LOCK_BASE * 2^locks`.
    locks: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

impl PairState {
    fn new(now: Instant) -> PairState {
        PairState {
            failures: 0,
            inflight: 0,
            locks: 0,
            locked_until: None,
            last_seen: now,
        }
    }

    /// Nothing to remember: no failure, no attempt in flight, no lock history.
    fn empty(&self) -> bool {
        self.failures == 0 && self.inflight == 0 && self.locks == 0
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct UuidState {
    step: u64,
    failures: u32,
    inflight: u32,
}

#[derive(Default)]
struct Inner {
    pairs: HashMap<(Uuid, IpAddr), PairState>,
    uuids: HashMap<Uuid, UuidState>,
    last_good: HashMap<Uuid, IpAddr>,
    floors: HashMap<Uuid, u64>,
}

/// Why an attempt is refused before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// This (UUID, address) is locked for this long.
    PairLocked(Duration),
    /// The UUID's per-step failure cap is reached; retry at the next step.
    UuidCapped(Duration),
    /// This (UUID, address) has its whole remaining allowance in flight.
    Busy,
}

impl Throttled {
    /// Seconds for `Retry-After` (at least 1).
    pub fn retry_after(&self) -> u64 {
        let d = match self {
            Throttled::PairLocked(d) | Throttled::UuidCapped(d) => *d,
            Throttled::Busy => Duration::from_secs(1),
        };
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }

    /// A short reason for the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Throttled::PairLocked(_) => "locked-out",
            Throttled::UuidCapped(_) => "uuid-capped",
            Throttled::Busy => "in-flight",
        }
    }
}

/// A failed attempt, settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// Why the token was refused.
    pub why: AuthFailure,
    /// The lock period this failure engaged, if it engaged one.
    pub locked: Option<Duration>,
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

/// One token attempt, reserved by [`SecurityState::begin`]. Settle it with
/// [`Attempt::commit`]; dropped unsettled, it releases its reservation and
/// counts as nothing.
#[must_use = "an attempt is settled by commit"]
pub struct Attempt<'a> {
    state: &'a SecurityState,
    uuid: Uuid,
    ip: IpAddr,
    step: u64,
    /// Whether the pair's entry holds this reservation (the table may be full).
    tracked: bool,
    settled: bool,
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

    /// May `ip` try a token for `uuid` now? On yes the attempt is reserved:
    /// at most the remaining allowance of the pair and of the UUID's step can
    /// be in flight at once. `step` is the user's current TOTP step and
    /// `to_next_step` the time until the next one.
    pub fn begin(
        &self,
        uuid: Uuid,
        ip: IpAddr,
        step: u64,
        to_next_step: Duration,
    ) -> std::result::Result<Attempt<'_>, Throttled> {
        self.begin_at(uuid, ip, step, to_next_step, self.clock.now())
    }

    fn begin_at(
        &self,
        uuid: Uuid,
        ip: IpAddr,
        step: u64,
        to_next_step: Duration,
        now: Instant,
    ) -> std::result::Result<Attempt<'_>, Throttled> {
        let mut inner = self.lock();
        if let Some(p) = inner.pairs.get(&(uuid, ip)) {
            if let Some(until) = p.locked_until.filter(|u| *u > now) {
                return Err(Throttled::PairLocked(until - now));
            }
            if p.failures + p.inflight >= LOCK_AFTER_FAILURES {
                return Err(Throttled::Busy);
            }
        }
        let last_good = inner.last_good.get(&uuid) == Some(&ip);
        let u = inner.uuids.entry(uuid).or_default();
        if u.step != step {
            u.step = step;
            u.failures = 0;
        }
        if !last_good && u.failures + u.inflight >= UUID_FAILURES_PER_STEP {
            return Err(Throttled::UuidCapped(to_next_step));
        }
        u.inflight += 1;
        let tracked = match pair_entry(&mut inner.pairs, uuid, ip, now) {
            Some(p) => {
                p.inflight += 1;
                p.last_seen = now;
                true
            }
            None => false,
        };
        Ok(Attempt {
            state: self,
            uuid,
            ip,
            step,
            tracked,
            settled: false,
        })
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
        inner.uuids.retain(|_, u| u.inflight > 0 || u.failures > 0);
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

impl Attempt<'_> {
    /// Check the token: `verify` gets the UUID's replay floor and returns the
    /// step it accepted. Runs under the state's lock, so the floor is raised
    /// atomically and two requests with one token cannot both pass. A success
    /// clears the pair's failure count (it cannot happen while the pair is
    /// locked) and makes `ip` the last good address; a failure is counted and
    /// may engage a lock.
    pub fn commit(
        self,
        verify: impl FnOnce(Option<u64>) -> std::result::Result<u64, AuthFailure>,
    ) -> std::result::Result<(), Failed> {
        let now = self.state.clock.now();
        self.commit_at(verify, now)
    }

    fn commit_at(
        mut self,
        verify: impl FnOnce(Option<u64>) -> std::result::Result<u64, AuthFailure>,
        now: Instant,
    ) -> std::result::Result<(), Failed> {
        self.settled = true;
        let state = self.state;
        let mut inner = state.lock();
        self.release(&mut inner);
        let floor = inner.floors.get(&self.uuid).copied();
        match verify(floor) {
            Ok(step) => {
                inner
                    .floors
                    .insert(self.uuid, floor.map_or(step, |f| f.max(step)));
                if let Some(p) = inner.pairs.get_mut(&(self.uuid, self.ip)) {
                    p.failures = 0;
                    if p.empty() {
                        inner.pairs.remove(&(self.uuid, self.ip));
                    }
                }
                inner.last_good.insert(self.uuid, self.ip);
                state.touch();
                Ok(())
            }
            Err(why) => {
                let locked = self.failure(&mut inner, now);
                if locked.is_some() {
                    state.touch();
                }
                Err(Failed { why, locked })
            }
        }
    }

    /// Take this attempt out of the in-flight counts.
    fn release(&self, inner: &mut Inner) {
        if let Some(u) = inner.uuids.get_mut(&self.uuid) {
            u.inflight = u.inflight.saturating_sub(1);
        }
        if self.tracked {
            if let Some(p) = inner.pairs.get_mut(&(self.uuid, self.ip)) {
                p.inflight = p.inflight.saturating_sub(1);
                if p.empty() {
                    inner.pairs.remove(&(self.uuid, self.ip));
                }
            }
        }
    }

    /// Count a failure; returns the lock period when it engaged one.
    fn failure(&self, inner: &mut Inner, now: Instant) -> Option<Duration> {
        let u = inner.uuids.entry(self.uuid).or_default();
        if u.step != self.step {
            // The step moved on while this attempt was checked: count it in its own.
            if self.step < u.step {
                return self.pair_failure(inner, now);
            }
            u.step = self.step;
            u.failures = 0;
        }
        u.failures = u.failures.saturating_add(1);
        self.pair_failure(inner, now)
    }

    fn pair_failure(&self, inner: &mut Inner, now: Instant) -> Option<Duration> {
        let p = pair_entry(&mut inner.pairs, self.uuid, self.ip, now)?;
        p.last_seen = now;
        p.failures += 1;
        if p.failures < LOCK_AFTER_FAILURES {
            return None;
        }
        let period = LOCK_BASE
            .saturating_mul(1u32 << p.locks.min(16))
            .min(LOCK_MAX);
        p.locked_until = Some(now + period);
        p.locks = p.locks.saturating_add(1);
        p.failures = 0;
        Some(period)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let mut inner = self.state.lock();
            self.release(&mut inner);
        }
    }
}

/// The pair's entry, created if the table has room (pruning it first when
/// full). `None` when it has none: the attempt then counts only toward the
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

/// Keep an entry while an attempt is in flight or it is locked, for
/// [`LOCK_MEMORY`] after its last lock ended (so the doubling survives a
/// pause), and for [`LOCK_MAX`] after its last failure otherwise.
fn prune(pairs: &mut HashMap<(Uuid, IpAddr), PairState>, now: Instant) {
    pairs.retain(|_, p| {
        p.inflight > 0
            || match p.locked_until {
                Some(until) if until > now => true,
                Some(until) => now.duration_since(until) < LOCK_MEMORY,
                None => p.failures > 0 && now.duration_since(p.last_seen) < LOCK_MAX,
            }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_secs(30);

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn wrong(_: Option<u64>) -> std::result::Result<u64, AuthFailure> {
        Err(AuthFailure::BadToken)
    }

    /// One failed attempt at `now`; the lock it engaged, if any.
    fn fail(s: &SecurityState, u: Uuid, from: IpAddr, step: u64, now: Instant) -> Option<Duration> {
        let a = s.begin_at(u, from, step, STEP, now).expect("may try");
        a.commit_at(wrong, now).expect_err("wrong").locked
    }

    #[test]
    fn ten_failures_lock_the_pair_only() {
        let s = SecurityState::new();
        let u = Uuid::new_v4();
        let t = Instant::now();
        for i in 0..9 {
            assert!(fail(&s, u, ip(1), 5, t).is_none(), "failure {i}");
        }
        assert_eq!(fail(&s, u, ip(1), 5, t), Some(LOCK_BASE));
        assert!(matches!(
            s.begin_at(u, ip(1), 5, STEP, t),
            Err(Throttled::PairLocked(_))
        ));
        assert!(
            s.begin_at(u, ip(2), 5, STEP, t).is_ok(),
            "another address is not locked"
        );
    }

    #[test]
    fn lock_doubles() {
        let s = SecurityState::new();
        let u = Uuid::new_v4();
        let mut t = Instant::now();
        let mut periods = Vec::new();
        for round in 0..3 {
            for _ in 0..LOCK_AFTER_FAILURES {
                // A new step each round: the per-UUID cap is not the subject.
                if let Some(p) = fail(&s, u, ip(1), round, t) {
                    periods.push(p);
                    t += p;
                }
            }
        }
        assert_eq!(periods, vec![LOCK_BASE, LOCK_BASE * 2, LOCK_BASE * 4]);
    }

    /// A cookie success from the locked address changes nothing but the last
    /// good address: the lock holds for the right token until it ends, and
    /// the next lock is twice as long. (The old limiter forgot the pair on
    /// any success, so guessing was unlimited for a visitor sharing the
    /// hidden server's address.)
    #[test]
    fn a_cookie_success_never_shortens_or_forgets_a_lock() {
        let s = SecurityState::new();
        let u = Uuid::new_v4();
        let t0 = Instant::now();
        for _ in 0..LOCK_AFTER_FAILURES {
            fail(&s, u, ip(1), 1, t0);
        }
        for _ in 0..5 {
            s.cookie_success(u, ip(1));
        }
        let just_before = t0 + LOCK_BASE - Duration::from_millis(1);
        assert!(
            matches!(
                s.begin_at(u, ip(1), 3, STEP, just_before),
                Err(Throttled::PairLocked(_))
            ),
            "still locked after cookie successes"
        );
        let after = t0 + LOCK_BASE;
        let mut locked = None;
        for _ in 0..LOCK_AFTER_FAILURES {
            s.cookie_success(u, ip(1));
            locked = fail(&s, u, ip(1), 4, after);
        }
        assert_eq!(locked, Some(LOCK_BASE * 2), "the next lock doubles");
    }

    /// A token success clears the pair's failure count but not its lock
    /// history.
    #[test]
    fn a_token_success_clears_failures_not_history() {
        let s = SecurityState::new();
        let u = Uuid::new_v4();
        let t0 = Instant::now();
        for _ in 0..LOCK_AFTER_FAILURES {
            fail(&s, u, ip(1), 1, t0);
        }
        let t1 = t0 + LOCK_BASE;
        for _ in 0..LOCK_AFTER_FAILURES - 1 {
            fail(&s, u, ip(1), 2, t1);
        }
        let a = s.begin_at(u, ip(1), 2, STEP, t1).expect("not locked");
        a.commit_at(|_| Ok(2), t1).expect("right token");
        assert_eq!(s.floor(&u), Some(2));
        for _ in 0..LOCK_AFTER_FAILURES - 1 {
            assert_eq!(fail(&s, u, ip(1), 3, t1), None, "count restarted");
        }
        assert_eq!(fail(&s, u, ip(1), 3, t1), Some(LOCK_BASE * 2));
    }

    /// Attempts reserved at once never exceed the allowance left.
    #[test]
    fn attempts_in_flight_are_bounded_by_the_allowance() {
        let s = SecurityState::new();
        let u = Uuid::new_v4();
        let t = Instant::now();
        for _ in 0..3 {
            fail(&s, u, ip(1), 1, t);
        }
        let held: Vec<Attempt<'_>> = (0..LOCK_AFTER_FAILURES - 3)
            .map(|i| {
                s.begin_at(u, ip(1), 1, STEP, t)
                    .unwrap_or_else(|r| panic!("attempt {i}: {r:?}"))
            })
            .collect();
        assert_eq!(
            s.begin_at(u, ip(1), 1, STEP, t).err(),
            Some(Throttled::Busy),
            "the whole allowance is in flight"
        );
        // An attempt dropped unsettled gives its place back.
        drop(held);
        assert!(s.begin_at(u, ip(1), 1, STEP, t).is_ok());
    }

    #[test]
    fn uuid_cap_spares_the_last_good_address() {
        let s = SecurityState::new();
        let u = Uuid::new_v4();
        let t = Instant::now();
        s.cookie_success(u, ip(9));
        for i in 0..UUID_FAILURES_PER_STEP {
            fail(&s, u, ip(10 + (i % 5) as u8), 7, t);
        }
        assert!(
            matches!(s.begin_at(u, ip(3), 7, STEP, t), Err(Throttled::UuidCapped(d)) if d == STEP)
        );
        assert!(
            s.begin_at(u, ip(9), 7, STEP, t).is_ok(),
            "last good address still tries"
        );
        assert!(
            s.begin_at(u, ip(3), 8, STEP, t).is_ok(),
            "next step opens again"
        );
    }

    /// Floors, last good addresses and locks with their history survive a
    /// save and load (a restart); a visitor spending the per-UUID cap right
    /// after it does not keep the last good address out.
    #[test]
    fn the_state_survives_a_restart() {
        let s = SecurityState::new();
        let u = Uuid::new_v4();
        let t = Instant::now();
        let a = s.begin_at(u, ip(9), 7, STEP, t).expect("may try");
        a.commit_at(|_| Ok(7), t).expect("right token");
        for _ in 0..LOCK_AFTER_FAILURES {
            fail(&s, u, ip(1), 7, t);
        }
        let loaded = SecurityState::from_text(&s.to_text()).expect("reads back");
        assert_eq!(loaded.floor(&u), Some(7), "replay floor kept");
        assert!(
            matches!(loaded.begin(u, ip(1), 7, STEP), Err(Throttled::PairLocked(d)) if d > LOCK_BASE - Duration::from_secs(5)),
            "lock kept"
        );
        let now = Instant::now();
        for i in 0..UUID_FAILURES_PER_STEP {
            fail(&loaded, u, ip(20 + (i % 5) as u8), 8, now);
        }
        assert!(
            loaded.begin(u, ip(9), 8, STEP).is_ok(),
            "the agent's address is still let in after a restart"
        );
        assert!(matches!(
            loaded.begin(u, ip(3), 8, STEP),
            Err(Throttled::UuidCapped(_))
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
