//! The binaries as a user runs them: exit statuses (0 help, 2 usage, 1 runtime),
//! the one-line `prog: what: why` error, provisioning and file modes.

mod support;

use rendezvous::provision::Provision;
use rendezvous::secret::Token;
use rendezvous::{totp, users};
use support::{mode, rendezvous, rendezvousd, run, stderr, stdout, TempDir, SECRET_B32};

#[test]
fn help_exits_zero_on_stdout() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["user", "add", "--help"],
        vec!["cert", "--help"],
    ] {
        let o = run(rendezvousd().args(&args));
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
    let o = run(rendezvous().args(["expose", "--help"]));
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("--pin-sha256"));
}

#[test]
fn usage_errors_exit_two() {
    for args in [
        vec![],
        vec!["bogus"],
        vec!["serve", "--no-such-flag"],
        vec!["user"],
    ] {
        let o = run(rendezvousd().args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = run(rendezvous().args(["totp", "--digits", "x"]));
    assert_eq!(o.status.code(), Some(2));
    let o = run(rendezvous().args(["expose"]));
    assert_eq!(o.status.code(), Some(2), "missing --to");
    let dir = TempDir::new("cli-usage");
    let o = run(rendezvousd()
        .args(["user", "remove", "not-a-uuid", "--state-dir"])
        .arg(dir.path()));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("rendezvousd: malformed uuid"),
        "{}",
        stderr(&o)
    );
    let o = run(rendezvousd()
        .args(["user", "add", "--digits", "9", "--state-dir"])
        .arg(dir.path()));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn cert_refuses_to_overwrite_without_force() {
    let dir = TempDir::new("cli-cert");
    let state = dir.join("state");
    let o = run(rendezvousd().arg("cert").arg("--state-dir").arg(&state));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fp = stdout(&o).trim().to_string();
    assert_eq!(fp.len(), 64);
    assert_eq!(
        rendezvous::certs::file_fingerprint(&state.join("cert.pem")).expect("fp"),
        fp
    );
    assert_eq!(mode(&state.join("key.pem")), 0o600);
    assert_eq!(mode(&state), 0o700);

    let o = run(rendezvousd().arg("cert").arg("--state-dir").arg(&state));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("rendezvousd: ") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let o = run(rendezvousd()
        .args(["cert", "--force", "--host", "gw.example.org", "--state-dir"])
        .arg(&state));
    assert_eq!(o.status.code(), Some(0));
    assert_ne!(stdout(&o).trim(), fp, "a new pair has a new fingerprint");
}

#[test]
fn user_add_list_remove() {
    let dir = TempDir::new("cli-user");
    let state = dir.join("state");
    let prov = dir.join("gw.conf");
    let o = run(rendezvousd()
        .args([
            "user",
            "add",
            "--label",
            "kitchen gw",
            "--digits",
            "8",
            "--server",
        ])
        .arg("https://rv.example.org")
        .arg("--out")
        .arg(&prov)
        .arg("--state-dir")
        .arg(&state));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let uuid = stdout(&o).trim().to_string();
    assert_eq!(mode(&prov), 0o600, "provisioning file");
    assert_eq!(mode(&state.join("users")), 0o600, "users file");
    assert_eq!(mode(&state.join("key.pem")), 0o600, "key file");

    // The provisioning file pins the certificate serve will present.
    let p = Provision::load(&prov).expect("provisioning file parses");
    assert_eq!(p.uuid.map(|u| u.to_string()), Some(uuid.clone()));
    assert_eq!(p.server.as_deref(), Some("https://rv.example.org"));
    assert_eq!(p.digits, Some(8));
    let fp = rendezvous::certs::file_fingerprint(&state.join("cert.pem")).expect("fp");
    assert_eq!(p.pin_sha256.as_deref(), Some(fp.as_str()));

    // The users file holds the same secret.
    let table = users::load(&state.join("users")).expect("users parse");
    let u = table.iter().next().expect("one user");
    assert_eq!(u.uuid.to_string(), uuid);
    assert_eq!(Some(&u.secret), p.secret.as_ref());
    assert_eq!(u.label, "kitchen gw");

    // totp from the provisioning file verifies against the users file.
    // The provisioning file's digits (8) apply without --digits.
    let o = run(rendezvous().args(["totp", "--secret-file"]).arg(&prov));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let code = stdout(&o).trim().to_string();
    assert_eq!(code.len(), 8);
    let now = totp::now();
    assert!(totp::verify(&u.secret, u.params, &Token::new(code), now, None).is_ok());

    // list shows the user but never the secret.
    let o = run(rendezvousd()
        .args(["user", "list", "--state-dir"])
        .arg(&state));
    assert_eq!(o.status.code(), Some(0));
    let listed = stdout(&o);
    assert!(
        listed.contains(&uuid) && listed.contains("kitchen gw"),
        "{listed}"
    );
    assert!(!listed.contains(&u.secret.to_base32()), "secret leaked");

    // A second user printed to stdout; a duplicate UUID is refused.
    let o = run(rendezvousd()
        .args(["user", "add", "--state-dir"])
        .arg(&state));
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("pin-sha256 = "));
    let o = run(rendezvousd()
        .args(["user", "add", "--uuid", &uuid, "--state-dir"])
        .arg(&state));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already present"));

    let o = run(rendezvousd()
        .args(["user", "remove", &uuid, "--state-dir"])
        .arg(&state));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(rendezvousd()
        .args(["user", "remove", &uuid, "--state-dir"])
        .arg(&state));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(users::load(&state.join("users")).expect("parse").len(), 1);
    assert_eq!(mode(&state.join("users")), 0o600);
}

#[test]
fn state_dir_from_environment_and_ca_mode() {
    let dir = TempDir::new("cli-env");
    let o = run(rendezvousd()
        .args(["cert"])
        .env("RENDEZVOUS_STATE_DIR", dir.path()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(rendezvousd()
        .args(["user", "add", "--ca"])
        .arg(dir.join("cert.pem"))
        .env("RENDEZVOUS_STATE_DIR", dir.path()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("ca = ") && !text.contains("pin-sha256"),
        "{text}"
    );
    let o = run(rendezvousd()
        .args(["user", "add", "--ca", "/x", "--cert", "/y"])
        .env("RENDEZVOUS_STATE_DIR", dir.path()));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn broken_users_file_is_a_runtime_error_with_its_line() {
    let dir = TempDir::new("cli-broken");
    std::fs::write(dir.join("users"), "# c\nnonsense here\n").expect("write");
    let o = run(rendezvousd()
        .args(["user", "list", "--state-dir"])
        .arg(dir.path()));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("users:2: malformed uuid"), "{err}");
}

#[test]
fn totp_secret_from_environment_never_from_flags() {
    let o = run(rendezvous()
        .args(["totp"])
        .env("RENDEZVOUS_SECRET", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim().len(), 6);
    let o = run(rendezvous().args(["totp"]));
    assert_eq!(o.status.code(), Some(2), "no secret is a usage error");
    let o = run(rendezvous().args(["totp", "--secret", "X"]));
    assert_eq!(o.status.code(), Some(2), "there is no --secret flag");
}

#[test]
fn ca_with_pin_is_a_usage_error() {
    let o = run(rendezvous().args([
        "lookup",
        "--server",
        "https://127.0.0.1:1",
        "--uuid",
        "0b3e1c4e-6f55-4a8e-9d7a-5b2f0c1d2e3f",
        "--ca",
        "/nonexistent.pem",
        "--pin-sha256",
        &"ab".repeat(32),
    ]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("rendezvous: --ca and --pin-sha256"),
        "{}",
        stderr(&o)
    );
    let o = run(rendezvous().args([
        "lookup",
        "--server",
        "ftp://x",
        "--uuid",
        "0b3e1c4e-6f55-4a8e-9d7a-5b2f0c1d2e3f",
    ]));
    assert_eq!(o.status.code(), Some(2), "malformed server URL");
    let o = run(rendezvous().args(["connect"]));
    assert_eq!(o.status.code(), Some(2), "no server, no uuid");
}

/// `serve` refuses an option outside its range (rendezvousd(8)) before it
/// binds anything, naming the option; a huge value meant as "forever" would
/// otherwise overflow a deadline on every connection.
#[test]
fn serve_refuses_out_of_range_options() {
    let dir = TempDir::new("cli-ranges");
    let huge = u64::MAX.to_string();
    let cases = [
        (
            "--pair-timeout",
            "0",
            "--pair-timeout must be from 1 to 3600 seconds",
        ),
        (
            "--pair-timeout",
            huge.as_str(),
            "--pair-timeout must be from 1 to 3600 seconds",
        ),
        (
            "--handshake-timeout",
            "3601",
            "--handshake-timeout must be from 1 to 3600 seconds",
        ),
        (
            "--drain-timeout",
            huge.as_str(),
            "--drain-timeout must be from 0 to 3600 seconds",
        ),
        (
            "--cookie-ttl",
            "0",
            "--cookie-ttl must be from 1 to 604800 seconds",
        ),
        (
            "--cookie-ttl",
            "604801",
            "--cookie-ttl must be from 1 to 604800 seconds",
        ),
        ("--pool-max", "0", "--pool-max must be from 1 to 1024"),
        (
            "--pool-max",
            "1000000000",
            "--pool-max must be from 1 to 1024",
        ),
        (
            "--max-connections",
            "0",
            "--max-connections must be at least 1",
        ),
    ];
    for (flag, value, message) in cases {
        let o = run(rendezvousd()
            .args(["serve", "--plaintext", "--registrar", "127.0.0.1:0"])
            .args(["--rendezvous", "127.0.0.1:0", flag, value, "--state-dir"])
            .arg(dir.join("state")));
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).trim(),
            format!("rendezvousd: {message}"),
            "{flag} {value}"
        );
    }
    assert!(
        !dir.join("state").exists(),
        "a refused command line created the state folder"
    );
}

/// With standard error a pipe nobody reads (a log reader that died), errors
/// still exit 2 (usage) and 1 (runtime), not 101 from a panic while printing
/// them. (A closed descriptor is not the case: std ignores EBADF on stderr.)
#[test]
fn a_broken_stderr_pipe_keeps_the_exit_status() {
    let dir = TempDir::new("cli-broken-stderr");
    let status = |args: &[&str]| {
        // The read end is closed before the child starts: its first write
        // to stderr gets EPIPE (Rust ignores SIGPIPE).
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        drop(r);
        rendezvousd()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(w))
            .status()
            .expect("run")
            .code()
    };
    assert_eq!(status(&["bogus"]), Some(2), "usage error");
    let missing = uuid::Uuid::new_v4().to_string();
    let state = dir.path().display().to_string();
    assert_eq!(
        status(&["user", "remove", &missing, "--state-dir", &state]),
        Some(1),
        "runtime error"
    );
}

/// `--version` on both programs: the crate's version, and the commit when
/// built from a git checkout (as the tests are), on stdout, exit 0. Without
/// a subcommand it is a usage error.
#[test]
fn version_names_the_crate_version_and_commit() {
    for (name, mut cmd) in [("rendezvous", rendezvous()), ("rendezvousd", rendezvousd())] {
        let o = run(cmd.arg("--version"));
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        let out = stdout(&o);
        let want = format!("{name} {} (", env!("CARGO_PKG_VERSION"));
        assert!(
            out.starts_with(&want) && out.trim_end().ends_with(')'),
            "{out:?}"
        );
        let commit = out
            .trim_end()
            .rsplit('(')
            .next()
            .unwrap_or("")
            .trim_end_matches(')');
        assert!(
            commit.len() == 7 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{out:?}"
        );
    }
    let o = run(&mut rendezvousd());
    assert_eq!(o.status.code(), Some(2), "no subcommand");
}

/// `totp --at`: the password of a given instant (RFC 6238 Appendix B,
/// SHA-1, 8 digits), so two builds can be compared at one instant.
#[test]
fn totp_at_a_fixed_instant() {
    for (at, code) in [(59, "94287082"), (1_111_111_109, "07081804")] {
        let o = run(rendezvous()
            .args(["totp", "--digits", "8", "--at", &at.to_string()])
            .env("RENDEZVOUS_SECRET", SECRET_B32));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim(), code);
    }
}
