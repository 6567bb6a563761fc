//! Counters for `/.well-known/rendezvous/metrics` (Prometheus text format),
//! the `--metrics-from` address ranges allowed to read them on the
//! registrar, and the `--metrics-listen` listener that serves them alone.

use crate::server::accept::Accepted;
use crate::wire::Refusal;
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
    /// Tokens refused with 503: the shared store did not answer.
    pub auth_store_down: AtomicU64,
    /// Locks engaged on a (UUID, address) pair.
    pub lockouts_total: AtomicU64,
    /// Parked sockets whose first bytes were acknowledged (liveness proof).
    pub proofs_acked: AtomicU64,
    /// Parked sockets dropped because their first bytes were not acknowledged.
    pub proofs_failed: AtomicU64,
    /// Microseconds spent waiting for those acknowledgements, all together.
    pub proof_micros: AtomicU64,
    /// Mobile requests paired with a `CONNECT` parked at another node.
    pub peer_forwarded: AtomicU64,
    /// Parked `CONNECT`s handed to another node's mobile request.
    pub peer_served: AtomicU64,
    /// Link requests refused (bad tag, stale time, malformed).
    pub peer_refused: AtomicU64,
    /// Links to another node that failed (connect, TLS, no answer).
    pub peer_failed: AtomicU64,
}

