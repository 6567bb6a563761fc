//! The man pages stay true to the binaries: every `--flag` in each
//! subcommand's `--help` appears as `Fl -flag` in its page and in its
//! SYNOPSIS, and the pages lint clean with groff (and mandoc, when installed)
//! and render with `man -l`; every message the programs log at warn (and
//! the client's at info) is explained in DIAGNOSTICS.

mod support;

use std::path::Path;
use std::process::Command;
use support::{rendezvous, rendezvousd, run, stdout};

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
            &[],
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
        &[&[], &["expose"], &["connect"], &["lookup"], &["totp"]],
    );
}

/// The other direction: every `--flag` a page names is a flag of one of the
/// programs (a page may name the other program's flags).
#[test]
fn every_flag_a_page_names_exists() {
    let subcommands: [(&str, &[&str]); 11] = [
        ("rendezvousd", &[]),
        ("rendezvous", &[]),
        ("rendezvousd", &["serve"]),
        ("rendezvousd", &["user", "add"]),
        ("rendezvousd", &["user", "list"]),
        ("rendezvousd", &["user", "remove"]),
        ("rendezvousd", &["cert"]),
        ("rendezvous", &["expose"]),
        ("rendezvous", &["connect"]),
        ("rendezvous", &["lookup"]),
        ("rendezvous", &["totp"]),
    ];
    let mut known = vec!["help".to_string()];
    for (prog, sub) in subcommands {
        let mut c = if prog == "rendezvousd" {
            rendezvousd()
        } else {
            rendezvous()
        };
        let o = run(c.args(sub).arg("--help"));
        assert_eq!(o.status.code(), Some(0), "{prog} {sub:?} --help");
        known.extend(flags(&stdout(&o)));
    }
    for name in PAGES {
        let text = page(name);
        for (i, _) in text.match_indices("Fl -") {
            let f: String = text[i + 4..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            assert!(
                known.contains(&f),
                "{name}: names --{f}, which no subcommand has"
            );
        }
    }
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
    let probe = Command::new("man")
        .arg("--version")
        .output()
        .expect("man is installed (.ci/run installs man-db)");
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

/// The source files of one folder of `src/` (one floor) and its folders, as
/// paths under `src/`.
fn sources(floor: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut v = Vec::new();
    let mut dirs = vec![root.join(floor)];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&root).expect("under src");
                v.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    v.sort();
    v
}

/// The literal text before the first placeholder of every `log::LEVEL!`
/// message in `files` (messages that start with a placeholder are skipped).
fn log_prefixes(files: &[&str], levels: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in files {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(f);
        let src = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for level in levels {
            let call = format!("log::{level}!(");
            for (i, _) in src.match_indices(&call) {
                let mut rest = src[i + call.len()..].trim_start();
                if let Some(t) = rest.strip_prefix("target:") {
                    // Skip the target (a constant or a string literal).
                    let Some(comma) = t.find(',') else { continue };
                    rest = &t[comma + 1..];
                }
                let Some(q) = rest.find('"') else { continue };
                let lit = &rest[q + 1..];
                let lit = &lit[..lit.find('"').unwrap_or(lit.len())];
                let prefix = lit.split('{').next().unwrap_or("").trim();
                if prefix.len() >= 6 {
                    out.push((format!("{f}: {level}"), prefix.to_string()));
                }
            }
        }
    }
    assert!(!out.is_empty(), "no log messages found in {files:?}");
    out
}

/// The DIAGNOSTICS section of a page, as text (mdoc escapes undone).
fn diagnostics(page_name: &str) -> String {
    page(page_name)
        .split(".Sh DIAGNOSTICS")
        .nth(1)
        .and_then(|r| r.split("\n.Sh ").next())
        .unwrap_or_else(|| panic!("{page_name}: no DIAGNOSTICS"))
        .replace("\\(aq", "'")
        .replace("\\-", "-")
}

/// Every warning the programs can log is explained in DIAGNOSTICS, and so is
/// every info message of the client (the daemon's info lines are its
/// per-connection log, described with RUST_LOG under ENVIRONMENT in rendezvousd(8)).
#[test]
fn every_warning_is_in_diagnostics() {
    let client = diagnostics("rendezvous.1");
    let agent = sources("agent");
    let agent: Vec<&str> = agent.iter().map(String::as_str).collect();
    for (at, msg) in log_prefixes(&agent, &["warn", "info"]) {
        assert!(
            client.contains(&msg),
            "{at}: {msg:?} not in rendezvous(1) DIAGNOSTICS"
        );
    }
    let daemon = diagnostics("rendezvousd.8");
    let mut server = sources("server");
    server.extend(sources("relay"));
    let server: Vec<&str> = server.iter().map(String::as_str).collect();
    for (at, msg) in log_prefixes(&server, &["warn", "error"]) {
        assert!(
            daemon.contains(&msg),
            "{at}: {msg:?} not in rendezvousd(8) DIAGNOSTICS"
        );
    }
}

/// The status table of `wire::status` is the one rendezvous-protocol(7)
/// gives: every refusal's diagnostic under its status and `permanent`.
#[test]
fn the_status_table_is_the_pages() {
    let page = page("rendezvous-protocol.7");
    let section = page
        .split(".Sh STATUS CODES")
        .nth(1)
        .and_then(|r| r.split("\n.Sh ").next())
        .expect("STATUS CODES");
    let mut missing = Vec::new();
    for (refusal, status, permanent, text) in rendezvous::wire::Refusal::table() {
        let header = format!("{status} Ta {permanent} Ta");
        let found = section.split("\n.It ").any(|item| {
            item.starts_with(&header)
                && item.lines().any(|l| {
                    l.strip_prefix(".Dq ")
                        .and_then(|r| r.strip_prefix(text))
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
                })
        });
        if !found {
            missing.push(format!("{refusal:?}: {status} {permanent} {text:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in rendezvous-protocol(7) STATUS CODES:\n{}",
        missing.join("\n")
    );
}
