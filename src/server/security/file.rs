//! The security state on disk: `STATE/state`, JSON, written atomically
//! (mode 0600) and read back at start, times in Unix seconds so that a lock
//! that ended while the server was down has ended.

use super::{prune, Inner, PairState, SecurityState};
use crate::error::Result;
use crate::limits::{LOCK_AFTER_FAILURES, LOCK_MEMORY, MAX_LOCKOUT_ENTRIES as MAX_PAIRS};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

impl SecurityState {
    /// The state as the text [`SecurityState::load`] reads: replay floors,
    /// last good addresses, and every (UUID, address) with a lock history.
    /// Times are written as Unix seconds.
    pub fn to_text(&self) -> String {
        let now = Instant::now();
        let wall = unix_now();
        let to_unix = |t: Instant| -> u64 {
            if t >= now {
                wall.saturating_add((t - now).as_secs_f64().ceil() as u64)
            } else {
                wall.saturating_sub((now - t).as_secs())
            }
        };
        let inner = self.lock();
        let saved = Saved {
            version: SAVED_VERSION,
            floors: inner.floors.iter().map(|(u, s)| (*u, *s)).collect(),
            last_good: inner.last_good.iter().map(|(u, a)| (*u, *a)).collect(),
            pairs: inner
                .pairs
                .iter()
                .filter(|(_, p)| p.locks > 0)
                .map(|((uuid, ip), p)| SavedPair {
                    uuid: *uuid,
                    ip: *ip,
                    locks: p.locks,
                    failures: p.failures,
                    locked_until: p.locked_until.map(to_unix),
                    last_seen: to_unix(p.last_seen),
                })
                .collect(),
        };
        serde_json::to_string(&saved).unwrap_or_default()
    }

    /// Read a state written by [`SecurityState::to_text`]. Locks keep their
    /// end in wall-clock time (a lock that ended while the server was down
    /// has ended), and their history.
    pub fn from_text(text: &str) -> std::result::Result<SecurityState, String> {
        let saved: Saved = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if saved.version != SAVED_VERSION {
            return Err(format!("unknown version {}", saved.version));
        }
        let now = Instant::now();
        let wall = unix_now();
        let from_unix = |t: u64| -> Instant {
            if t >= wall {
                now + Duration::from_secs((t - wall).min(LOCK_MEMORY.as_secs() * 2))
            } else {
                now.checked_sub(Duration::from_secs(wall - t))
                    .unwrap_or(now)
            }
        };
        let mut inner = Inner {
            floors: saved.floors.into_iter().collect(),
            last_good: saved.last_good.into_iter().collect(),
            ..Inner::default()
        };
        for p in saved.pairs.into_iter().take(MAX_PAIRS) {
            inner.pairs.insert(
                (p.uuid, p.ip),
                PairState {
                    failures: p.failures.min(LOCK_AFTER_FAILURES - 1),
                    locks: p.locks,
                    locked_until: p.locked_until.map(from_unix),
                    last_seen: from_unix(p.last_seen),
                },
            );
        }
        prune(&mut inner.pairs, now);
        Ok(SecurityState {
            inner: Mutex::new(inner),
            dirty: AtomicBool::new(false),
            clock: crate::clock::system(),
        })
    }

    /// Write the state to `path` atomically (mode 0600).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::files::write_atomic(path, self.to_text().as_bytes(), 0o600)
    }

    /// Read the state from `path`. A missing file is an empty state; a torn
    /// or unreadable one is an empty state and a warning for the log (never
    /// a reason not to start).
    pub fn load(path: &Path) -> (SecurityState, Option<String>) {
        match std::fs::read_to_string(path) {
            Ok(text) => match SecurityState::from_text(&text) {
                Ok(s) => (s, None),
                Err(e) => (
                    SecurityState::new(),
                    Some(format!(
                        "state file {} is unreadable ({}); starting with an empty security state",
                        path.display(),
                        e.chars().take(100).collect::<String>()
                    )),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (SecurityState::new(), None),
            Err(e) => (
                SecurityState::new(),
                Some(format!(
                    "state file {} is unreadable ({e}); starting with an empty security state",
                    path.display()
                )),
            ),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const SAVED_VERSION: u32 = 1;

/// The state file's contents (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    version: u32,
    floors: BTreeMap<Uuid, u64>,
    last_good: BTreeMap<Uuid, IpAddr>,
    pairs: Vec<SavedPair>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedPair {
    uuid: Uuid,
    ip: IpAddr,
    locks: u32,
    failures: u32,
    locked_until: Option<u64>,
    last_seen: u64,
}
