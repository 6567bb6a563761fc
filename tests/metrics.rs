//! `/.well-known/rendezvous/metrics`: scraped after real exchanges, every
//! line parsed as Prometheus text, the figures checked; `--metrics-from`
//! decides who may read it.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use support::*;

/// Parse the exposition format strictly: HELP and TYPE before each family's
/// samples, every sample `name{labels} value` with a declared name.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, what) = (parts.next(), parts.next(), parts.next());
            match (kind, name, what) {
                (Some("HELP"), Some(_), Some(_)) => {}
                (Some("TYPE"), Some(n), Some(t)) => {
                    assert!(["counter", "gauge"].contains(&t), "{line}");
                    types.insert(n.to_string(), t.to_string());
                }
                _ => panic!("bad comment line {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let name = series.split('{').next().unwrap_or("");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line:?}"
        );
        assert!(types.contains_key(name), "sample before its TYPE: {line:?}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
                for kv in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "{line:?}"
                    );
                }
            }
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        samples.insert(series.to_string(), v);
    }
    samples
}

#[test]
fn metrics_after_real_exchanges() {
    avoid_step_edge();
    let ts = TestServer::start(Opts::default());
    // A pair that moves 5 bytes up and 3 down.
    let r = ts.register();
    let i = ts.lookup();
    let mut resp = park(ts.rendezvous(), &r);
    let (mut init, st) = rv_line(ts.rendezvous(), &format!("{i}\n"));
    assert_eq!(st, "+OK");
    assert_eq!(read_line(&mut resp), "+OK");
    init.write_all(b"hello").expect("up");
    let mut b = [0u8; 5];
    resp.read_exact(&mut b).expect("read");
    resp.write_all(b"abc").expect("down");
    drop(resp);
    let mut rest = Vec::new();
    init.read_to_end(&mut rest).expect("read");
    drop(init);
    // One parked socket left, and some failures.
    let _parked = park(ts.rendezvous(), &ts.extra_r_cookie());
    wait_until("parked and pair done", || {
        let s = ts.server().shared();
        s.registry.stats().parked_generic == 1 && s.pairs.active() == 0
    });
    let wrong = wrong_token();
    let put = |q: String| request(ts.registrar(), "PUT", &q, &[]).status;
    assert_eq!(put(format!("/?uuid={}&response={wrong}", ts.uuid)), 401);
    assert_eq!(
        put(format!("/?uuid={}&response={}", ts.uuid, token_at(0))),
        401,
        "replay"
    );
    assert_eq!(
        put(format!(
            "/?uuid={}&cookie=R{}",
            ts.uuid,
            uuid::Uuid::new_v4()
        )),
        401
    );

    let resp = request(
        ts.registrar(),
        "GET",
        "/.well-known/rendezvous/metrics",
        &[],
    );
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain"));
    let text = String::from_utf8(resp.body.clone()).expect("utf-8");
    let m = parse(&text);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
    assert_eq!(get("rendezvous_registrations"), 1.0);
    assert_eq!(get("rendezvous_parked{proto=\"generic\"}"), 1.0);
    assert_eq!(get("rendezvous_parked{proto=\"http\"}"), 0.0);
    assert_eq!(get("rendezvous_active_pairs"), 0.0);
    assert_eq!(get("rendezvous_pairs_total"), 1.0);
    assert_eq!(get("rendezvous_relayed_bytes_total{direction=\"up\"}"), 5.0);
    assert_eq!(
        get("rendezvous_relayed_bytes_total{direction=\"down\"}"),
        3.0
    );
    assert_eq!(get("rendezvous_token_registrations_total"), 1.0);
    assert_eq!(
        get("rendezvous_auth_failures_total{reason=\"bad-token\"}"),
        1.0
    );
    assert_eq!(
        get("rendezvous_auth_failures_total{reason=\"replay\"}"),
        1.0
    );
    assert_eq!(
        get("rendezvous_auth_failures_total{reason=\"bad-cookie\"}"),
        1.0
    );
    assert_eq!(get("rendezvous_lockouts_total"), 0.0);
    assert!(get("rendezvous_open_connections") >= 2.0);
    assert_eq!(
        get("rendezvous_refused_connections_total{limit=\"max-connections\"}"),
        0.0
    );
}

#[test]
fn metrics_only_from_allowed_ranges() {
    let path = "/.well-known/rendezvous/metrics";
    // The tests connect from 127.0.0.1 only: allowed by a range holding it,
    // refused (the path does not exist) by one that does not.
    let other = TestServer::start(Opts {
        metrics_from: Some(vec!["127.0.0.2/32".parse().expect("cidr")]),
        ..Opts::default()
    });
    assert_eq!(request(other.registrar(), "GET", path, &[]).status, 404);
    let exact = TestServer::start(Opts {
        metrics_from: Some(vec![
            "10.0.0.0/8".parse().expect("cidr"),
            "127.0.0.1/32".parse().expect("cidr"),
        ]),
        ..Opts::default()
    });
    assert_eq!(request(exact.registrar(), "GET", path, &[]).status, 200);
    // The default is loopback only.
    let def = TestServer::start(Opts::default());
    assert_eq!(request(def.registrar(), "GET", path, &[]).status, 200);
}

/// A connection refused at `--max-connections` is counted.
#[test]
fn refused_connections_are_counted() {
    let ts = TestServer::start(Opts {
        max_connections: 3,
        handshake_timeout: std::time::Duration::from_secs(30),
        ..Opts::default()
    });
    let held: Vec<_> = (0..3).map(|_| connect(ts.registrar())).collect();
    wait_until("all three open", || ts.server().shared().conns.open() == 3);
    let mut extra = connect(ts.registrar());
    let mut b = [0u8; 1];
    assert_eq!(extra.read(&mut b).unwrap_or(0), 0, "refused at the cap");
    drop(held);
    wait_until("slots freed", || ts.server().shared().conns.open() == 0);
    let r = request(
        ts.registrar(),
        "GET",
        "/.well-known/rendezvous/metrics",
        &[],
    );
    assert_eq!(r.status, 200);
    let m = parse(&String::from_utf8(r.body.clone()).expect("utf-8"));
    assert_eq!(
        m.get("rendezvous_refused_connections_total{limit=\"max-connections\"}"),
        Some(&1.0)
    );
    assert_eq!(
        m.get("rendezvous_refused_connections_total{limit=\"per-address\"}"),
        Some(&0.0)
    );
}

/// `--metrics-listen`: the metrics on a plain-HTTP listener of their own
/// (behind a terminator on the same host every registrar client comes from
/// 127.0.0.1, which the default `--metrics-from` lets in); the registrar's
/// path then answers 404 to everybody.
#[test]
fn metrics_on_their_own_listener() {
    let ts = TestServer::start(Opts {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..Opts::default()
    });
    let addr = ts.server().metrics_addr().expect("metrics listener");
    for path in ["/.well-known/rendezvous/metrics", "/metrics"] {
        let r = request(addr, "GET", path, &[]);
        assert_eq!(r.status, 200, "{path}");
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.contains("rendezvous_open_connections "), "{text}");
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert_eq!(request(addr, "GET", "/", &[]).status, 404);
    let r = request(
        ts.registrar(),
        "GET",
        "/.well-known/rendezvous/metrics",
        &[],
    );
    assert_eq!(r.status, 404, "not on the registrar any more");
}
