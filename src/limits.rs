//! Every limit and timeout default, as a named constant in one place.
//!
//! The command-line defaults in the man pages are written from these.

use std::time::Duration;

/// Default registrar listen address (HTTPS).
pub const DEFAULT_REGISTRAR_ADDR: &str = "0.0.0.0:8898";
/// Default rendezvous (plain TCP) listen address.
pub const DEFAULT_RENDEZVOUS_ADDR: &str = "0.0.0.0:8899";
/// Default registrar port a `--server` URL without a port gets.
pub const DEFAULT_REGISTRAR_PORT: u16 = 8898;
/// Default state folder when neither `--state-dir` nor `$RENDEZVOUS_STATE_DIR` is set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rendezvous";

/// Largest request head, including its final blank line.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines in a request head (including `Host`).
pub const MAX_HEADERS: usize = 64;
/// Largest request body the registrar API reads (and discards).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest first line on the rendezvous port, including its newline.
pub const MAX_COOKIE_LINE: usize = 256;
/// Longest status line a client reads from the rendezvous port.
pub const MAX_STATUS_LINE: usize = 256;
/// Largest registrar response a client reads.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Default `--handshake-timeout`: TLS handshake plus the first head, or the cookie line.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--pair-timeout`: how long an initiator waits for a responder.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive registrar connection may sit idle between requests.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Default `--drain-timeout`: how long active pairs may run after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--cookie-ttl`.
pub const COOKIE_TTL: Duration = Duration::from_secs(600);
/// Default `--pool-max`: parked sockets per UUID and protocol.
pub const POOL_MAX: usize = 16;
/// Default `--max-connections`: concurrent accepted sockets, all listeners together.
pub const MAX_CONNECTIONS: usize = 4096;
/// The largest `--pair-timeout`, `--handshake-timeout` and `--drain-timeout`
/// (an hour). Larger values would mean "forever"; an `Instant` plus one near
/// `u64::MAX` seconds overflows, so they are refused, not clamped.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The largest `--cookie-ttl` (a week).
pub const MAX_COOKIE_TTL: Duration = Duration::from_secs(7 * 86_400);
/// The largest `--pool-max`. A pool's channel is allocated whole when a UUID
/// first registers, so its size must stay modest.
pub const MAX_POOL_MAX: usize = 1024;
/// Concurrent connections from one source address that have proved no
/// credential yet: in their TLS handshake, sending request heads, idle
/// between keep-alive requests, or before their cookie line (the slowloris
/// and slot-hoarding bound per address). Parked and paired connections do
/// not count. 128 leaves a NAT or terminator of many honest clients room,
/// while one address cannot hold the default `--max-connections` (4096).
pub const MAX_UNAUTH_PER_ADDR: usize = 128;
/// How often the reaper sweeps expired cookies and dead parked sockets.
pub const REAP_INTERVAL: Duration = Duration::from_secs(5);
/// How often the server writes its security state (replay floors, locks,
/// last good addresses) when it changed: a crash loses at most this much,
/// and a busy server writes the file at most once per interval.
pub const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Default `--keepalive`: seconds of silence before TCP keepalive probes a
/// parked, relayed or agent socket. Below the idle timeouts of common NATs
/// and carrier-grade NATs (30-120 s; some home routers 60 s), so a probe
/// refreshes the mapping before it expires. Probes follow every fifth of it
/// (5 s), and `TCP_USER_TIMEOUT` is the idle time plus two of those (35 s):
/// a peer that answers neither of two probes, or acknowledges no data for
/// that long, is given up. A probe and its ACK are two 52-byte IP packets;
/// one side probes per 25 s of silence, about 15 KB an hour per socket.
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// Unanswered keepalive probes before the kernel gives up (`TCP_KEEPCNT`;
/// the user timeout above usually ends it first).
pub const KEEPALIVE_PROBES: u32 = 3;
/// The liveness proof waits this many smoothed RTTs of the parked socket for
/// the acknowledgement of the bytes it sent it (`+OK`, or the forwarded head)...
pub const ACK_PROOF_RTTS: u32 = 4;
/// ...at least this long: a peer may delay its ACK (Linux by 40 ms or more,
/// Windows and the BSDs by up to 200 ms) when nothing asks it not to. A
/// live socket costs only its real ACK time; this much is lost only per dead
/// socket tried.
pub const ACK_PROOF_MIN: Duration = Duration::from_millis(250);
/// ...and at most this long: an LTE link's RTT under load reaches a second;
/// a socket slower than this is treated as dead, and the next one is tried.
pub const ACK_PROOF_MAX: Duration = Duration::from_secs(2);
/// A waiting connection of an agent that fails after it lived this long is
/// replaced at once; one that fails sooner (a server refusing or evicting
/// at once) waits out the backoff, so the agent never spins.
pub const PARK_SETTLED: Duration = Duration::from_secs(10);
/// Default `expose --park-max-age`: a parked connection older than this is
/// retired and replaced, so a pool never keeps a socket a middlebox may
/// have forgotten while keepalive could not tell. Re-parking uses the cookie,
/// never a token.
pub const PARK_MAX_AGE: Duration = Duration::from_secs(600);

