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
        let Ok(answer) = shared.renew(cookie, ttl, good) else {
            return;
        };
        let now = self.clock.now();
        let mut inner = self.lock();
        let super::Inner { regs, cookies, .. } = &mut *inner;
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

    /// The store's `I` cookie for a UUID not live here.
    pub(super) fn shared_initiator(&self, uuid: &Uuid) -> Option<Cookie> {
        self.shared.as_ref()?.initiator(uuid).ok().flatten()
    }
}
