//! Counters for `/.well-known/rendezvous/metrics` (Prometheus text format),
//! the `--metrics-from` address ranges allowed to read them on the
//! registrar, and the `--metrics-listen` listener that serves them alone.

use crate::server::accept::Accepted;
use crate::server::Shared;
use crate::wire::{HeadReader, Response};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Event counters the connection threads bump.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Successful token authentications.
    pub registrations_total: AtomicU64,
    /// Failed tokens (wrong, malformed or wrong length).
    pub auth_bad_token: AtomicU64,
    /// Tokens refused as replays.
    pub auth_replay: AtomicU64,
    /// Tokens for a UUID not in the users file.
    pub auth_unknown_uuid: AtomicU64,
    /// Unknown or expired cookies.
    pub auth_bad_cookie: AtomicU64,
    /// Attempts refused with 429.
    pub auth_locked_out: AtomicU64,
    /// Locks engaged on a (UUID, address) pair.
    pub lockouts_total: AtomicU64,
    /// Parked sockets whose first bytes were acknowledged (liveness proof).
    pub proofs_acked: AtomicU64,
    /// Parked sockets dropped because their first bytes were not acknowledged.
    pub proofs_failed: AtomicU64,
    /// Microseconds spent waiting for those acknowledgements, all together.
    pub proof_micros: AtomicU64,
}

