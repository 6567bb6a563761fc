//! Nodes in the store (`serve --store`, several servers sharing it):
//! `rdv:node:ID` (a hash: the instance holding the id, and the host and
//! port its triples name), a lease of `--node-ttl` that the node's
//! heartbeat renews; and `rdv:{UUID}:held:P` (a sorted set: the nodes
//! holding parked sockets of the UUID for protocol `P`, `g` or `h`, each
//! scored with the end of its lease when it said so), which the heartbeat
//! renews too. A node that stops renewing is gone after one TTL: no
//! consensus of our own, the store's TTLs are the truth.

use super::located::{located, HOLDER_LUA};
use super::{ms, RedisStore};
use super::reg_key;
use crate::secret::Cookie;
use crate::server::nodes::{Leases, Located};
use crate::server::store::ops::Unavailable;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

/// Claim or renew a node's lease: KEYS the node's hash; ARGV the instance,
/// host, port, TTL (ms), peer listener (`HOST:PORT`, empty for none).
/// Answers 1, or 0 when another instance holds it.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HGET', KEYS[1], 'inst')
if cur and cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'inst', ARGV[1], 'host', ARGV[2], 'port', ARGV[3], 'peer', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
",
    )
});

/// Give a lease up: KEYS the node's hash; ARGV the instance.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'inst') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
",
    )
});

/// Say which UUIDs a node holds: ARGV the node id, now (ms), TTL (ms),
/// then `P:UUID` items. Each entry scores the node with the lease's end;
/// entries that ended are dropped.
static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local node, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV do
  local p, u = string.sub(ARGV[i], 1, 1), string.sub(ARGV[i], 3)
  local key = 'rdv:{' .. u .. '}:held:' .. p
  redis.call('ZADD', key, now + ttl, node)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('PEXPIRE', key, ttl)
end
return 1
",
    )
});

/// A lookup: the UUID's `I` cookie and where its sockets for protocol `P`
/// are parked. KEYS the held set, the registration's hash; ARGV now (ms),
/// this node's id, a `HOST:PORT` to leave out (empty for none). Answers {I, id, host, port}: the `I` cookie (empty for
/// none), and a live node other than this one (empty, empty, 0 for none).
static LOCATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HOLDER_LUA}{}",
        r"
local i = redis.call('HGET', KEYS[2], 'i') or ''
local h = holder(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return {i, h[1], h[2], h[3]}
"
    ))
});

/// The peer listeners of the live nodes other than this one that hold a
/// UUID's sockets for protocol `P`: KEYS the held set; ARGV now (ms), this
/// node's id. Answers a list of `HOST:PORT`.
static PEERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')) do
  if n ~= ARGV[2] then
    local peer = redis.call('HGET', 'rdv:node:' .. n, 'peer')
    if peer and peer ~= '' then table.insert(out, peer) end
  end
end
return out
",
    )
});

fn node_key(id: &str) -> String {
    format!("rdv:node:{id}")
}

impl Leases for RedisStore {
    /// Claim (or renew) the lease of node `id` for `instance`, naming
    /// `host:port` in triples; `false` when another instance holds it.
    fn claim_node(&self, id: &str, instance: &str, (host, port): (&str, u16), peer: Option<&str>, ttl: Duration) -> Result<bool, Unavailable> {
        let mut inv = CLAIM.prepare_invoke();
        inv.key(node_key(id)).arg(instance).arg(host).arg(port).arg(ms(ttl)).arg(peer.unwrap_or(""));
        let got: i64 = self.with(|con| inv.invoke(con))?;
        if got == 1 {
            // Renewals and token judgments answer where a UUID is held
            // from now on (leaving this node out).
            self.located.set_node(id);
        }
        Ok(got == 1)
    }

    /// Give the lease of node `id` up, if `instance` holds it.
    fn release_node(&self, id: &str, instance: &str) -> Result<(), Unavailable> {
        let mut inv = RELEASE.prepare_invoke();
        inv.key(node_key(id)).arg(instance);
        self.with(|con| inv.invoke::<i64>(con)).map(|_| ())
    }

    /// Say that node `id` holds `held` (`g` or `h`, and a UUID) for `ttl`.
    fn hold(&self, id: &str, held: &[(char, Uuid)], ttl: Duration) -> Result<(), Unavailable> {
        if held.is_empty() {
            return Ok(());
        }
        let mut inv = HOLD.prepare_invoke();
        inv.arg(id).arg(self.now_ms()).arg(ms(ttl));
        for (p, u) in held {
            inv.arg(format!("{p}:{u}"));
        }
        self.with(|con| inv.invoke::<i64>(con)).map(|_| ())
    }

    /// A live node other than `me` holding `uuid`'s sockets for protocol
    /// `p`: its id, host and port. For the generic protocol, what a
    /// renewal or token judgment answered within the last second, if one
    /// did, else one round trip.
    fn locate(&self, uuid: &Uuid, p: char, me: &str, avoid: Option<&str>) -> Result<Located, Unavailable> {
        if p == 'g' && avoid.is_none() {
            if let Some(known) = self.located.take(uuid) {
                return Ok(known);
            }
        }
        let mut inv = LOCATE.prepare_invoke();
        inv.key(format!("rdv:{{{uuid}}}:held:{p}"))
            .key(reg_key(uuid))
            .arg(self.now_ms())
            .arg(me)
            .arg(avoid.unwrap_or(""));
        let (i, id, host, port): (String, String, String, u16) = self.with(|con| inv.invoke(con))?;
        Ok(located(Cookie::parse(&i), id, host, port))
    }

    /// The peer listeners of live nodes other than `me` holding `uuid`'s
    /// sockets for protocol `p`.
    fn peers_holding(&self, uuid: &Uuid, p: char, me: &str) -> Result<Vec<String>, Unavailable> {
        let mut inv = PEERS.prepare_invoke();
        inv.key(format!("rdv:{{{uuid}}}:held:{p}")).arg(self.now_ms()).arg(me);
        self.with(|con| inv.invoke(con))
    }
}
