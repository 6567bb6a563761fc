//! The server's state behind one boundary ([`Store`]), with one operation
//! per protocol step, each at most one round trip: judge a token
//! ([`Store::token`]), record a cookie success ([`Store::cookie_success`]).
//! Sockets never go in: parked and relayed connections are descriptors of
//! one process and stay in the registry.
//!
//! Two stores: the embedded one (the default: in memory, saved to
//! `STATE/state`, see `security`), and Redis or Valkey (`serve --store`, see
//! `redis`), which several servers can share. The operations' values are in
//! `ops`; tests/store.rs holds both stores to the same cases.
//!
//! In the store: replay floors, failure counts and locks, last good
//! addresses, the users table (`server::user_table` follows it), and the
//! registrations' cookies (the registry asks through
//! `registry::SharedCookies` and caches what it learns).

mod args;
pub mod ops;
#[cfg(feature = "store-redis")]
pub mod redis;

use crate::server::security::SecurityState;
pub use ops::Unavailable;
pub use args::StoreArgs;
use crate::secret::Cookie;
use ops::{Offer, TokenAttempt, Verdict};
use std::net::IpAddr;
use uuid::Uuid;

/// Where the state lives.
pub enum Store {
    /// In this process, saved to the state folder.
    Embedded(Box<SecurityState>),
    /// In Redis or Valkey, shared by every server that names it.
    #[cfg(feature = "store-redis")]
    Redis(std::sync::Arc<redis::RedisStore>),
}

impl Store {
    /// Judge a token attempt: throttles, replay floor and failure count in
    /// one atomic step.
    pub fn token(&self, a: &TokenAttempt) -> Result<Verdict, Unavailable> {
        match self {
            Store::Embedded(s) => Ok(s.token(a)),
            #[cfg(feature = "store-redis")]
            Store::Redis(r) => r.token(a),
        }
    }

    /// Judge a token attempt and, if it is accepted, record the
    /// registration `offer` in the same step. A shared store answers the
    /// registration's `I` cookie with [`Verdict::Accepted`] (another server
    /// may have made the registration first); the embedded one answers
    /// `None` (the registry is the truth).
    #[cfg_attr(not(feature = "store-redis"), allow(unused_variables))]
    pub fn token_and_register(
        &self,
        a: &TokenAttempt,
        offer: &Offer,
    ) -> Result<(Verdict, Option<Cookie>), Unavailable> {
        match self {
            Store::Embedded(s) => Ok((s.token(a), None)),
            #[cfg(feature = "store-redis")]
            Store::Redis(r) => r.token_and_register(a, offer),
        }
    }

    /// A success by cookie: `ip` becomes the UUID's last good address.
    pub fn cookie_success(&self, uuid: Uuid, ip: IpAddr) -> Result<(), Unavailable> {
        match self {
            Store::Embedded(s) => {
                s.cookie_success(uuid, ip);
                Ok(())
            }
            #[cfg(feature = "store-redis")]
            Store::Redis(r) => r.cookie_success(uuid, ip),
        }
    }

    /// The embedded store, which the server saves, sweeps and prunes on
    /// reload; `None` for a shared store (its keys expire by themselves).
    pub fn embedded(&self) -> Option<&SecurityState> {
        match self {
            Store::Embedded(s) => Some(s),
            #[cfg(feature = "store-redis")]
            Store::Redis(_) => None,
        }
    }

    /// Whether the store answered its last operation (the embedded one
    /// always does).
    pub fn reachable(&self) -> bool {
        match self {
            Store::Embedded(_) => true,
            #[cfg(feature = "store-redis")]
            Store::Redis(r) => r.reachable(),
        }
    }

    /// The store's name for the log: `embedded`, or the URL without
    /// credentials.
    pub fn describe(&self) -> String {
        match self {
            Store::Embedded(_) => "embedded".into(),
            #[cfg(feature = "store-redis")]
            Store::Redis(r) => r.describe(),
        }
    }
}
