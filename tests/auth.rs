//! Guessing limits across source addresses (127.0.0.x loopback sources):
//! ten failures lock one (UUID, address) pair only; the per-UUID cap per step
//! spares the address of the last good registration; a live R cookie
//! registers during a lock.

mod common;

use common::*;

#[test]
fn lock_is_per_address_and_the_uuid_cap_spares_the_last_good_address() {
    avoid_step_edge();
    let ts = TestServer::start(Opts::default());
    let reg = ts.registrar();
    let put = |src: [u8; 4], tok: &str| ts.put_token_from(src, tok).status;
    // A good registration from 127.0.0.1 makes it the last good address.
    assert_eq!(put([127, 0, 0, 1], &token_at(0)), 200);
    let cookie = {
        let r = request_from(
            [127, 0, 0, 1],
            reg,
            "PUT",
            &format!("/?uuid={}&response={}", ts.uuid, token_at(1)),
        );
        assert_eq!(r.status, 200);
        json(&r)["result"]["cookie"]
            .as_str()
            .expect("cookie")
            .to_string()
    };
    // Ten failures from .2 lock .2 only.
    for _ in 0..10 {
        assert_eq!(put([127, 0, 0, 2], wrong_token()), 401);
    }
    assert_eq!(put([127, 0, 0, 2], wrong_token()), 429, ".2 locked");
    assert_eq!(
        put([127, 0, 0, 3], wrong_token()),
        401,
        ".3 is not locked by .2's failures"
    );
    // Nine more from .3: 20 failures this step, the per-UUID cap.
    for _ in 0..9 {
        put([127, 0, 0, 3], wrong_token());
    }
    let r = request_from(
        [127, 0, 0, 4],
        reg,
        "PUT",
        &format!("/?uuid={}&response={}", ts.uuid, wrong_token()),
    );
    assert_eq!(r.status, 429, "a fresh address is refused past the cap");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry), "retry after the step: {retry}");
    // The last good address still gets through (the replay floor is step+1,
    // so it is refused as a replay, not as locked out: 401, not 429).
    assert_eq!(
        put([127, 0, 0, 1], wrong_token()),
        401,
        "last good address is not capped"
    );
    // A live R cookie registers during the lock, from anywhere.
    let r = request_from(
        [127, 0, 0, 2],
        reg,
        "PUT",
        &format!("/?uuid={}&cookie={cookie}", ts.uuid),
    );
    assert_eq!(r.status, 200, "cookie authentication is never locked");
}

#[test]
fn last_good_address_registers_after_the_cap() {
    avoid_step_edge();
    let ts = TestServer::start(Opts::default());
    let put = |src: [u8; 4], tok: &str| ts.put_token_from(src, tok).status;
    assert_eq!(put([127, 0, 0, 1], &token_at(-1)), 200);
    for src in [[127, 0, 0, 5], [127, 0, 0, 6]] {
        for _ in 0..10 {
            put(src, wrong_token());
        }
    }
    assert_eq!(
        put([127, 0, 0, 7], &token_at(0)),
        429,
        "capped for others, even with the right token"
    );
    assert_eq!(
        put([127, 0, 0, 1], &token_at(0)),
        200,
        "the last good address registers"
    );
}
