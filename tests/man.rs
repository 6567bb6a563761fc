//! The man pages stay true to the binaries: every `--flag` in each
//! subcommand's `--help` appears as `Fl -flag` in its page and in its
//! SYNOPSIS, and the pages lint clean with groff (and mandoc, when installed)
//! and render with `man -l`.

mod common;

use common::{rendezvous, rendezvousd, run, stdout};
use std::path::Path;
use std::process::Command;

const PAGES: [&str; 4] = [
    "rendezvousd.8",
    "rendezvous.1",
    "rendezvous-users.5",
    "rendezvous-protocol.7",
];

fn page_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name)
}

fn page(name: &str) -> String {
    let p = page_path(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn flags(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']') {
        if let Some(f) = word.strip_prefix("--") {
            let f: String = f
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !f.is_empty() && f != "help" && !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

fn check(page_name: &str, mut cmd: impl FnMut() -> Command, subcommands: &[&[&str]]) {
    let text = page(page_name);
    let synopsis = text
        .split(".Sh SYNOPSIS")
        .nth(1)
        .and_then(|r| r.split(".Sh DESCRIPTION").next())
        .unwrap_or_else(|| panic!("{page_name}: no SYNOPSIS"))
        .to_string();
    for sub in subcommands {
        let o = run(cmd().args(*sub).arg("--help"));
        assert_eq!(o.status.code(), Some(0), "{sub:?} --help");
        let help = stdout(&o);
        let found = flags(&help);
        assert!(!found.is_empty(), "{sub:?}: no flags in --help?");
        for f in found {
            let needle = format!("Fl -{f}");
            assert!(
                text.lines().any(|l| l.contains(&needle)
                    && l[l.find(&needle).unwrap_or(0) + needle.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '-')),
                "{page_name}: --{f} of {sub:?} is not documented (no {needle:?})"
            );
            assert!(
                synopsis.contains(&format!("{needle} "))
                    || synopsis.contains(&format!("{needle}\n")),
                "{page_name}: --{f} of {sub:?} is missing from the SYNOPSIS"
            );
        }
        let name = format!("Cm {}", sub.join(" "));
        assert!(
            text.contains(&name),
            "{page_name}: subcommand {sub:?} missing"
        );
    }
}

#[test]
fn rendezvousd_flags_are_documented() {
    check(
        "rendezvousd.8",
        rendezvousd,
        &[
            &["serve"],
            &["user", "add"],
            &["user", "list"],
            &["user", "remove"],
            &["cert"],
        ],
    );
}

#[test]
fn rendezvous_flags_are_documented() {
    check(
        "rendezvous.1",
        rendezvous,
        &[&["expose"], &["connect"], &["lookup"], &["totp"]],
    );
}

#[test]
fn pages_lint_clean() {
    for name in PAGES {
        let p = page_path(name);
        let o = Command::new("groff")
            .args(["-mdoc", "-ww", "-z"])
            .arg(&p)
            .output()
            .expect("groff is installed (.ci/run installs it)");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.is_empty(), "{name}: groff: {err}");
        if let Ok(o) = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(&p)
            .output()
        {
            let out = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            assert!(out.trim().is_empty(), "{name}: mandoc: {out}");
        }
    }
}

#[test]
fn pages_render_with_man_l() {
    let Ok(probe) = Command::new("man").arg("--version").output() else {
        // man-db is not installed (a bare CI machine): groff renders below.
        for name in PAGES {
            let p = page_path(name);
            let o = Command::new("groff")
                .args(["-mdoc", "-Tutf8"])
                .arg(&p)
                .output()
                .expect("groff");
            assert!(
                String::from_utf8_lossy(&o.stdout).contains("NAME"),
                "{name}"
            );
        }
        return;
    };
    assert!(probe.status.success());
    for name in PAGES {
        let p = page_path(name);
        let o = Command::new("man")
            .arg("-l")
            .arg(&p)
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .expect("man -l");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            text.contains("NAME") && text.contains("DESCRIPTION"),
            "{name}: {text}"
        );
    }
}
