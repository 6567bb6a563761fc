//! The boundary through which the registry reads registrations from a
//! store (`serve --store`); the Redis store implements it. A registration
//! is written to the store by the token judgment itself
//! (`Store::token_and_register`), in the same round trip.

use crate::secret::Cookie;
use crate::server::store::ops::Unavailable;
use std::net::IpAddr;
use std::time::Duration;
use uuid::Uuid;

/// Where registrations are shared (the Redis store implements it).
pub trait SharedCookies: Send + Sync {
    /// If `responder` is a live `R` cookie, renew it (and its registration)
    /// for `ttl`; its UUID and the registration's `I` cookie. With `good`
    /// (a UUID and an address) and the cookie that UUID's, the address is
    /// the UUID's last good one, in the same step.
    fn renew(
        &self,
        responder: &Cookie,
        ttl: Duration,
        good: Option<(Uuid, IpAddr)>,
    ) -> Result<Option<(Uuid, Cookie)>, Unavailable>;

    /// The `I` cookie of a live registration of `uuid`.
    fn initiator(&self, uuid: &Uuid) -> Result<Option<Cookie>, Unavailable>;
}
