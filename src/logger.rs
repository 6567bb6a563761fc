//! The programs' logger, of our own (it was env_logger, with env_filter and
//! jiff for its timestamps: about 13 KiB of a gateway client's code): one
//! line a record, `[LEVEL target] message`, after a UTC time when stderr is
//! a terminal (journald adds its own), written with one call so that lines
//! of several threads never mix. `RUST_LOG` takes comma-separated
//! directives: a level (`off`, `error`, `warn`, `info`, `debug`, `trace`)
//! for every target, `TARGET=LEVEL`, or `TARGET` alone for all its levels;
//! the longest target that prefixes a record's own decides.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;

/// The directives of a `RUST_LOG` value: the level for all targets (`None`
/// when no directive gave one), and per target prefix, in their order.
#[derive(Debug, PartialEq, Eq)]
pub struct Filter {
    all: Option<LevelFilter>,
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// Parse directives; one that names no known level is left out.
    pub fn parse(spec: &str) -> Filter {
        let mut f = Filter {
            all: None,
            targets: Vec::new(),
        };
        for d in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match d.split_once('=') {
                Some((target, level)) => {
                    if let Ok(level) = level.trim().parse::<LevelFilter>() {
                        f.targets.push((target.trim().to_string(), level));
                    }
                }
                None => match d.parse::<LevelFilter>() {
                    Ok(level) => f.all = Some(level),
                    Err(_) => f.targets.push((d.to_string(), LevelFilter::Trace)),
                },
            }
        }
        f
    }

    /// The most verbose level any target gets.
    pub fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .chain(self.all)
            .max()
            .unwrap_or(LevelFilter::Error)
    }

    /// The level for records of `target`: that of the longest directive
    /// target it starts with (as a module path: `a::b` covers `a::b::c`,
    /// not `a::bc`), else the level for all, else `error`.
    pub fn level(&self, target: &str) -> LevelFilter {
        let covers = |prefix: &str| {
            target == prefix || (target.starts_with(prefix) && target[prefix.len()..].starts_with("::"))
        };
        // max_by_key keeps the last of equals: a later directive wins.
        let named = self.targets.iter().filter(|(t, _)| covers(t)).max_by_key(|(t, _)| t.len());
        named.map(|(_, l)| *l).or(self.all).unwrap_or(LevelFilter::Error)
    }
}

struct Logger {
    filter: Filter,
    timestamps: bool,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.filter.level(m.target())
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut line = String::with_capacity(128);
        line.push('[');
        if self.timestamps {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            line.push_str(&crate::calendar::rfc3339(now));
            line.push(' ');
        }
        line.push_str(&format!("{:<5} {}] {}\n", r.level(), r.target(), r.args()));
        // A broken stderr must not stop the program: the line is lost.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Install the logger for `spec` (directives as in `RUST_LOG`); timestamps
/// when asked. A second call changes nothing.
pub fn init(spec: &str, timestamps: bool) {
    static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();
    let logger = LOGGER.get_or_init(|| Logger {
        filter: Filter::parse(spec),
        timestamps,
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.filter.max());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_target_prefix_decides() {
        let f = Filter::parse("info,rustls=error, rendezvous::peer=debug ,bogus=loud,rendezvous");
        assert_eq!(f.level("rendezvous::server"), LevelFilter::Trace, "a target alone: all levels");
        assert_eq!(f.level("rendezvous::peer"), LevelFilter::Debug);
        assert_eq!(f.level("rendezvous::peer::link"), LevelFilter::Debug, "a module below");
        assert_eq!(f.level("rustls::client"), LevelFilter::Error);
        assert_eq!(f.level("rustlsx"), LevelFilter::Info, "a prefix only as a module path");
        assert_eq!(f.level("other"), LevelFilter::Info, "the level for all");
        assert_eq!(f.level("bogus"), LevelFilter::Info, "an unknown level is left out");
        assert_eq!(f.max(), LevelFilter::Trace);
        assert_eq!(Filter::parse("").level("x"), LevelFilter::Error, "nothing given: error");
        assert_eq!(Filter::parse("off").max(), LevelFilter::Off);
        assert_eq!(Filter::parse("WARN").level("x"), LevelFilter::Warn, "levels in any case");
        assert_eq!(Filter::parse("a=info,a=debug").level("a"), LevelFilter::Debug, "the later directive");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(crate::calendar::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(crate::calendar::rfc3339(1_796_390_000), "2026-12-04T13:13:20Z");
    }
}
