//! Where a UUID is held, as the store last said it to this node: a token
//! judgment and an `R` cookie renewal answer it in the same script, so the
//! registrar's answer that follows (which names the node holding the UUID)
//! costs no second round trip. Kept a second at most, and used once.

use crate::secret::Cookie;
use crate::server::nodes::Located;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The Lua function the scripts share: `holder(key, now, me, avoid)`, a
/// live node other than `me` in the held set `key` (scored with lease
/// ends) whose `HOST:PORT` is not `avoid`, as {id, host, port}, or
/// {'', '', 0}. The latest score first: a node that
/// died stops renewing its entry, which lives on until its lease ends, so
/// the node that announced last is the one most likely alive (an agent
/// that moved off a killed node is found at once, not a lease later).
pub const HOLDER_LUA: &str = r"
local function holder(key, now, me, avoid)
  for _, n in ipairs(redis.call('ZREVRANGEBYSCORE', key, '+inf', now)) do
    if n ~= me then
      local a = redis.call('HMGET', 'rdv:node:' .. n, 'host', 'port')
      if a[1] and a[2] and (a[1] .. ':' .. a[2]) ~= avoid then return {n, a[1], a[2]} end
    end
  end
  return {'', '', 0}
end
";

/// A script's answer of where a UUID is held, as a [`Located`].
pub fn located(initiator: Option<Cookie>, id: String, host: String, port: u16) -> Located {
    Located {
        initiator,
        holder: (!id.is_empty()).then_some((id, (host, port))),
    }
}

/// An answer older than this is not used: it is meant for the request
/// that asked, which answers within milliseconds.
const FRESH: Duration = Duration::from_secs(1);

/// Entries kept before the stale ones are dropped.
const PRUNE_AT: usize = 256;

/// This node's id (set once it joined) and the recent answers.
#[derive(Default)]
pub struct Memo {
    node: OnceLock<String>,
    recent: Mutex<HashMap<Uuid, (Located, Instant)>>,
}

impl Memo {
    /// The node id the scripts leave out of their answer; empty (no
    /// locating) before the server joined as a node.
    pub fn node(&self) -> &str {
        self.node.get().map_or("", String::as_str)
    }

    /// This server is node `id`.
    pub fn set_node(&self, id: &str) {
        let _ = self.node.set(id.to_string());
    }

    /// The store just said where `uuid` is held.
    pub fn note(&self, uuid: Uuid, located: Located) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= PRUNE_AT {
            recent.retain(|_, (_, at)| at.elapsed() < FRESH);
        }
        recent.insert(uuid, (located, Instant::now()));
    }

    /// What the store said of `uuid` within the last second, once.
    pub fn take(&self, uuid: &Uuid) -> Option<Located> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.remove(uuid).filter(|(_, at)| at.elapsed() < FRESH).map(|(l, _)| l)
    }
}
