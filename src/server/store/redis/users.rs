//! The users table in the store: the hash `rdv:users`, each user a line
//! of the users file keyed by its UUID, and the channel that announces a
//! change.

use super::{RedisStore, T};
use crate::limits::USERS_RECONCILE;
use crate::server::store::ops::Unavailable;
use crate::users::{User, Users};
use crossbeam_channel::Receiver;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The users table: UUID → users-file line.
const USERS: &str = "rdv:users";
/// Where a change of the users table is announced (the message: a UUID).
const USERS_CHANGED: &str = "rdv:users:changed";

impl RedisStore {
    /// The users table. An entry that does not parse is left out and
    /// warned about by its UUID (never its text, which holds the secret).
    pub fn users(&self) -> std::result::Result<Users, Unavailable> {
        let entries: Vec<(String, String)> =
            self.with(|con| redis::cmd("HGETALL").arg(USERS).query(con))?;
        Ok(table(entries))
    }

    /// Add `user`, announcing it; `false` when its UUID is taken.
    pub fn add_user(&self, user: &User) -> std::result::Result<bool, Unavailable> {
        let uuid = user.uuid.hyphenated().to_string();
        let (added, _): (i64, i64) = self.with(|con| {
            redis::pipe()
                .atomic()
                .cmd("HSETNX")
                .arg(USERS)
                .arg(&uuid)
                .arg(user.line())
                .cmd("PUBLISH")
                .arg(USERS_CHANGED)
                .arg(&uuid)
                .query(con)
        })?;
        Ok(added == 1)
    }

    /// Remove the user `uuid`, ending its registration (its cookies die
    /// with it), announcing it; `false` when there was none.
    pub fn remove_user(&self, uuid: &Uuid) -> std::result::Result<bool, Unavailable> {
        let reg = super::reg_key(uuid);
        let uuid = uuid.hyphenated().to_string();
        let (removed, _, _): (i64, i64, i64) = self.with(|con| {
            redis::pipe()
                .atomic()
                .cmd("HDEL")
                .arg(USERS)
                .arg(&uuid)
                .cmd("DEL")
                .arg(reg)
                .cmd("PUBLISH")
                .arg(USERS_CHANGED)
                .arg(&uuid)
                .query(con)
        })?;
        Ok(removed == 1)
    }

    /// Follow the users table until `stop` receives or disconnects: `changed`
    /// gets each new table, read at once when a change is announced and
    /// every [`USERS_RECONCILE`] anyway. Returns within about a second of
    /// `stop`; a lost connection is made again.
    pub fn watch_users(&self, stop: &Receiver<()>, mut changed: impl FnMut(Users)) {
        let stopped = || !matches!(stop.try_recv(), Err(crossbeam_channel::TryRecvError::Empty));
        let mut last = self.users().map(|t| t.render()).ok();
        let mut next_reconcile = Instant::now() + USERS_RECONCILE;
        while !stopped() {
            let Ok(mut con) = self.open() else {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            };
            let mut ps = con.as_pubsub();
            if ps.subscribe(USERS_CHANGED).is_err() || ps.set_read_timeout(Some(Duration::from_secs(1))).is_err() {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            loop {
                if stopped() {
                    return;
                }
                if self.follow_primary() {
                    break; // subscribe at the new primary
                }
                let notice = match ps.get_message() {
                    Ok(_) => true,
                    Err(e) if e.is_timeout() => false,
                    Err(_) => break,
                };
                if !notice && Instant::now() < next_reconcile {
                    continue;
                }
                next_reconcile = Instant::now() + USERS_RECONCILE;
                if let Ok(t) = self.users() {
                    let text = t.render();
                    if last.as_deref() != Some(text.as_str()) {
                        last = Some(text);
                        changed(t);
                    }
                }
            }
        }
    }
}

/// The users table from the store's entries, ordered by UUID.
fn table(mut entries: Vec<(String, String)>) -> Users {
    entries.sort();
    let mut users = Users::new();
    for (uuid, line) in entries {
        match User::parse(&line) {
            Ok(u) if u.uuid.hyphenated().to_string() == uuid => {
                let _ = users.add(u);
            }
            _ => {
                log::warn!(target: T, "store entry {USERS} {uuid} is not a users-file line for that UUID; left out")
            }
        }
    }
    users
}
