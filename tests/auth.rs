//! Guessing limits through the registrar, from 127.0.0.1 (the tests use no
//! other address): ten failures lock the (UUID, address) pair with 429 and
//! `Retry-After`, even for the right token; a live R cookie still registers;
//! the lock shows in the metrics. That a lock spares other addresses, and
//! that the per-UUID cap spares the last good address, are unit tests of
//! `authn::Limiter` with synthetic addresses.

mod common;

use common::*;
use std::sync::atomic::Ordering;

#[test]
fn ten_failures_lock_the_address_but_not_cookie_authentication() {
    avoid_step_edge();
    let ts = TestServer::start(Opts::default());
    let r = ts.put_token(&token_at(0));
    assert_eq!(r.status, 200);
    let cookie = json(&r)["result"]["cookie"]
        .as_str()
        .expect("cookie")
        .to_string();
    for i in 0..10 {
        assert_eq!(ts.put_token(wrong_token()).status, 401, "failure {i}");
    }
    let r = ts.put_token(wrong_token());
    assert_eq!(r.status, 429, "locked after ten failures");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    let base = rendezvous::limits::LOCK_BASE.as_secs();
    assert!((1..=base).contains(&retry), "retry after the lock: {retry}");
    assert_eq!(
        ts.put_token(&token_at(1)).status,
        429,
        "the right token is refused while locked"
    );
    // A live R cookie registers during the lock.
    let r = request(
        ts.registrar(),
        "PUT",
        &format!("/?uuid={}&cookie={cookie}", ts.uuid),
        &[],
    );
    assert_eq!(r.status, 200, "cookie authentication is never locked");
    let m = &ts.server().shared().metrics;
    assert_eq!(m.lockouts_total.load(Ordering::Relaxed), 1);
    assert_eq!(m.auth_locked_out.load(Ordering::Relaxed), 2);
    assert_eq!(m.auth_bad_token.load(Ordering::Relaxed), 10);
    let r = request(
        ts.registrar(),
        "GET",
        "/.well-known/rendezvous/metrics",
        &[],
    );
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.lines().any(|l| l == "rendezvous_lockouts_total 1"),
        "{text}"
    );
}
