//! Registering a hidden server: the offer a token carries to the store,
//! and the registration made once the store accepted the token.

use super::{drop_registration, Inner, Registration, Registry};
use crate::secret::{Cookie, Role};
use crate::server::store::ops::Offer;
use uuid::Uuid;

impl Registry {
    /// What a token for `uuid` would register: a new `R` cookie, and the
    /// `I` cookie of the live registration here, else a new one.
    pub fn offer(&self, uuid: &Uuid) -> Offer {
        let now = self.clock.now();
        let live = self.lock().regs.get(uuid).filter(|r| r.live(now)).map(|r| r.initiator);
        Offer {
            responder: Cookie::generate(Role::Responder),
            initiator: live.unwrap_or_else(|| Cookie::generate(Role::Initiator)),
            ttl: self.cfg.cookie_ttl,
        }
    }

    /// Issue a new `R` cookie for `uuid` once `authorize` (the token check)
    /// passes (tests; the server registers what the store accepted).
    #[cfg(any(test, feature = "internals"))]
    pub fn register_with<E>(
        &self,
        uuid: Uuid,
        authorize: impl FnOnce() -> Result<(), E>,
    ) -> Result<Cookie, E> {
        let responder = Cookie::generate(Role::Responder);
        self.register_offered(uuid, responder, None, authorize)
    }

    /// Register `responder`, a new `R` cookie of `uuid`, once `authorize`
    /// passes. `initiator` is a shared store's `I` cookie for the UUID,
    /// which the registration takes; without one it keeps its own, or a
    /// new registration gets a new one. `authorize` runs under the registry
    /// lock, so a reload that swaps the users table and drops removed
    /// users' registrations (under the same lock) cannot interleave with it.
    pub fn register_offered<E>(
        &self,
        uuid: Uuid,
        responder: Cookie,
        initiator: Option<Cookie>,
        authorize: impl FnOnce() -> Result<(), E>,
    ) -> Result<Cookie, E> {
        let mut inner = self.lock();
        authorize()?;
        let now = self.clock.now();
        let stale = inner.regs.get(&uuid).is_some_and(|r| !r.live(now));
        if stale {
            if let Some(old) = inner.regs.remove(&uuid) {
                drop_registration(&mut inner.cookies, old);
            }
        }
        let expiry = now + self.cfg.cookie_ttl;
        let pool_max = self.cfg.pool_max;
        let Inner { regs, cookies, .. } = &mut *inner;
        let reg = regs.entry(uuid).or_insert_with(|| {
            let initiator = initiator.unwrap_or_else(|| Cookie::generate(Role::Initiator));
            cookies.insert(initiator, uuid);
            Registration::new(initiator, pool_max)
        });
        if let Some(i) = initiator.filter(|i| *i != reg.initiator) {
            cookies.remove(&reg.initiator);
            reg.initiator = i;
            cookies.insert(i, uuid);
        }
        reg.responders.insert(responder, expiry);
        cookies.insert(responder, uuid);
        Ok(responder)
    }
}
