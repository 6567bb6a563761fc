//! The reaper's sweep of the registry: expired cookies, dead parked sockets
//! and lapsed registrations, with the peeks outside the registry lock.

use super::{Inner, Pool, Registry, Swept};
use crate::server::parked::{alive, Parked};
use crossbeam_channel::TrySendError;
use std::time::Instant;
use uuid::Uuid;

impl Registry {
    /// Drop expired `R` cookies, closed parked sockets and lapsed
    /// registrations. The pools' sockets are taken out under the lock,
    /// peeked at outside it (a pairing or a registration elsewhere never
    /// waits behind thousands of peeks), and the live ones put back, oldest
    /// first, under the lock again.
    pub fn sweep(&self) -> Swept {
        let now = self.clock.now();
        let mut swept = Swept::default();
        let mut out = self.take_out_pools(now, &mut swept);
        for (_, _, taken, list) in &mut out {
            list.retain(|p| alive(p.stream.tcp()));
            swept.dead += *taken - list.len();
        }
        let mut inner = self.lock();
        let closed = inner.closed;
        let Inner {
            regs,
            cookies,
            renewed,
            ..
        } = &mut *inner;
        for (uuid, i, taken, list) in out {
            let reg = regs.get_mut(&uuid).filter(|_| !closed);
            let Some(reg) = reg else {
                // Removed (a reload) or shut down meanwhile.
                for p in list {
                    let _ = p.stream.tcp().shutdown(std::net::Shutdown::Both);
                }
                continue;
            };
            reg.out -= taken;
            put_back(&reg.pools[i], list);
        }
        let quarter = self.cfg.cookie_ttl / 4;
        prune_renewed(renewed, now, quarter);
        regs.retain(|_, reg| {
            let live = reg.live(now);
            if !live {
                cookies.remove(&reg.initiator);
                swept.lapsed += 1;
            }
            live
        });
        swept
    }

    /// The first half of [`Registry::sweep`], under the lock: expire
    /// cookies and take every pool's sockets out (counted in the
    /// registration as out, so it stays live meanwhile).
    fn take_out_pools(
        &self,
        now: Instant,
        swept: &mut Swept,
    ) -> Vec<(Uuid, usize, usize, Vec<Parked>)> {
        let mut inner = self.lock();
        let Inner { regs, cookies, .. } = &mut *inner;
        let mut out = Vec::new();
        for (uuid, reg) in regs.iter_mut() {
            reg.responders.retain(|c, exp| {
                let keep = *exp > now;
                if !keep {
                    cookies.remove(c);
                    swept.cookies += 1;
                }
                keep
            });
            for (i, pool) in reg.pools.iter().enumerate() {
                let waiting: Vec<Parked> = pool.rx.try_iter().collect();
                if !waiting.is_empty() {
                    reg.out += waiting.len();
                    out.push((*uuid, i, waiting.len(), waiting));
                }
            }
        }
        out
    }
}

/// Put swept sockets back into `pool` ahead of any that parked meanwhile
/// (oldest first), closing the oldest when more than the pool holds.
fn put_back(pool: &Pool, list: Vec<Parked>) {
    let newer: Vec<Parked> = pool.rx.try_iter().collect();
    for p in list.into_iter().chain(newer) {
        if let Err(TrySendError::Full(p)) = pool.tx.try_send(p) {
            if let Ok(old) = pool.rx.try_recv() {
                let _ = old.stream.tcp().shutdown(std::net::Shutdown::Both);
            }
            let _ = pool.tx.try_send(p);
        }
    }
}

/// Forget store renewals older than a quarter lifetime (they no longer
/// spare a round trip).
fn prune_renewed(renewed: &mut std::collections::HashMap<crate::secret::Cookie, Instant>, now: Instant, quarter: std::time::Duration) {
    renewed.retain(|_, at| now.saturating_duration_since(*at) < quarter);
}
