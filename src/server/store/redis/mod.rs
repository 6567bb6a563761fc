//! The shared store: Redis or Valkey (`serve --store URL`), through the
//! `redis` crate's synchronous API. Each operation is one Lua script
//! (`EVALSHA`, falling back to `EVAL` once after a restart of the store), so
//! it is one round trip and atomic across every server that shares the
//! store.
//!
//! Keys are prefixed `rdv:` and hash-tagged by UUID, and every one has a
//! TTL: `rdv:{UUID}:sec` (a hash: replay floor, last good address, the
//! current step's failures; [`STORE_STATE_TTL`] after its last write) and
//! `rdv:{UUID}:ip:ADDR` (a hash: failures, locks, lock end; while locked and
//! [`LOCK_MEMORY`] after, else [`LOCK_MAX`] after its last failure, as in
//! the embedded store), `rdv:{UUID}:reg` (a hash: the `I` cookie) and
//! `rdv:rc:COOKIE` (an `R` cookie's UUID), both `--cookie-ttl` after their
//! last use. Times are the servers' wall clocks in milliseconds.
//!
//! The users table is the hash `rdv:users` (no TTL): each user a line of
//! the users file, keyed by its UUID. A change is announced on the channel
//! `rdv:users:changed`; servers read the whole table when told, and every
//! [`USERS_RECONCILE`](crate::limits::USERS_RECONCILE) anyway, which is the truth when a notice is lost.
//!
//! Connections are pooled here: a bounded channel of idle ones, a new one
//! made when none is idle; one that failed is dropped. Every connect, read
//! and write has [`STORE_TIMEOUT`](crate::limits::STORE_TIMEOUT) (see
//! `target`, which also finds the primary through Redis Sentinel).

use super::ops::{Failed, Offer, Throttled, TokenAttempt, Unavailable, Verdict};
use crate::clock::Clock;
use crate::error::{AuthFailure, Error, Result};
use crate::limits::{
    LOCK_AFTER_FAILURES, LOCK_BASE, LOCK_MAX, LOCK_MEMORY, STORE_POOL_IDLE, STORE_STATE_TTL,
    UUID_FAILURES_PER_STEP,
};
use crate::secret::Cookie;
use crossbeam_channel::{bounded, Receiver, Sender};
use crate::server::store::args::StoreArgs;
use redis::{Connection, Script};
use target::Target;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

mod cookies;
mod located;
mod nodes;
mod target;
mod users;

const T: &str = "rendezvous::store";

/// The token check: throttles, replay floor and failure count in one step,
/// and the registration a token makes when it is accepted.
/// KEYS: the UUID's `sec` hash, the pair's hash, then with an offer the
/// registration's hash and the new `R` cookie's key. ARGV: now (ms), step,
/// to next step (ms), address, lock after, UUID cap, lock base (ms), lock
/// max (ms), lock memory (ms), state TTL (ms), the UUID (empty for no
/// offer), the offered `I` cookie, the registration's lifetime (ms), this
/// node's id (empty: not a node), then the matched steps; with an offer
/// and a node id, KEYS also the UUID's generic held set. Answers {kind, n,
/// replay, I, holder id, host, port}: `locked` ms left, `capped` ms to the
/// next step, `ok` the step, the registration's `I` cookie (empty without
/// an offer) and a live node other than this one holding the UUID (empty
/// for none), `fail` the lock engaged (ms, 0 for none).
const TOKEN: &str = r"
local now, step, to_next = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ip = ARGV[4]
local lock_after, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local base, maxp, memory, ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local p = redis.call('HMGET', KEYS[2], 'fail', 'locks', 'until')
local pfail, locks, untl = tonumber(p[1]) or 0, tonumber(p[2]) or 0, tonumber(p[3]) or 0
if untl > now then return {'locked', untl - now, 0, '', '', '', 0} end
local s = redis.call('HMGET', KEYS[1], 'floor', 'good', 'ustep', 'ufail')
local floor = tonumber(s[1])
local ustep, ufail = tonumber(s[3]) or 0, tonumber(s[4]) or 0
if step > ustep then ustep = step; ufail = 0 end
local this_step = step == ustep
if this_step and s[2] ~= ip and ufail >= cap then return {'capped', to_next, 0, '', '', '', 0} end
local fresh = nil
for i = 15, #ARGV do
  local m = tonumber(ARGV[i])
  if (floor == nil or m > floor) and (fresh == nil or m < fresh) then fresh = m end
end
if fresh then
  redis.call('HSET', KEYS[1], 'floor', fresh, 'good', ip, 'ustep', ustep, 'ufail', ufail)
  redis.call('PEXPIRE', KEYS[1], ttl)
  if locks == 0 then redis.call('DEL', KEYS[2]) elseif pfail > 0 then redis.call('HSET', KEYS[2], 'fail', 0) end
  local icookie = ''
  if ARGV[11] ~= '' then
    icookie = redis.call('HGET', KEYS[3], 'i')
    if not icookie then
      icookie = ARGV[12]
      redis.call('HSET', KEYS[3], 'i', icookie)
    end
    redis.call('SET', KEYS[4], ARGV[11] .. ' ' .. icookie, 'PX', ARGV[13])
    if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[13]) then redis.call('PEXPIRE', KEYS[3], ARGV[13]) end
  end
  local h = {'', '', 0}
  if ARGV[11] ~= '' and ARGV[14] ~= '' then h = holder(KEYS[5], now, ARGV[14], '') end
  return {'ok', fresh, 0, icookie, h[1], h[2], h[3]}
