//! Registrations in the store: `rdv:{UUID}:reg` (a hash: the `I`
//! cookie) and `rdv:rc:COOKIE` (an `R` cookie's UUID), both `--cookie-ttl`
//! after their last use.

use super::{ms, RedisStore};
use crate::secret::Cookie;
use crate::server::registry::SharedCookies;
use crate::server::store::ops::Unavailable;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

/// A new `R` cookie: KEYS the registration's hash, the cookie's key;
/// ARGV the UUID, the `I` cookie to use if the registration has none, the
/// lifetime (ms). Answers the registration's `I` cookie.
static REGISTER: LazyLock<Script> = LazyLock::new(|| Script::new(r"
local i = redis.call('HGET', KEYS[1], 'i')
if not i then
  i = ARGV[2]
  redis.call('HSET', KEYS[1], 'i', i)
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return i
"));

/// A use of an `R` cookie: KEYS the cookie's key; ARGV the lifetime (ms).
/// Renews the cookie and its registration; answers {UUID, I cookie}, or
/// nil when either lapsed.
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(r"
local u = redis.call('GET', KEYS[1])
if not u then return nil end
local reg = 'rdv:{' .. u .. '}:reg'
local i = redis.call('HGET', reg, 'i')
if not i then return nil end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('PTTL', reg) < tonumber(ARGV[1]) then redis.call('PEXPIRE', reg, ARGV[1]) end
return {u, i}
"));

impl SharedCookies for RedisStore {
    fn register(
        &self,
        uuid: Uuid,
        responder: &Cookie,
        initiator: &Cookie,
        ttl: Duration,
    ) -> std::result::Result<Cookie, Unavailable> {
        let mut inv = REGISTER.prepare_invoke();
        inv.key(reg_key(&uuid))
            .key(cookie_key(responder))
            .arg(uuid.hyphenated().to_string())
            .arg(initiator.expose())
            .arg(ms(ttl));
        let i: String = self.with(|con| inv.invoke(con))?;
        Cookie::parse(&i).ok_or(Unavailable)
    }

    fn renew(
        &self,
        responder: &Cookie,
        ttl: Duration,
    ) -> std::result::Result<Option<(Uuid, Cookie)>, Unavailable> {
        let mut inv = RENEW.prepare_invoke();
        inv.key(cookie_key(responder)).arg(ms(ttl));
        let got: Option<(String, String)> = self.with(|con| inv.invoke(con))?;
        Ok(got.and_then(|(u, i)| Some((Uuid::try_parse(&u).ok()?, Cookie::parse(&i)?))))
    }

    fn initiator(&self, uuid: &Uuid) -> std::result::Result<Option<Cookie>, Unavailable> {
        let i: Option<String> =
            self.with(|con| redis::cmd("HGET").arg(reg_key(uuid)).arg("i").query(con))?;
        Ok(i.as_deref().and_then(Cookie::parse))
    }
}

fn reg_key(uuid: &Uuid) -> String {
    format!("rdv:{{{uuid}}}:reg")
}

/// An `R` cookie's key. Not tagged by UUID: a cookie alone must find its
/// UUID (Redis Cluster, which would need that, is not supported).
fn cookie_key(c: &Cookie) -> String {
    format!("rdv:rc:{}", c.expose())
}
