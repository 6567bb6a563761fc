//! SIGHUP under load swaps the users table whole: while the file is
//! rewritten and reloaded over and over, a user present in every version is
//! never unknown to a request, not even for an instant.

mod support;

use rendezvous::certs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

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
        rendezvous::files::write_atomic(&users, text.as_bytes(), 0o600).expect("write");
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

/// SIGHUP's certificate half: after the pair on disk is replaced and the
/// server reloaded, new connections get the new certificate (a client pinned
/// to the old one is refused, one pinned to the new one gets through).
#[test]
fn reload_serves_the_new_certificate() {
    use rendezvous::agent::client::Registrar;
    use rendezvous::agent::settings::ServerUrl;
    use rendezvous::tls::Trust;
    let ts = TestServer::start(Opts {
        plaintext: false,
        ..Opts::default()
    });
    let (cert, key) = certs::state_pair(ts.dir.path());
    let pin = |fp: &str| Trust::Pin(certs::parse_fingerprint(fp).expect("fingerprint"));
    let url =
        ServerUrl::parse(&format!("https://127.0.0.1:{}", ts.registrar().port())).expect("url");
    let health = |trust: &Trust| Registrar::new(url.clone(), trust).and_then(|r| r.health());
    let old = certs::file_fingerprint(&cert).expect("old fingerprint");
    health(&pin(&old)).expect("the old certificate before the reload");
    let new = certs::write_self_signed(&cert, &key, &["127.0.0.1".into()], true).expect("new pair");
    assert_ne!(new, old);
    ts.server().reload();
    let err = health(&pin(&old)).expect_err("the old pin after the reload");
    assert!(err.to_string().contains("pinned SHA-256"), "{err}");
    health(&pin(&new)).expect("the new certificate after the reload");
}
