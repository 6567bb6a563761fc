//! The users table a server uses, and where it comes from: the users file
//! (read at start, again on SIGHUP), or with `--store` the store's table,
//! followed by a thread that installs every change within seconds (the
//! users file is then not read). Installing swaps the table whole, then
//! drops the registrations of users no longer in it.

use crate::error::Result;
use crate::files;
use crate::server::shared::Shared;
use crate::server::store::Store;
use crate::users::{self, Users};
use crossbeam_channel::{bounded, Sender};
use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::thread;

const T: &str = "rendezvous::server";

/// The table at start: the store's, or the users file's (created empty
/// when missing).
pub fn initial(path: &Path, store: &Store) -> Result<Users> {
    #[cfg(feature = "store-redis")]
    if let Store::Redis(r) = store {
        return r.users().map_err(|_| {
            crate::error::Error::Other(format!("store {}: cannot read the users table", r.describe()))
        });
    }
    let _ = store;
    if !path.exists() {
        users::update(path, |_| Ok(()))?;
        log::info!(target: T, "created empty users file {}", path.display());
    }
    warn_about_file(path);
    users::load(path)
}

fn warn_about_file(path: &Path) {
    for w in [files::mode_warning(path), users::link_warning(path)]
        .into_iter()
        .flatten()
    {
        log::warn!(target: T, "{w}");
    }
}

/// Swap `table` in, then drop the registrations (and the embedded store's
/// state) of users no longer in it. Returns how many registrations went.
/// Whoever reads a log line written after this (an operator, a test) may
/// rely on the new table being the one in use.
pub fn install(shared: &Shared, table: Users) -> usize {
    let table = Arc::new(table);
    *shared.users.write().unwrap_or_else(PoisonError::into_inner) = table.clone();
    let dropped = shared.registry.retain_users(|u| table.get(u).is_some());
    if let Some(security) = shared.store.embedded() {
        security.retain_users(|u| table.get(u).is_some());
    }
    dropped
}

fn installed(shared: &Shared, table: Users, what: &str) {
    let n = table.len();
    let dropped = install(shared, table);
    log::info!(target: T, "users {what} n={n}");
    if dropped > 0 {
        log::info!(target: T, "registrations of removed users dropped n={dropped}");
    }
}

/// SIGHUP: read the table again and install it. A users file with an error
/// (or that disappeared) is logged with its line and the old table kept.
pub fn reload(shared: &Shared) {
    #[cfg(feature = "store-redis")]
    if let Store::Redis(r) = &shared.store {
        match r.users() {
            Ok(table) => installed(shared, table, "reloaded"),
            Err(_) => {
                let e = format!("store {} unavailable", r.describe());
                log::warn!(target: T, "reload failed, old users table kept: {e}")
            }
        }
        return;
    }
    let path = &shared.cfg.paths.users;
    match users::load(path) {
        Ok(table) => {
            warn_about_file(path);
            installed(shared, table, "reloaded");
        }
        Err(e) => log::warn!(target: T, "reload failed, old users table kept: {e}"),
    }
}

/// A stop channel and the thread following the store's users table; `None`
/// for the embedded store.
pub type Watch = Option<(Sender<()>, thread::JoinHandle<()>)>;

/// With a shared store, start the thread that installs each change of its
/// users table.
pub fn start_watch(shared: &Arc<Shared>) -> Result<Watch> {
    #[cfg(feature = "store-redis")]
    if matches!(shared.store, Store::Redis(_)) {
        let (tx, rx) = bounded::<()>(1);
        let s = shared.clone();
        let t = crate::threads::start("users-watch", move || {
            if let Store::Redis(r) = &s.store {
                r.watch_users(&rx, |table| installed(&s, table, "changed in the store"));
            }
        })
        .map_err(|e| crate::error::Error::io("start users-watch thread", e))?;
        return Ok(Some((tx, t)));
    }
    let _ = (shared, bounded::<()>);
    Ok(None)
}