impl Metrics {
    /// Add one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The metrics as a response.
pub fn response(shared: &Shared) -> Response {
    let mut r = Response::result(serde_json::Value::Null);
    r.body = render(shared).into_bytes();
    r.with_header("Content-Type", "text/plain; version=0.0.4")
}

/// Serve one connection of the `--metrics-listen` listener: one request
/// head (under the handshake timeout and the head limits), `GET` of the
/// metrics path or `/metrics` answered, anything else 404, then close. It
/// answers whoever can reach it: bind it where only the scraper can.
pub fn handle(acc: Accepted, shared: &Shared) {
    let Accepted {
        mut stream,
        id,
        pre_auth,
        slot: _slot,
        ..
    } = acc;
    let deadline = std::time::Instant::now() + shared.cfg.handshake_timeout;
    let response = match HeadReader::new().read_head(&mut stream, deadline) {
        Ok(head) => match (head.method.as_str(), head.path()) {
            ("GET", "/.well-known/rendezvous/metrics" | "/metrics") => response(shared),
            _ => Response::error(404, true, "no such endpoint"),
        },
        Err(e) => match e.status() {
            Some(status) => Response::error(status, true, e.reason()),
            None => return,
        },
    };
    drop(pre_auth);
    let mut response = response;
    response.close = true;
    if response.write_to(&mut stream).is_err() {
        log::debug!(target: "rendezvous::server::metrics", "conn={id} metrics response not sent");
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// An address range, `ADDR/PREFIX` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("malformed address range {s:?} (want ADDR/PREFIX)");
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(bad)?
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// The default: loopback only (127.0.0.0/8 and ::1).
    pub fn loopback() -> Vec<Cidr> {
        vec![
            Cidr {
                addr: IpAddr::from([127, 0, 0, 0]),
                prefix: 8,
            },
            Cidr {
                addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ]
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics page.
pub fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let stats = shared.registry.stats();
    let (pairs_total, up, down) = shared.pairs.totals();
    let mut o = String::new();
    family(
        &mut o,
        "rendezvous_registrations",
        "gauge",
        "Live registrations.",
    );
    let _ = writeln!(o, "rendezvous_registrations {}", stats.registrations);
    family(
        &mut o,
        "rendezvous_parked",
        "gauge",
        "Sockets waiting for a mobile client.",
    );
    let _ = writeln!(
        o,
        "rendezvous_parked{{proto=\"generic\"}} {}",
        stats.parked_generic
    );
    let _ = writeln!(
        o,
        "rendezvous_parked{{proto=\"http\"}} {}",
        stats.parked_http
    );
    family(
        &mut o,
        "rendezvous_active_pairs",
        "gauge",
        "Pairs relaying now.",
    );
    let _ = writeln!(o, "rendezvous_active_pairs {}", shared.pairs.active());
    family(
        &mut o,
        "rendezvous_pairs_total",
        "counter",
        "Pairs started.",
    );
    let _ = writeln!(o, "rendezvous_pairs_total {pairs_total}");
    family(
        &mut o,
        "rendezvous_relayed_bytes_total",
        "counter",
        "Bytes relayed by finished pairs, up (mobile to hidden) and down.",
    );
    let _ = writeln!(o, "rendezvous_relayed_bytes_total{{direction=\"up\"}} {up}");
    let _ = writeln!(
        o,
        "rendezvous_relayed_bytes_total{{direction=\"down\"}} {down}"
    );
    family(
        &mut o,
        "rendezvous_token_registrations_total",
        "counter",
        "Successful authentications with a one-time password.",
    );
    let _ = writeln!(
        o,
        "rendezvous_token_registrations_total {}",
        get(&m.registrations_total)
    );
    family(
        &mut o,
        "rendezvous_auth_failures_total",
        "counter",
        "Failed authentications by reason.",
    );
    for (reason, c) in [
        ("bad-token", &m.auth_bad_token),
        ("replay", &m.auth_replay),
        ("unknown-uuid", &m.auth_unknown_uuid),
        ("bad-cookie", &m.auth_bad_cookie),
        ("locked-out", &m.auth_locked_out),
    ] {
        let _ = writeln!(
            o,
            "rendezvous_auth_failures_total{{reason=\"{reason}\"}} {}",
            get(c)
        );
    }
    family(
        &mut o,
        "rendezvous_lockouts_total",
        "counter",
        "Locks engaged on a (UUID, address) pair.",
    );
    let _ = writeln!(o, "rendezvous_lockouts_total {}", get(&m.lockouts_total));
    family(
        &mut o,
        "rendezvous_liveness_proofs_total",
        "counter",
        "Parked sockets proven alive before pairing, by result: acked, or dropped unacknowledged.",
    );
    let _ = writeln!(
        o,
        "rendezvous_liveness_proofs_total{{result=\"acked\"}} {}",
        get(&m.proofs_acked)
    );
    let _ = writeln!(
        o,
        "rendezvous_liveness_proofs_total{{result=\"dropped\"}} {}",
        get(&m.proofs_failed)
    );
    family(
        &mut o,
        "rendezvous_liveness_proof_seconds_total",
        "counter",
        "Time spent waiting for the acknowledgements of liveness proofs.",
    );
    let _ = writeln!(
        o,
        "rendezvous_liveness_proof_seconds_total {:.6}",
        get(&m.proof_micros) as f64 / 1e6
    );
    family(
        &mut o,
        "rendezvous_open_connections",
        "gauge",
        "Open sockets, parked ones included.",
    );
    let _ = writeln!(o, "rendezvous_open_connections {}", shared.conns.open());
    family(
        &mut o,
        "rendezvous_refused_connections_total",
        "counter",
        "Connections refused at accept, by limit.",
    );
    let (cap, per_addr) = shared.conns.refused_by_limit();
    let _ = writeln!(
        o,
        "rendezvous_refused_connections_total{{limit=\"max-connections\"}} {cap}"
    );
    let _ = writeln!(
        o,
        "rendezvous_refused_connections_total{{limit=\"per-address\"}} {per_addr}"
    );
    family(
        &mut o,
        "rendezvous_idle_reclaimed_total",
        "counter",
        "Idle keep-alive registrar connections closed to make room at --max-connections.",
    );
    let _ = writeln!(
        o,
        "rendezvous_idle_reclaimed_total {}",
        shared.conns.reclaimed()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let c: Cidr = "10.1.0.0/16".parse().expect("parses");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("parses");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        let one: Cidr = "192.0.2.7".parse().expect("parses");
        assert!(one.contains("192.0.2.7".parse().expect("ip")));
        assert!(!one.contains("192.0.2.8".parse().expect("ip")));
        let lo = Cidr::loopback();
        assert!(lo
            .iter()
            .any(|c| c.contains("::ffff:127.0.0.1".parse().expect("ip"))));
        assert!(lo.iter().any(|c| c.contains("::1".parse().expect("ip"))));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