impl Metrics {
    /// Add one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The metrics page as a response.
pub fn response(page: String) -> Response {
    let mut r = Response::result(serde_json::Value::Null);
    r.body = page.into_bytes();
    r.with_header("Content-Type", "text/plain; version=0.0.4")
}

/// Serve one connection of the `--metrics-listen` listener: one request
/// head by `deadline` (and under the head limits), `GET` of the metrics
/// path or `/metrics` answered with `page()`, anything else 404, then close.
/// It answers whoever can reach it: bind it where only the scraper can.
pub fn handle(acc: Accepted, deadline: std::time::Instant, page: impl FnOnce() -> String) {
    let Accepted {
        mut stream,
        id,
        pre_auth,
        slot: _slot,
        ..
    } = acc;
    let response = match HeadReader::new().read_head(&mut stream, deadline) {
        Ok(head) => match (head.method.as_str(), head.path()) {
            ("GET", "/.well-known/rendezvous/metrics" | "/metrics") => response(page()),
            _ => Refusal::NoSuchEndpoint.response(),
        },
        Err(e) => match e.refusal() {
            Some(refusal) => refusal.response(),
            None => return,
        },
    };
    drop(pre_auth);
    let mut response = response;
    response.close = true;
    if response.write_to(&mut stream).is_err() {
        log::debug!(target: "rendezvous::metrics", "conn={id} metrics response not sent");
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

/// The values the metrics page shows, read at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Live registrations.
    pub registrations: usize,
    /// Parked generic sockets.
    pub parked_generic: usize,
    /// Parked HTTP connections.
    pub parked_http: usize,
    /// Pairs relaying now.
    pub active_pairs: usize,
    /// Pairs started.
    pub pairs_total: u64,
    /// Bytes relayed by finished pairs, up and down.
    pub bytes_up: u64,
    /// See `bytes_up`.
    pub bytes_down: u64,
    /// Open sockets.
    pub open: usize,
    /// Refused at `--max-connections`.
    pub refused_cap: u64,
    /// Refused at the per-address cap.
    pub refused_per_addr: u64,
    /// Idle keep-alive connections reclaimed at the cap.
    pub reclaimed: u64,
}

/// One metric family: name, type, help, and its samples (labels, value).
type Family = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(String, String)>,
);

/// A sample without labels.
fn one(v: impl ToString) -> Vec<(String, String)> {
    vec![(String::new(), v.to_string())]
}

/// Samples labelled `key`.
fn by(key: &str, items: &[(&str, u64)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(label, v)| (format!("{{{key}=\"{label}\"}}"), v.to_string()))
        .collect()
}

impl Metrics {
    /// The page's families, from the counters and `s`: a table, kept one
    /// family to a row.
    #[rustfmt::skip]
    fn families(&self, s: &Snapshot) -> Vec<Family> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("rendezvous_registrations", "gauge", "Live registrations.", one(s.registrations)),
            ("rendezvous_parked", "gauge", "Sockets waiting for a mobile client.",
                by("proto", &[("generic", s.parked_generic as u64), ("http", s.parked_http as u64)])),
            ("rendezvous_active_pairs", "gauge", "Pairs relaying now.", one(s.active_pairs)),
            ("rendezvous_pairs_total", "counter", "Pairs started.", one(s.pairs_total)),
            ("rendezvous_relayed_bytes_total", "counter",
                "Bytes relayed by finished pairs, up (mobile to hidden) and down.",
                by("direction", &[("up", s.bytes_up), ("down", s.bytes_down)])),
            ("rendezvous_token_registrations_total", "counter",
                "Successful authentications with a one-time password.", one(get(&self.registrations_total))),
            ("rendezvous_auth_failures_total", "counter", "Failed authentications by reason.",
                by("reason", &[
                    ("bad-token", get(&self.auth_bad_token)),
                    ("replay", get(&self.auth_replay)),
                    ("unknown-uuid", get(&self.auth_unknown_uuid)),
                    ("bad-cookie", get(&self.auth_bad_cookie)),
                    ("locked-out", get(&self.auth_locked_out)),
                    ("store-unavailable", get(&self.auth_store_down)),
                ])),
            ("rendezvous_lockouts_total", "counter", "Locks engaged on a (UUID, address) pair.",
                one(get(&self.lockouts_total))),
            ("rendezvous_liveness_proofs_total", "counter",
                "Parked sockets proven alive before pairing, by result: acked, or dropped unacknowledged.",
                by("result", &[("acked", get(&self.proofs_acked)), ("dropped", get(&self.proofs_failed))])),
            ("rendezvous_liveness_proof_seconds_total", "counter",
                "Time spent waiting for the acknowledgements of liveness proofs.",
                one(format!("{:.6}", get(&self.proof_micros) as f64 / 1e6))),
            ("rendezvous_open_connections", "gauge", "Open sockets, parked ones included.", one(s.open)),
            ("rendezvous_refused_connections_total", "counter", "Connections refused at accept, by limit.",
                by("limit", &[("max-connections", s.refused_cap), ("per-address", s.refused_per_addr)])),
            ("rendezvous_idle_reclaimed_total", "counter",
                "Idle keep-alive registrar connections closed to make room at --max-connections.",
                one(s.reclaimed)),
            ("rendezvous_peer_links_total", "counter",
                "Links between nodes (HTTP-specific protocol), by result: requests forwarded and paired, parked CONNECTs served to another node, requests refused, links failed.",
                by("result", &[
                    ("forwarded", get(&self.peer_forwarded)),
                    ("served", get(&self.peer_served)),
                    ("refused", get(&self.peer_refused)),
                    ("failed", get(&self.peer_failed)),
                ])),
        ]
    }

    /// The metrics page (Prometheus text format) of these counters and `s`;
    /// with several nodes every sample carries the label `node` (node ids
    /// are letters, digits, `.`, `_` and `-`: nothing to escape).
    pub fn render(&self, s: &Snapshot, node: Option<&str>) -> String {
        let mut o = String::new();
        for (name, kind, help, samples) in self.families(s) {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let labels = match (node, labels.strip_prefix('{')) {
                    (None, _) => labels,
                    (Some(n), None) => format!("{{node=\"{n}\"}}"),
                    (Some(n), Some(rest)) => format!("{{node=\"{n}\",{rest}"),
                };
                let _ = writeln!(o, "{name}{labels} {value}");
            }
        }
        o
    }
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
