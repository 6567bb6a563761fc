//! Every fixture in tests/data/{users,provision}/valid parses; every one in
//! .../invalid fails, at the line its first comment names ("# error at line N").

use rendezvous::provision::Provision;
use rendezvous::users::Users;
use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e}", base.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures in {}", base.display());
    v
}

fn expected_line(text: &str, path: &Path) -> usize {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# error at line "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{}: first line must say '# error at line N'",
                path.display()
            )
        })
}

fn check_invalid(dir: &str, parse: impl Fn(&str, &Path) -> Result<(), rendezvous::Error>) {
    for path in files(dir) {
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let line = expected_line(&text, &path);
        match parse(&text, &path) {
            Ok(()) => panic!("{} parsed but should fail", path.display()),
            Err(rendezvous::Error::Config { line: got, .. }) => {
                assert_eq!(got, Some(line), "{}", path.display())
            }
            Err(other) => panic!("{}: unexpected error {other}", path.display()),
        }
    }
}

#[test]
fn valid_users_files_parse() {
    for path in files("users/valid") {
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let users =
            Users::parse(&text, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let expect = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
            .count();
        assert_eq!(users.len(), expect, "{}", path.display());
    }
}

#[test]
fn invalid_users_files_fail_at_their_line() {
    check_invalid("users/invalid", |t, p| Users::parse(t, p).map(|_| ()));
}

#[test]
fn valid_provisioning_files_parse() {
    for path in files("provision/valid") {
        let text = std::fs::read_to_string(&path).expect("read fixture");
        Provision::parse(&text, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn invalid_provisioning_files_fail_at_their_line() {
    check_invalid("provision/invalid", |t, p| {
        Provision::parse(t, p).map(|_| ())
    });
}

#[test]
fn man_page_users_examples_parse() {
    // Every users-file line in the EXAMPLES of rendezvous-users(5) parses.
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/rendezvous-users.5");
    let Ok(text) = std::fs::read_to_string(&page) else {
        panic!("{} missing", page.display());
    };
    let mut found = 0;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.len() == 36 && uuid::Uuid::try_parse(first).is_ok() && !line.starts_with('.') {
            let clean = line.replace("\\&", "").replace("\\(em", "-");
            Users::parse(&clean, &page).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            found += 1;
        }
    }
    assert!(
        found > 0,
        "no users-file example lines found in the man page"
    );
}
