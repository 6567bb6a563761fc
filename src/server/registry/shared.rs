//! Registrations shared between servers through a store (`serve --store`):
//! the store holds each `R` cookie (with its lifetime) and each UUID's `I`
//! cookie; the registry keeps what it learned as a cache. So a hidden
//! server may register at one server and park at another, and sockets
//! parked here keep pairing without a round trip, also while the store is
//! down. The store is asked outside the registry lock, always.

use super::{Registration, Registry};
use crate::secret::{Cookie, Role};
use std::net::IpAddr;
use uuid::Uuid;

impl Registry {
    /// Before a use of an `R` cookie: renew it in the store (recording
    /// `good`, a UUID's last good address, if the cookie is that UUID's),
    /// and learn it here when another server issued it; forget it here when
    /// the store says it lapsed. A store that does not answer leaves what
    /// this server knows.
    pub(super) fn learn(&self, cookie: &Cookie, good: Option<(Uuid, IpAddr)>) {
        let Some(shared) = &self.shared else {
            return;
        };
        if cookie.role() != Role::Responder {
            return;
        }
        let ttl = self.cfg.cookie_ttl;
        if good.is_none() && self.renewed_lately(cookie) {
            return;
        }
        let Ok(answer) = shared.renew(cookie, ttl, good) else {
            return;
        };
        let now = self.clock.now();
        let mut inner = self.lock();
        let super::Inner { regs, cookies, renewed, .. } = &mut *inner;
        if answer.is_some() {
            renewed.insert(*cookie, now);
        } else {
            renewed.remove(cookie);
        }
        match answer {
            Some((uuid, initiator)) => {
                let reg = regs.entry(uuid).or_insert_with(|| {
                    cookies.insert(initiator, uuid);
                    Registration::new(initiator, self.cfg.pool_max)
                });
                if reg.initiator != initiator {
                    cookies.remove(&reg.initiator);
                    reg.initiator = initiator;
                    cookies.insert(initiator, uuid);
                }
                reg.responders.insert(*cookie, now + ttl);
                cookies.insert(*cookie, uuid);
            }
            None => {
                if let Some(uuid) = cookies.remove(cookie) {
                    if let Some(reg) = regs.get_mut(&uuid) {
                        reg.responders.remove(cookie);
                    }
                }
            }
        }
    }

    /// A park need not renew a cookie this server renewed in the store
    /// within the last quarter of its lifetime (and knows): so a hidden
    /// server parking again and again costs one round trip per quarter
    /// lifetime, not one per park, and a cookie the store forgot is
    /// noticed within a quarter lifetime.
    fn renewed_lately(&self, cookie: &Cookie) -> bool {
        let now = self.clock.now();
        let inner = self.lock();
        inner.cookies.contains_key(cookie)
            && inner
                .renewed
                .get(cookie)
                .is_some_and(|at| now.saturating_duration_since(*at) < self.cfg.cookie_ttl / 4)
    }

    /// The store's `I` cookie for a UUID not live here.
    pub(super) fn shared_initiator(&self, uuid: &Uuid) -> Option<Cookie> {
        self.shared.as_ref()?.initiator(uuid).ok().flatten()
    }
}
