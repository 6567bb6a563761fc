//! The operations on the server's state, as values: what a protocol step
//! asks the store, and what it answers. Both stores (the embedded one in
//! memory, Redis) judge a token by [`judge`] and the same limits, so the
//! contract tests hold them to one behaviour.

use crate::error::AuthFailure;
use crate::secret::Cookie;
use std::net::IpAddr;
use std::time::Duration;
use uuid::Uuid;

/// One token attempt, checked against the users table by the server before
/// it reaches the store: the store sees which TOTP steps the token matched,
/// never the token or the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAttempt {
    /// The hidden server.
    pub uuid: Uuid,
    /// Where the attempt came from.
    pub ip: IpAddr,
    /// The user's current TOTP step.
    pub step: u64,
    /// Time until the next step (the `Retry-After` of a capped UUID).
    pub to_next_step: Duration,
    /// The steps of the skew window whose code the token is (usually none or
    /// one).
    pub matched: Vec<u64>,
}

/// The registration a token makes if it is accepted, which a shared store
/// records in the same atomic step as the judgment (one round trip): a new
/// `R` cookie, and the `I` cookie the registration gets if the store has
/// none for the UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The new `R` cookie.
    pub responder: Cookie,
    /// This server's `I` cookie for the UUID, or a new one.
    pub initiator: Cookie,
    /// How long the registration lives unused (`--cookie-ttl`).
    pub ttl: Duration,
}

/// The store could not be asked (unreachable, timed out, refused us): a
/// token cannot be judged, so it is refused with 503 (single use cannot be
/// guaranteed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Why an attempt is refused before it is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// This (UUID, address) is locked for this long.
    PairLocked(Duration),
    /// The UUID's per-step failure cap is reached; retry at the next step.
    UuidCapped(Duration),
}

impl Throttled {
    /// Seconds for `Retry-After` (at least 1).
    pub fn retry_after(&self) -> u64 {
        let (Throttled::PairLocked(d) | Throttled::UuidCapped(d)) = self;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }

    /// A short reason for the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Throttled::PairLocked(_) => "locked-out",
            Throttled::UuidCapped(_) => "uuid-capped",
        }
    }
}

/// A failed attempt, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    /// Why the token was refused.
    pub why: AuthFailure,
    /// The lock period this failure engaged, if it engaged one.
    pub locked: Option<Duration>,
}

/// What the store made of a token attempt, in one atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted for this step: the replay floor is raised to it, the pair's
    /// failure count cleared, and the address is the UUID's last good one.
    Accepted(u64),
    /// Refused unchecked (nothing counted).
    Throttled(Throttled),
    /// Refused and counted; maybe a lock engaged.
    Failed(Failed),
}

pub use crate::totp::judge;

/// The lock period of a pair's `locks`-th lock (counted from 0): doubling
/// from `LOCK_BASE`, at most `LOCK_MAX`.
pub fn lock_period(locks: u32) -> Duration {
    crate::limits::LOCK_BASE
        .saturating_mul(1u32 << locks.min(16))
        .min(crate::limits::LOCK_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_takes_the_earliest_fresh_step() {
        assert_eq!(judge(&[], None), Err(AuthFailure::BadToken));
        assert_eq!(judge(&[7], None), Ok(7));
        assert_eq!(judge(&[8, 7], Some(6)), Ok(7));
        assert_eq!(judge(&[7, 8], Some(7)), Ok(8));
        assert_eq!(judge(&[7], Some(7)), Err(AuthFailure::Replay));
        assert_eq!(judge(&[6], Some(7)), Err(AuthFailure::Replay));
    }

    #[test]
    fn lock_periods_double_to_the_maximum() {
        use crate::limits::{LOCK_BASE, LOCK_MAX};
        assert_eq!(lock_period(0), LOCK_BASE);
        assert_eq!(lock_period(1), LOCK_BASE * 2);
        assert_eq!(lock_period(40), LOCK_MAX);
    }
}
