//! Token authentication of a hidden server (PUT or CONNECT with
//! `response=`): the token checked against the users table in use, judged
//! by the store (guessing limits and replay floor, one atomic step), then a
//! new `R` cookie from the registry; every outcome counted and logged
//! without the credential. No store, no token: 503.

use crate::error::AuthFailure;
use crate::secret::{Cookie, Token};
use crate::server::metrics::Metrics;
use crate::server::registry::Registry;
use crate::server::store::ops::{TokenAttempt, Verdict};
use crate::server::store::{Store, Unavailable};
use crate::limits::STORE_RETRY_AFTER;
use crate::users::{User, Users};
use crate::totp;
use crate::wire::Refusal;
use crate::wire::Response;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use uuid::Uuid;

const T: &str = "rendezvous::registrar";

/// What authentication may touch: the users table in use, the security
/// state, the registry (a new `R` cookie, under its lock) and the counters.
/// `Shared::authn` lends one.
pub struct Authn<'a> {
    /// The users table, swapped whole by a reload.
    pub users: &'a RwLock<Arc<Users>>,
    /// Replay floors, guessing limits and last good addresses.
    pub store: &'a Store,
    /// Registrations and pools.
    pub registry: &'a Registry,
    /// Event counters.
    pub metrics: &'a Metrics,
}

impl Authn<'_> {
    /// The users table in use now.
    pub fn users(&self) -> Arc<Users> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A cookie credential the caller checked (`valid`): on success the
    /// address is remembered as a good one; else the failure is counted and
    /// logged under `target`, and answered 401.
    pub fn cookie(
        &self,
        valid: Option<Cookie>,
        uuid: Uuid,
        peer: SocketAddr,
        id: u64,
        target: &str,
    ) -> Result<Cookie, Response> {
        match valid {
            Some(c) => {
                // A shared registry recorded the address when it renewed
                // the cookie (one round trip). Recording may fail with the
                // store; the cookie is still good (the registry holds it).
                if !self.registry.is_shared() {
                    let _ = self.store.cookie_success(uuid, peer.ip());
                }
                Ok(c)
            }
            None => {
                Metrics::bump(&self.metrics.auth_bad_cookie);
                log::info!(target: target, "conn={id} auth failed uuid={uuid} peer={peer} reason=bad-cookie");
                Err(Refusal::UnknownCookie.response())
            }
        }
    }

    /// TOTP authentication with the guessing limits. On success the UUID
    /// gets a new `R` cookie.
    pub fn token(&self, uuid: Uuid, token: &Token, ip: IpAddr, id: u64) -> Result<Cookie, Response> {
        authenticate(self, uuid, token, ip, id)
    }
}

fn authenticate(
    shared: &Authn,
    uuid: Uuid,
    token: &Token,
    ip: IpAddr,
    id: u64,
) -> Result<Cookie, Response> {
    let users = shared.users();
    let Some(user) = users.get(&uuid) else {
        Metrics::bump(&shared.metrics.auth_unknown_uuid);
        log::info!(target: T, "conn={id} auth failed uuid={uuid} peer={ip} reason=unknown-uuid");
        return Err(Refusal::AuthenticationFailed.response());
    };
    let now = totp::now();
    // The HMACs here; the store sees which steps matched, and judges them
    // against the floor and the limits in one atomic step.
    let attempt = TokenAttempt {
        uuid,
        ip,
        step: user.params.step_of(now),
        to_next_step: Duration::from_secs(user.params.secs_to_next_step(now)),
        matched: totp::matching_steps(&user.secret, user.params, token, now),
    };
    let offer = shared.registry.offer(&uuid);
    let (verdict, initiator) = match shared.store.token_and_register(&attempt, &offer) {
        Ok(v) => v,
        Err(Unavailable) => {
            Metrics::bump(&shared.metrics.auth_store_down);
            log::info!(target: T, "conn={id} auth refused uuid={uuid} peer={ip} reason=store-unavailable");
            return Err(store_unavailable());
        }
    };
    let failed = match verdict {
        Verdict::Accepted(_) => return register(shared, uuid, user, offer.responder, initiator, ip, id),
        Verdict::Throttled(refusal) => {
            Metrics::bump(&shared.metrics.auth_locked_out);
            log::info!(target: T, "conn={id} auth refused uuid={uuid} peer={ip} reason={}", refusal.reason());
            return Err(Refusal::TooManyFailures
                .response()
                .with_header("Retry-After", refusal.retry_after().to_string()));
        }
        Verdict::Failed(f) => f,
    };
    let reason = match failed.why {
        AuthFailure::Replay => {
            Metrics::bump(&shared.metrics.auth_replay);
            "replay"
        }
        _ => {
            Metrics::bump(&shared.metrics.auth_bad_token);
            "bad-token"
        }
    };
    log::info!(target: T, "conn={id} Failed totp for uuid {uuid} from {ip} reason={reason}");
    if let Some(period) = failed.locked {
        Metrics::bump(&shared.metrics.lockouts_total);
        log::warn!(target: T, "auth lockout engaged uuid={uuid} peer={ip} secs={}", period.as_secs());
    }
    Err(Refusal::AuthenticationFailed.response())
}

/// Register the `R` cookie of a token the store accepted (with a shared
/// store's `I` cookie). The user is looked up again under the registry
/// lock: a reload swaps the table and then (under the same lock) drops
/// removed users' registrations, so a user removed or re-keyed since the
/// token was checked never registers on the old entry.
fn register(
    shared: &Authn,
    uuid: Uuid,
    checked: &User,
    responder: Cookie,
    initiator: Option<Cookie>,
    ip: IpAddr,
    id: u64,
) -> Result<Cookie, Response> {
    let result = shared.registry.register_offered(uuid, responder, initiator, || {
        let users = shared.users();
        match users.get(&uuid) {
            Some(now) if now.secret == checked.secret && now.params == checked.params => Ok(()),
            _ => Err(()),
        }
    });
    match result {
        Ok(cookie) => {
            Metrics::bump(&shared.metrics.registrations_total);
            log::info!(target: T, "conn={id} registration ok uuid={uuid} peer={ip}");
            Ok(cookie)
        }
        Err(()) => {
            Metrics::bump(&shared.metrics.auth_unknown_uuid);
            log::info!(target: T, "conn={id} auth failed uuid={uuid} peer={ip} reason=unknown-uuid");
            Err(Refusal::AuthenticationFailed.response())
        }
    }
}

/// 503: no token without the store.
fn store_unavailable() -> Response {
    Refusal::StoreUnavailable
        .response()
        .with_header("Retry-After", STORE_RETRY_AFTER.to_string())
}
