//! The HTTP-specific protocol across nodes. A mobile client's request
//! lands on node B; the hidden server's `CONNECT`s are parked on node A.
//! B takes one from A over a link and relays, so the client never sees a
//! redirect (which would drop `Authorization` in curl and break a
//! browser's WebSocket).
//!
//! The link: B connects to A's `--peer-listen` (the address A advertised
//! in its lease), TLS 1.3 pinned to the cluster's key (`keys`), and sends
//!
//! ```text
//! TAKE <uuid> <unix ms> <budget ms> <length> <hmac>\n<length bytes>
//! ```
//!
//! the bytes being the mobile client's request head (without
//! `Authorization`) and the body bytes read with it, the HMAC-SHA256 (hex)
//! over the line up to the length and its newline, then the bytes. A
//! writes them to one of its parked `CONNECT`s, and once the hidden
//! server's side acknowledged them answers `+OK\n` and relays the link
//! with that connection; else `-ERR not ready\n` (none parked within the
//! budget: what is left of B's pair timeout, at most
//! [`PEER_TAKE_WAIT`](crate::limits::PEER_TAKE_WAIT); A starts no delivery
//! after it, and B waits for the one A started). A refused request
//! (bad tag, stale time, malformed) is closed without an answer.
//! `serve` is A's side, `link` B's.

pub mod keys;
pub mod link;
pub mod peers;
pub mod serve;
pub mod wire;