end
if this_step then ufail = ufail + 1 end
redis.call('HSET', KEYS[1], 'ustep', ustep, 'ufail', ufail)
redis.call('PEXPIRE', KEYS[1], ttl)
pfail = pfail + 1
local locked = 0
if pfail >= lock_after then
  locked = math.min(base * 2 ^ math.min(locks, 16), maxp)
  untl = now + locked
  locks = locks + 1
  pfail = 0
end
redis.call('HSET', KEYS[2], 'fail', pfail, 'locks', locks, 'until', untl)
if locks > 0 then
  redis.call('PEXPIRE', KEYS[2], math.max(untl - now, 0) + memory)
else
  redis.call('PEXPIRE', KEYS[2], maxp)
end
local replay = 0
if #ARGV >= 15 then replay = 1 end
return {'fail', locked, replay, '', '', '', 0}
";

/// A cookie success: the address becomes the UUID's last good one.
const COOKIE: &str = r"
redis.call('HSET', KEYS[1], 'good', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// A pooled connection and the generation it was made in.
type Pooled = (u64, Connection);

/// The shared store.
pub struct RedisStore {
    target: Target,
    /// Idle connections, each with the generation it was made in.
    idle: (Sender<Pooled>, Receiver<Pooled>),
    /// Bumped when the primary moves: older connections are dropped.
    generation: AtomicU64,
    clock: Arc<dyn Clock>,
    /// The clock's reading at start and the wall time then (ms): the
    /// scripts' `now`, which a test clock moves.
    epoch: (Instant, u64),
    /// The last operation failed (warned once until one succeeds).
    down: AtomicBool,
    token: Script,
    cookie: Script,
    /// This node's id, and where the last answers said UUIDs are held.
    located: located::Memo,
}

impl RedisStore {
    /// The store `args` name (`redis://HOST:PORT[/DB]`, `rediss://…`,
    /// `unix:///PATH`, or sentinels and a service). Connects once, so a
    /// wrong URL or password stops the start.
    pub fn connect(args: &StoreArgs, clock: Arc<dyn Clock>) -> Result<RedisStore> {
        let target = Target::new(args)?;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let store = RedisStore {
            target,
            idle: bounded(STORE_POOL_IDLE),
            generation: AtomicU64::new(0),
            epoch: (clock.now(), wall),
            clock,
            down: AtomicBool::new(false),
            token: Script::new(&format!("{}{TOKEN}", located::HOLDER_LUA)),
            cookie: Script::new(COOKIE),
            located: located::Memo::default(),
        };
        let failed = |e: redis::RedisError| Error::Other(format!("store {}: {e}", store.describe()));
        let mut con = store.open().map_err(failed)?;
        redis::cmd("PING").query::<String>(&mut con).map_err(failed)?;
        store.warn_if_evicting(&mut con);
        let _ = store.idle.0.try_send((0, con));
        Ok(store)
    }

    /// Whether the last operation reached the store.
    pub fn reachable(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// The URL without credentials.
    pub fn describe(&self) -> String {
        self.target.describe().to_string()
    }

    fn open(&self) -> redis::RedisResult<Connection> {
        self.target.open()
    }

    /// Run `f` on a pooled connection. A failure drops the connection and
    /// answers [`Unavailable`]; the first after a success is warned about,
    /// and the first success after failures is logged.
    fn with<V>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<V>) -> std::result::Result<V, Unavailable> {
        let generation = self.generation.load(Ordering::Acquire);
        let got = loop {
            match self.idle.1.try_recv() {
                Ok((g, c)) if g == generation => break Ok(c),
                Ok(_) => continue,
                Err(_) => break self.open(),
            }
        };
        let result = got.and_then(|mut con| f(&mut con).map(|v| (v, con)));
        match result {
            Ok((v, con)) => {
                let _ = self.idle.0.try_send((generation, con));
                if self.down.swap(false, Ordering::AcqRel) {
                    log::info!(target: T, "store {} reachable again", self.describe());
                }
                Ok(v)
            }
            Err(e) => {
                // The idle connections went the same way, most likely (a
                // restart, a failover): make new ones.
                while self.idle.1.try_recv().is_ok() {}
                if !self.down.swap(true, Ordering::AcqRel) {
                    log::warn!(target: T,
                        "store {} unreachable: {e}; token authentication answers 503 until it is back",
                        self.describe());
                }
                Err(Unavailable)
            }
        }
    }

    /// With sentinels: if they name a new primary, drop the pooled
    /// connections (to the old one, which may still take writes until it
    /// is reconfigured); whether it moved.
    pub(crate) fn follow_primary(&self) -> bool {
        if !self.target.moved() {
            return false;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        while self.idle.1.try_recv().is_ok() {}
        log::warn!(target: T, "store {}: the sentinels name a new primary; reconnecting", self.describe());
        true
    }

    fn now_ms(&self) -> u64 {
        let since = self.clock.now().saturating_duration_since(self.epoch.0);
        self.epoch.1 + since.as_millis() as u64
    }

    /// Judge a token attempt (one script, one round trip).
    pub fn token(&self, a: &TokenAttempt) -> std::result::Result<Verdict, Unavailable> {
        self.judge(a, None).map(|(v, _)| v)
    }

    /// Judge a token attempt and, if it is accepted, record `offer` (one
    /// script, one round trip); the registration's `I` cookie with
    /// [`Verdict::Accepted`].
    pub fn token_and_register(
        &self,
        a: &TokenAttempt,
        offer: &Offer,
    ) -> std::result::Result<(Verdict, Option<Cookie>), Unavailable> {
        self.judge(a, Some(offer))
    }

    fn judge(
        &self,
        a: &TokenAttempt,
        offer: Option<&Offer>,
    ) -> std::result::Result<(Verdict, Option<Cookie>), Unavailable> {
        let now = self.now_ms();
        let mut inv = self.token.prepare_invoke();
        inv.key(sec_key(&a.uuid))
            .key(pair_key(&a.uuid, a.ip))
            .arg(now)
            .arg(a.step)
            .arg(ms(a.to_next_step))
            .arg(a.ip.to_string())
            .arg(LOCK_AFTER_FAILURES)
            .arg(UUID_FAILURES_PER_STEP)
            .arg(ms(LOCK_BASE))
            .arg(ms(LOCK_MAX))
            .arg(ms(LOCK_MEMORY))
            .arg(ms(STORE_STATE_TTL));
        let me = self.located.node();
        match offer {
            Some(o) => {
                inv.key(reg_key(&a.uuid))
                    .key(cookie_key(&o.responder))
                    .key(format!("rdv:{{{}}}:held:g", a.uuid))
                    .arg(a.uuid.hyphenated().to_string())
                    .arg(o.initiator.expose())
                    .arg(ms(o.ttl))
                    .arg(me);
            }
            None => {
                inv.arg("").arg("").arg(0).arg("");
            }
        }
        for m in &a.matched {
            inv.arg(*m);
        }
        let (kind, n, replay, i, hid, host, port): (String, u64, u8, String, String, String, u16) =
            self.with(|con| inv.invoke(con))?;
        let d = Duration::from_millis(n);
        Ok(match kind.as_str() {
            "ok" if offer.is_some() => match Cookie::parse(&i) {
                Some(i) => {
                    if !me.is_empty() {
                        self.located.note(a.uuid, located::located(Some(i), hid, host, port));
                    }
                    (Verdict::Accepted(n), Some(i))
                }
                None => return Err(Unavailable),
            },
            "ok" => (Verdict::Accepted(n), None),
            "locked" => (Verdict::Throttled(Throttled::PairLocked(d)), None),
            "capped" => (Verdict::Throttled(Throttled::UuidCapped(d)), None),
            _ => {
                let why = if replay == 1 { AuthFailure::Replay } else { AuthFailure::BadToken };
                (Verdict::Failed(Failed { why, locked: (n > 0).then_some(d) }), None)
            }
        })
    }

    /// A cookie success (one script, one round trip).
    pub fn cookie_success(&self, uuid: Uuid, ip: IpAddr) -> std::result::Result<(), Unavailable> {
        let mut inv = self.cookie.prepare_invoke();
        inv.key(sec_key(&uuid))
            .arg(ip.to_string())
            .arg(ms(STORE_STATE_TTL));
        self.with(|con| inv.invoke::<i64>(con)).map(|_| ())
    }

    /// A store that evicts keys under memory pressure would drop floors and
    /// locks without a word: say so at start (when `CONFIG` is permitted).
    fn warn_if_evicting(&self, con: &mut Connection) {
        let policy: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(con);
        if let Ok(v) = policy {
            if let Some(p) = v.get(1).filter(|p| p.as_str() != "noeviction") {
                log::warn!(target: T,
                    "store {} has maxmemory-policy {p}: it may evict replay floors and locks; set noeviction",
                    self.describe());
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn reg_key(uuid: &Uuid) -> String {
    format!("rdv:{{{uuid}}}:reg")
}

/// An `R` cookie's key. Not tagged by UUID: a cookie alone must find its
/// UUID (Redis Cluster, which would need that, is not supported).
fn cookie_key(c: &Cookie) -> String {
    format!("rdv:rc:{}", c.expose())
}

fn sec_key(uuid: &Uuid) -> String {
    format!("rdv:{{{uuid}}}:sec")
}

fn pair_key(uuid: &Uuid, ip: IpAddr) -> String {
    format!("rdv:{{{uuid}}}:ip:{ip}")
}
