//! Registrations in the store: `rdv:{UUID}:reg` (a hash: the `I`
//! cookie) and `rdv:rc:COOKIE` (an `R` cookie's UUID and the `I` cookie it
//! was issued with), both `--cookie-ttl`
//! after their last use. A renewal also records the last good
//! address, so a refresh by cookie is one round trip.

use super::located::HOLDER_LUA;
use super::{cookie_key, ms, reg_key, RedisStore};
use crate::limits::STORE_STATE_TTL;
use crate::secret::Cookie;
use crate::server::registry::SharedCookies;
use crate::server::store::ops::Unavailable;
use redis::Script;
use std::sync::LazyLock;
use std::net::IpAddr;
use std::time::Duration;
use uuid::Uuid;

/// A use of an `R` cookie: KEYS the cookie's key (whose value is the UUID
/// and the `I` cookie of the registration it was issued in: a cookie of a
/// registration that ended, by its lifetime or a removal of the user,
/// stays dead even when the UUID registers again); ARGV the lifetime (ms),
/// a UUID and an address (empty for none), the state TTL (ms), now (ms),
/// this node's id (empty: not a node). Renews the cookie and its
/// registration and, when the cookie is that UUID's, makes the address its
/// last good one; answers {UUID, I cookie, holder id, host, port} (a live
/// node other than this one holding the UUID's generic sockets, empty for
/// none, or when not a node), or nil when either lapsed.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HOLDER_LUA}{}",
        r"
local v = redis.call('GET', KEYS[1])
if not v then return nil end
local u, issued = string.match(v, '^(%S+) (%S+)$')
if not u then return nil end
local reg = 'rdv:{' .. u .. '}:reg'
local i = redis.call('HGET', reg, 'i')
if i ~= issued then return nil end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('PTTL', reg) < tonumber(ARGV[1]) then redis.call('PEXPIRE', reg, ARGV[1]) end
if ARGV[2] == u then
  local sec = 'rdv:{' .. u .. '}:sec'
  redis.call('HSET', sec, 'good', ARGV[3])
  redis.call('PEXPIRE', sec, ARGV[4])
end
local h = {'', '', 0}
if ARGV[6] ~= '' then h = holder('rdv:{' .. u .. '}:held:g', ARGV[5], ARGV[6], '') end
return {u, i, h[1], h[2], h[3]}
"
    ))
});

impl SharedCookies for RedisStore {
    fn renew(
        &self,
        responder: &Cookie,
        ttl: Duration,
        good: Option<(Uuid, IpAddr)>,
    ) -> std::result::Result<Option<(Uuid, Cookie)>, Unavailable> {
        let (u, ip) = good.map_or((String::new(), String::new()), |(u, ip)| {
            (u.hyphenated().to_string(), ip.to_string())
        });
        let mut inv = RENEW.prepare_invoke();
        inv.key(cookie_key(responder))
            .arg(ms(ttl))
            .arg(u)
            .arg(ip)
            .arg(ms(STORE_STATE_TTL))
            .arg(self.now_ms())
            .arg(self.located.node());
        type Answer = (String, String, String, String, u16);
        let got: Option<Answer> = self.with(|con| inv.invoke(con))?;
        let Some((u, i, id, host, port)) = got else {
            return Ok(None);
        };
        let (Ok(uuid), Some(i)) = (Uuid::try_parse(&u), Cookie::parse(&i)) else {
            return Ok(None);
        };
        if !self.located.node().is_empty() {
            self.located.note(uuid, super::located::located(Some(i), id, host, port));
        }
        Ok(Some((uuid, i)))
    }

    fn initiator(&self, uuid: &Uuid) -> std::result::Result<Option<Cookie>, Unavailable> {
        let i: Option<String> =
            self.with(|con| redis::cmd("HGET").arg(reg_key(uuid)).arg("i").query(con))?;
        Ok(i.as_deref().and_then(Cookie::parse))
    }
}
