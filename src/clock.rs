//! The time the registry and the security state read: the system's
//! monotonic clock in the server, a clock that moves only when told in
//! tests, so cookie lifetimes and lockouts are tested without sleeping.

use std::sync::Arc;
use std::time::Instant;

/// A source of monotonic time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The system clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(any(test, feature = "internals"))]
pub use manual::ManualClock;

#[cfg(any(test, feature = "internals"))]
mod manual {
    use super::Clock;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    /// A clock that starts at the system's now and moves only by
    /// [`ManualClock::advance`]. Clones share the time. For the tests.
    #[derive(Debug, Clone)]
    pub struct ManualClock {
        now: Arc<Mutex<Instant>>,
    }

    impl Default for ManualClock {
        fn default() -> ManualClock {
            ManualClock {
                now: Arc::new(Mutex::new(Instant::now())),
            }
        }
    }

    impl ManualClock {
        /// A clock at the system's now.
        pub fn new() -> ManualClock {
            ManualClock::default()
        }

        /// Move the clock forward by `d`.
        pub fn advance(&self, d: Duration) {
            *self.now.lock().unwrap_or_else(PoisonError::into_inner) += d;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.now.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }
}
