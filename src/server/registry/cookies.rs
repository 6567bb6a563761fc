//! The boundary through which the registry shares registrations with a
//! store (`serve --store`); the Redis store implements it.

use crate::secret::Cookie;
use crate::server::store::ops::Unavailable;
use std::time::Duration;
use uuid::Uuid;

/// Where registrations are shared (the Redis store implements it).
pub trait SharedCookies: Send + Sync {
    /// Record `responder`, a new `R` cookie of `uuid`, for `ttl`, making
    /// `initiator` the registration's `I` cookie if it has none; returns
    /// the registration's `I` cookie.
    fn register(
        &self,
        uuid: Uuid,
        responder: &Cookie,
        initiator: &Cookie,
        ttl: Duration,
    ) -> Result<Cookie, Unavailable>;

    /// If `responder` is a live `R` cookie, renew it (and its registration)
    /// for `ttl`; its UUID and the registration's `I` cookie.
    fn renew(&self, responder: &Cookie, ttl: Duration) -> Result<Option<(Uuid, Cookie)>, Unavailable>;

    /// The `I` cookie of a live registration of `uuid`.
    fn initiator(&self, uuid: &Uuid) -> Result<Option<Cookie>, Unavailable>;
}