/// After a `-ERR` line on the rendezvous port: how long the server reads
/// and drops what the client still sends (its first bytes, up to 4 KiB
/// from `connect --listen`) before it closes. Closed with those bytes
/// unread, the socket sent a reset, which kills the line if it needs
/// resending on a lossy link; a client that closes at once ends it sooner.
pub const REFUSAL_DRAIN: Duration = Duration::from_secs(1);
/// ... and how many bytes it drops at most in that time.
pub const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;
/// Client side: timeout for connecting and for each registrar exchange.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Client side: how long a resolved host name is used before it is looked
/// up again (a failed connection looks it up at once). A minute: DNS
/// changes of a moving server are seen within it, and a client making a
/// connection a second resolves once a minute, not each time.
pub const RESOLVED_TTL: Duration = Duration::from_secs(60);
/// `connect --listen`: the oldest a connection to the rendezvous server
/// made ahead of the next local client may be when used. Well inside the
/// server's default `--handshake-timeout` (10 s), after which it closes a
/// connection that sent no cookie line, and far inside any NAT's idle
/// timeout; a client that comes 2 s after the last is not in a burst.
pub const SPARE_MAX_AGE: Duration = Duration::from_secs(2);
/// Connecting to one of several registrars, where another can be tried:
/// three SYNs (sent at 0, 1 and 3 s) on a lossy link, not four. A node's
/// machine that vanished silently cost an agent 15 s here on top of its
/// dial's 15 s (`tests/nat.rs`, a node vanishing: 36 s in all).
pub const REGISTRAR_FAILOVER_CONNECT: Duration = Duration::from_secs(5);
/// Agent backoff: first delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Agent backoff: the ceiling.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// After this many failed dials in a row to the rendezvous server its
/// triple names, the agent refreshes its cookie at once (no token): with
/// several nodes, the named one may be dead, and the refresh names a live
/// one. Three is past a lost SYN or two (1 s + 2 s of backoff). A dial
/// refused outright (nothing listens: the node's process died) asks after
/// the first.
pub const DIALS_BEFORE_REFRESH: u32 = 3;
/// Default `expose --pool`: waiting connections the agent keeps.
pub const AGENT_POOL: usize = 4;

/// Stack of every connection and relay thread (threads are reused for
/// both). Measured with `cargo bench --bench relay -- --stack-probe KIB`
/// (TLS handshake, head, routing, TOTP, response, a log line): a release
/// build fits in the 16 KiB minimum, a debug build needs 64 KiB; 256 KiB
/// leaves room for trace-level logging of rustls's handshake structures in
/// debug builds. Only touched pages count toward RSS.
pub const CONN_STACK: usize = 256 * 1024;
/// Relay buffer per direction.
pub const RELAY_BUF: usize = 64 * 1024;

/// Failures from one (UUID, address) before that pair is locked.
pub const LOCK_AFTER_FAILURES: u32 = 10;
/// First lock period; it doubles on every further lock.
pub const LOCK_BASE: Duration = Duration::from_secs(60);
/// Longest lock period.
pub const LOCK_MAX: Duration = Duration::from_secs(3600);
/// Failures per UUID per TOTP step, all sources together, before only the last
/// good address may try.
pub const UUID_FAILURES_PER_STEP: u32 = 20;

/// TOTP: smallest and largest accepted digit counts.
pub const TOTP_DIGITS: std::ops::RangeInclusive<u32> = 6..=8;
/// TOTP: accepted step lengths in seconds.
pub const TOTP_STEP: std::ops::RangeInclusive<u64> = 1..=3600;
/// Shortest secret the users file accepts (RFC 4226 asks for 128 bits).
pub const MIN_SECRET_BYTES: usize = 16;
/// Length of a secret `user add` generates (160 bits, as RFC 4226 recommends).
pub const NEW_SECRET_BYTES: usize = 20;

/// How long an idle connection or relay thread waits for the next job
/// before it exits (thread reuse; see `threads`).
pub const IDLE_LINGER: Duration = Duration::from_secs(2);

