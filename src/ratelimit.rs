//! Rate-limited warnings: one line per interval for a message that can
//! repeat (connection caps, failed accepts, lost connections).

use std::time::{Duration, Instant};

/// Rate-limits a repeated warning to one line per interval.
#[derive(Debug)]
pub struct RateLimit {
    last: std::sync::Mutex<Option<Instant>>,
    every: Duration,
}

impl RateLimit {
    /// At most one `ready()` per `every`.
    pub fn new(every: Duration) -> RateLimit {
        RateLimit {
            last: std::sync::Mutex::new(None),
            every,
        }
    }

    /// True when a line may be logged now.
    pub fn ready(&self) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|l| now.duration_since(l) < self.every) {
            return false;
        }
        *last = Some(now);
        true
    }
}
