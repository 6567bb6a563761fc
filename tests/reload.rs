//! SIGHUP under load swaps the users table whole: while the file is
//! rewritten and reloaded over and over, a user present in every version is
//! never unknown to a request, not even for an instant.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn reload_under_load_never_shows_a_half_loaded_table() {
    let ts = TestServer::start(Opts::default());
    let users = ts.dir.join("users");
    let keep = ts.uuid;
    let stop = Arc::new(AtomicBool::new(false));
    let reg = ts.registrar();
    // Load: wrong tokens for the user who is in every version of the file.
    // The table is consulted first, so each fails as a bad token (401) or,
    // once the address is locked, as locked out (429) — never as an unknown UUID.
    let load: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut sent = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // From 127.0.0.1 only: the address is locked after ten
                    // failures, but the table is consulted before the lock
                    // (authenticate), so every request still looks the user up.
                    let r = request(reg, "PUT", &format!("/?uuid={keep}&response=00000x"), &[]);
                    assert!(r.status == 401 || r.status == 429, "{}", r.status);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(3);
    let mut reloads = 0;
    while Instant::now() < end {
        let extra = uuid::Uuid::new_v4();
        let text = format!(
            "# version {reloads}\n{extra} {SECRET_B32}\n{keep} {SECRET_B32} 30 6 kept\n{}\n",
            (0..200)
                .map(|_| format!("{} {SECRET_B32}", uuid::Uuid::new_v4()))
                .collect::<Vec<_>>()
                .join("\n")
        );
        rendezvous::users::write_atomic(&users, text.as_bytes(), 0o600).expect("write");
        ts.server().reload();
        reloads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u32 = load
        .into_iter()
        .map(|h| h.join().expect("load thread"))
        .sum();
    let m = &ts.server().shared().metrics;
    let unknown = m.auth_unknown_uuid.load(Ordering::Relaxed);
    let known =
        m.auth_bad_token.load(Ordering::Relaxed) + m.auth_locked_out.load(Ordering::Relaxed);
    assert!(
        reloads > 10 && sent > 50,
        "reloads {reloads}, requests {sent}"
    );
    assert_eq!(unknown, 0, "a request saw a table without the user");
    assert_eq!(known, u64::from(sent), "every request found the user");
}
