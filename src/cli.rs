//! Shared front-end helpers: argh parsing that exits 2 on a usage error and 0
//! on `--help`, logger set-up (`RUST_LOG`, default `info`, no timestamps when
//! stderr is not a terminal), and the one-line `prog: what: why` error report.

use crate::error::Error;
use argh::FromArgs;
use std::io::IsTerminal;
use std::process::ExitCode;

/// What `--version` prints: the crate's version and, when built from a git
/// checkout, the commit: `0.1.0 (2e45807)`.
pub fn version() -> String {
    match option_env!("RENDEZVOUS_COMMIT") {
        Some(c) => format!("{} ({c})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The front ends' answer to `--version` (stdout, exit 0), or to a command
/// line without a subcommand (a usage error, exit 2).
pub fn version_or_usage(prog: &str, asked: bool) -> ExitCode {
    use std::io::Write;
    if asked {
        let _ = writeln!(std::io::stdout(), "{prog} {}", version());
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(
        std::io::stderr(),
        "{prog}: a subcommand is required\nRun {prog} --help for more information."
    );
    ExitCode::from(2)
}

/// Parse the process arguments into `T`. `--help` prints to stdout and exits 0;
/// a usage error prints to stderr and exits 2 (argh's own `from_env` exits 1).
pub fn parse_args<T: FromArgs>() -> Result<T, ExitCode> {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cmd = args
        .first()
        .map(|c| {
            std::path::Path::new(c)
                .file_name()
                .map_or(c.as_str(), |n| n.to_str().unwrap_or(c))
        })
        .unwrap_or("rendezvous")
        .to_string();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match T::from_args(&[&cmd], &rest) {
        Ok(t) => Ok(t),
        Err(early) => match early.status {
            Ok(()) => {
                // A closed stdout (`--help | head`) is not an error worth a panic.
                use std::io::Write;
                let _ = writeln!(std::io::stdout(), "{}", early.output);
                Err(ExitCode::SUCCESS)
            }
            Err(()) => {
                // eprintln! would panic on a broken stderr pipe (exit 101, not 2).
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "{}\nRun {cmd} --help for more information.",
                    early.output
                );
                Err(ExitCode::from(2))
            }
        },
    }
}

/// The log filter: `RUST_LOG` (default `info`), with the dependencies whose
/// warnings unauthenticated input can trigger kept at `error` unless
/// `RUST_LOG` names them. rustls warns once per ClientHello with an illegal
/// SNI, quoting up to 250 bytes of it: about 770 KiB of log a second from one
/// client, which no rate limit of ours would see.
pub fn log_filter(rust_log: Option<&str>) -> String {
    let spec = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let quiet: Vec<&str> = QUIET_DEPENDENCIES
        .iter()
        .copied()
        .filter(|d| !spec.contains(d))
        .collect();
    let mut out = spec.to_string();
    for d in quiet {
        out.push_str(&format!(",{d}=error"));
    }
    out
}

/// Dependencies that log at warn on what a peer sends (see [`log_filter`]).
const QUIET_DEPENDENCIES: [&str; 1] = ["rustls"];

/// Start the logger with `log_filter`, and no timestamps when stderr is
/// not a terminal (journald adds its own).
pub fn init_logger() {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    crate::logger::init(&filter, std::io::stderr().is_terminal());
}

/// Turn a command's result into the exit status, printing `prog: error` on failure.
pub fn finish(prog: &str, result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: a broken stderr pipe must not turn exit 1 or 2 into a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{prog}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn rustls_stays_at_error_unless_named() {
        assert_eq!(log_filter(None), "info,rustls=error");
        assert_eq!(log_filter(Some("")), "info,rustls=error");
        assert_eq!(log_filter(Some("debug")), "debug,rustls=error");
        assert_eq!(log_filter(Some("info,rustls=debug")), "info,rustls=debug");
    }
}
