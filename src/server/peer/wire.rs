//! The link's request: `TAKE <uuid> <unix ms> <budget ms> <length> <hmac>`
//! and the bytes it carries (see the module above for the exchange).

use super::keys::ClusterKeys;
use std::time::Duration;
use uuid::Uuid;

/// The log target of the links.
pub const T: &str = "rendezvous::peer";

/// The part of a request line the tag covers (with its newline).
fn signed_part(uuid: &Uuid, unix_ms: u64, budget_ms: u64, len: usize) -> String {
    format!("TAKE {} {unix_ms} {budget_ms} {len}\n", uuid.hyphenated())
}

/// The milliseconds since the Unix epoch, now.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A request for a parked `CONNECT` of `uuid`, carrying `first`, that the
/// asking node waits for `budget` (plus the proof of one delivery started
/// within it; see [`Take::budget`]).
pub fn request(keys: &ClusterKeys, uuid: &Uuid, budget: Duration, first: &[u8]) -> Vec<u8> {
    let budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
    let signed = signed_part(uuid, unix_ms(), budget_ms, first.len());
    let tag = keys.sign(&[signed.as_bytes(), first]);
    let mut out = Vec::with_capacity(signed.len() + tag.len() + 1 + first.len());
    out.extend_from_slice(signed.trim_end_matches('\n').as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(first);
    out
}

/// A request line, parsed (the tag is checked once the bytes are read).
#[derive(Debug, PartialEq, Eq)]
pub struct Take {
    /// The hidden server.
    pub uuid: Uuid,
    /// When it was made (ms since the epoch).
    pub unix_ms: u64,
    /// How long the asking node waits for a parked `CONNECT` (ms): no
    /// delivery may start after it, or the hidden server could get a
    /// request whose asker already answered 404.
    pub budget_ms: u64,
    /// How many bytes follow.
    pub len: usize,
    /// The HMAC, hex.
    pub tag: String,
}

impl Take {
    /// Parse a line (without its newline); `None` for anything malformed.
    pub fn parse(line: &str) -> Option<Take> {
        let mut f = line.split(' ');
        if f.next()? != "TAKE" {
            return None;
        }
        let uuid = Uuid::try_parse(f.next()?).ok()?;
        let unix_ms = f.next()?.parse().ok()?;
        let budget_ms = f.next()?.parse().ok()?;
        let len = f.next()?.parse().ok()?;
        let tag = f.next()?.to_string();
        if f.next().is_some() || len > crate::limits::PEER_FIRST_MAX || tag.len() != 64 {
            return None;
        }
        Some(Take {
            uuid,
            unix_ms,
            budget_ms,
            len,
            tag,
        })
    }

    /// Whether the tag is right for `first` and the time within
    /// [`PEER_CLOCK_SKEW`](crate::limits::PEER_CLOCK_SKEW) of ours.
    pub fn authentic(&self, keys: &ClusterKeys, first: &[u8]) -> bool {
        let skew = u64::try_from(crate::limits::PEER_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
        let signed = signed_part(&self.uuid, self.unix_ms, self.budget_ms, self.len);
        unix_ms().abs_diff(self.unix_ms) <= skew && keys.verify(&[signed.as_bytes(), first], &self.tag)
    }

    /// The asker's budget, at most [`PEER_TAKE_WAIT`](crate::limits::PEER_TAKE_WAIT).
    pub fn budget(&self) -> Duration {
        Duration::from_millis(self.budget_ms).min(crate::limits::PEER_TAKE_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_parses_and_only_its_own_bytes_authenticate() {
        let keys = ClusterKeys::from_secret(&[1u8; 32]).expect("keys");
        let uuid = Uuid::new_v4();
        let req = request(&keys, &uuid, Duration::from_millis(700), b"GET / HTTP/1.1\r\n\r\n");
        let nl = req.iter().position(|&b| b == b'\n').expect("a line");
        let line = std::str::from_utf8(&req[..nl]).expect("text");
        let take = Take::parse(line).expect("parses");
        assert_eq!((take.uuid, take.len, take.budget()), (uuid, 18, Duration::from_millis(700)));
        assert!(take.authentic(&keys, &req[nl + 1..]));
        assert!(!take.authentic(&keys, b"GET /x HTTP/1.1\r\n\r"), "other bytes");
        let other = ClusterKeys::from_secret(&[2u8; 32]).expect("keys");
        assert!(!take.authentic(&other, &req[nl + 1..]), "another cluster");
        let longer = Take { budget_ms: 5_000, ..Take::parse(line).expect("parses") };
        assert!(!longer.authentic(&keys, &req[nl + 1..]), "another budget");
        let stale = Take { unix_ms: take.unix_ms - 60_000, ..take };
        assert!(!stale.authentic(&keys, &req[nl + 1..]), "a minute old");
        for bad in ["", "TAKE", "PUT x 1 1 t", &format!("TAKE {uuid} 1 1 99999999 {}", "0".repeat(64)), &format!("TAKE {uuid} 1 1 {}", "0".repeat(64)), &format!("{line} extra")] {
            assert_eq!(Take::parse(bad), None, "{bad:?}");
        }
    }
}
