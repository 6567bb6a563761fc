//! Every input kept in fuzz/regressions/TARGET/ (crashes the fuzzers found,
//! and hand-made hostile inputs) goes through the same code as its cargo-fuzz
//! target, so `make test` guards against them without a nightly toolchain.

use rendezvous::provision::Provision;
use rendezvous::users::Users;
use rendezvous::wire::{authorization_uuid, parse_connect_target, strip_authorization};
use rendezvous::wire::{http_date, parse_http_date, HeadReader};
use rendezvous::wire::{parse_first_line, FirstLine};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).expect("read input");
            (p, data)
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no inputs in {}", dir.display());
    v
}

#[test]
fn head() {
    for (_, data) in inputs("head") {
        for split in [0, data.len() / 2, data.len()] {
            let mut r = HeadReader::new();
            let head = match r.feed(&data[..split]) {
                Ok(Some(h)) => Some(h),
                Ok(None) => r.feed(&data[split..]).ok().flatten(),
                Err(_) => None,
            };
            if let Some(h) = head {
                let _ = (h.query(), h.path(), h.summary(), h.keep_alive());
                let _ = rendezvous::server::registrar::route(&h);
                let stripped = strip_authorization(&h.raw);
                let text = String::from_utf8_lossy(&stripped).to_ascii_lowercase();
                assert!(!text.contains("authorization:"), "{text:?}");
                body_after(&h, &mut r);
            }
        }
    }
}

/// What the registrar does after a head: its framing, and for a chunked
/// body the decoder over the bytes that followed (as the fuzz target does).
fn body_after(h: &rendezvous::wire::Head, r: &mut HeadReader) {
    use rendezvous::wire::{Chunked, Framing};
    let rest = r.take_buffered();
    if let Ok(Framing::Chunked) = h.framing() {
        let mut d = Chunked::new(rendezvous::limits::MAX_BODY_BYTES as u64);
        if let Ok(used) = d.feed(&rest) {
            assert!(used <= rest.len());
        }
    }
}

/// The hand-made framing inputs (issue: Content-Length twice, signed, with
/// Transfer-Encoding) are refused, never taken as a body.
#[test]
fn hostile_framing_is_refused() {
    for name in ["cl-twice", "cl-signed", "te-and-cl", "te-unknown"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions/head")
            .join(name);
        let data = std::fs::read(&p).expect("input");
        let h = HeadReader::new()
            .feed(&data)
            .expect("a head")
            .expect("complete");
        assert!(h.framing().is_err(), "{name}");
    }
}

#[test]
fn authorization() {
    for (p, data) in inputs("authorization") {
        let text = String::from_utf8_lossy(&data);
        assert!(authorization_uuid(&text).is_none(), "{}", p.display());
    }
}

#[test]
fn connect_target() {
    for (p, data) in inputs("connect_target") {
        let text = String::from_utf8_lossy(&data);
        assert!(parse_connect_target(&text).is_err(), "{}", p.display());
    }
}

#[test]
fn cookie_line() {
    for (p, data) in inputs("cookie_line") {
        assert_eq!(
            parse_first_line(&data),
            FirstLine::Invalid,
            "{}",
            p.display()
        );
    }
}

#[test]
fn users_file() {
    for (_, data) in inputs("users_file") {
        let text = String::from_utf8_lossy(&data);
        if let Ok(users) = Users::parse(&text, Path::new("users")) {
            let again = Users::parse(&users.render(), Path::new("users")).expect("round trip");
            assert_eq!(again.len(), users.len());
        }
    }
}

#[test]
fn provision_file() {
    for (_, data) in inputs("provision_file") {
        let text = String::from_utf8_lossy(&data);
        if let Ok(p) = Provision::parse(&text, Path::new("p")) {
            Provision::parse(&p.render(), Path::new("p")).expect("round trip");
        }
    }
}

#[test]
fn http_dates() {
    for (p, data) in inputs("http_date") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Some(t) = parse_http_date(text) {
            let again = http_date(t);
            assert_eq!(parse_http_date(&again), Some(t), "{}", p.display());
            if !text.trim().ends_with(":60 GMT") {
                assert_eq!(again, text.trim(), "{}", p.display());
            }
        }
    }
}
