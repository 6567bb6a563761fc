//! "users reloaded" and "certificate reloaded" are logged only once the new
//! table and certificate are the ones in use. An operator (or a test) who
//! sees the line and then registers a new user must not be refused: this was
//! a real race, logged before the swap, that failed an end-to-end test on a
//! loaded machine. A logger checks the server's state at the moment each line
//! is written, so the check does not depend on timing.

mod support;

use rendezvous::files::write_atomic;
use rendezvous::server::Shared;
use std::sync::{Arc, Mutex, OnceLock};
use support::*;

/// The server under test, for the logger to look at.
static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
/// The TLS configuration in use before the reload.
static OLD_TLS: Mutex<Option<Arc<rustls::ServerConfig>>> = Mutex::new(None);
/// What the logger saw: one entry per reload line.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Check;

impl log::Log for Check {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target() == "rendezvous::server"
    }
    fn log(&self, r: &log::Record) {
        let msg = r.args().to_string();
        let Some(shared) = SHARED.get() else {
            return;
        };
        if let Some(n) = msg.strip_prefix("users reloaded n=") {
            let in_use = shared.users().len();
            SEEN.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("users logged {n} in use {in_use}"));
        } else if msg.starts_with("certificate reloaded") {
            let old = OLD_TLS.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let swapped = match (old, shared.tls()) {
                (Some(old), Some(now)) => !Arc::ptr_eq(&old, &now),
                _ => false,
            };
            SEEN.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("certificate swapped {swapped}"));
        }
    }
    fn flush(&self) {}
}

#[test]
fn reload_lines_follow_the_swap() {
    log::set_boxed_logger(Box::new(Check)).expect("first logger");
    log::set_max_level(log::LevelFilter::Info);
    let ts = TestServer::start(Opts {
        plaintext: false,
        ..Opts::default()
    });
    let shared = ts.server().shared().clone();
    assert_eq!(shared.users().len(), 1);
    *OLD_TLS.lock().expect("lock") = shared.tls();
    assert!(OLD_TLS.lock().expect("lock").is_some(), "TLS is on");
    SHARED.set(shared.clone()).ok().expect("set once");

    // A second user in the file, then the reload a SIGHUP would run.
    let users = ts.dir.join("users");
    let text = format!(
        "{} {SECRET_B32} 30 6 test\n{} {SECRET_B32} 30 6 added\n",
        ts.uuid.hyphenated(),
        uuid::Uuid::new_v4().hyphenated()
    );
    write_atomic(&users, text.as_bytes(), 0o600).expect("write users");
    ts.server().reload();

    let seen = SEEN.lock().expect("lock").clone();
    assert_eq!(
        seen,
        ["users logged 2 in use 2", "certificate swapped true"],
        "what the log lines saw"
    );
}