/// Pipe capacity asked for when a generic pair's pipe is enlarged.
pub const PIPE_SIZE: usize = 1 << 20;
/// A new pipe's capacity (the kernel's default).
pub const DEFAULT_PIPE: usize = 64 * 1024;
/// How many pipes may be enlarged at once. The kernel accounts pipe capacity
/// per user (`fs.pipe-user-pages-soft`, 16,384 pages); a user past it gets
/// tiny pipes for every new pair. 32 pipes of 1 MiB are half of that; the
/// other pairs keep the default 64 KiB (16 pages each).
pub const MAX_BIG_PIPES: usize = 32;
/// A read this large on a generic pair's direction means data is arriving
/// faster than it is forwarded (typing and requests come in far smaller
/// reads; a full default pipe holds 64 KiB, or about 23 KiB of 1,448-byte
/// segments from an Ethernet NIC): its pipe is enlarged then, if a slot is free.
pub const BACKLOG: usize = 16 * 1024;
/// A TLS leg's socket read: one full record (16 KiB plus overhead).
pub const TLS_READ_BUF: usize = 16 * 1024 + 512;

/// The most (UUID, address) entries the lockout table keeps. When full,
/// entries that may be forgotten are pruned; if none may, a new address's
/// failures count only toward the per-UUID cap (no history is wiped).
pub const MAX_LOCKOUT_ENTRIES: usize = 100_000;
/// How long a (UUID, address) pair that was locked keeps its lock count
/// after the lock ends, so that pausing does not restart the doubling.
pub const LOCK_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// The shared store (`serve --store`): connect, read and write timeout of
/// each round trip. A store on the same network answers in well under a
/// millisecond; a second means it is gone, and a token waiting longer
/// holds a connection thread for nothing.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(1);
/// A node's lease in the shared store (`--node-ttl`): renewed every third
/// of it, so a node is taken for dead one to two heartbeats after it
/// stopped, and a store that is slow for a moment does not cost a lease.
/// Lookups stop naming a dead node after it; agents that parked there
/// re-register sooner, when their sockets close.
pub const NODE_TTL: Duration = Duration::from_secs(15);
/// The shortest `--node-ttl`: the heartbeat (a third of it) must leave the
/// store's one-second timeout room.
pub const NODE_TTL_MIN: Duration = Duration::from_secs(3);
/// Idle connections to the shared store kept for reuse. More are opened
/// when more threads ask at once, and closed after use.
pub const STORE_POOL_IDLE: usize = 16;
/// How long a UUID's replay floor, failure count and last good address stay
/// in the shared store after their last write. Each registration and
/// cookie use writes it again; a UUID silent for a week has its
/// floor below any token the window accepts anyway.
pub const STORE_STATE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a server on a shared store reads the users table whole, even
/// without a change notice (a notice is lost while a connection is down).
pub const USERS_RECONCILE: Duration = Duration::from_secs(10);
/// `Retry-After` of a 503 while the shared store does not answer.
pub const STORE_RETRY_AFTER: u64 = 5;

/// Links between nodes (the HTTP-specific protocol forwarded): the longest
/// request line (`TAKE`, a UUID, a time, a budget, a length and a 64-digit
/// tag fit in 180 bytes).
pub const PEER_LINE_MAX: usize = 256;
/// The most bytes a forwarded request carries before the pair is made: a
/// request head and the body bytes read with it.
pub const PEER_FIRST_MAX: usize = MAX_HEAD_BYTES + MAX_BODY_BYTES;
/// How long a node asked for a parked `CONNECT` waits for one of its own
/// before it answers `-ERR not ready`: long enough for an agent to refill
/// a pool that a pairing just emptied (a round trip or two), short enough
/// that the asking node tries the other holders well within its pair
/// timeout.
pub const PEER_TAKE_WAIT: Duration = Duration::from_secs(1);
/// How long the node that received a mobile request waits on its own pool
/// between rounds of asking the nodes that hold the UUID.
pub const PEER_POLL: Duration = Duration::from_millis(250);
/// How much longer than the other node's own bound (the budget, one
/// pause and one proof) the asking node waits for its answer: a round trip
/// between nodes and a loaded scheduler. Waiting less could give up on a
/// request the hidden server already has.
pub const PEER_ANSWER_SLACK: Duration = Duration::from_secs(1);
/// Connecting to another node's peer listener (same data centre or LAN).
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A link request older or newer than this (the nodes' clocks, NTP-set,
/// and a round trip) is refused: a captured request cannot be replayed
/// later, on top of TLS, which already prevents it.
pub const PEER_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// A `CONNECT` taken by a mobile request within this long of its `200`
/// waits out the rest before the request is written to it, so the two
/// arrive in separate reads: the steward's hidden server (Node's `connect`
/// event) drops bytes that come with its `200`. 50 ms was enough in the
/// measurements against it; a `CONNECT` that waited for its client is not
/// delayed, nor one from `rendezvous expose` (its `User-Agent`), which
/// reads its `200` byte by byte.
pub const FIRST_REQUEST_PAUSE: Duration = Duration::from_millis(50);
