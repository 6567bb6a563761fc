//! The registrar over real sockets: every rule and status code of the generic
//! API, keep-alive, the 401 challenge, head limits, and TOTP authentication
//! with its guessing limits.

mod support;

use rendezvous::wire::read_response;
use std::io::Write;
use std::time::Duration;
use support::*;

#[test]
fn put_get_refresh_and_json_shapes() {
    let ts = TestServer::start(Opts::default());
    let base = format!("/?uuid={}", ts.uuid);
    let r = request(
        ts.registrar(),
        "PUT",
        &format!("{base}&response={}", token_at(0)),
        &[],
    );
    assert_eq!(r.status, 200);
    let v = json(&r);
    let cookie = v["result"]["cookie"].as_str().expect("cookie").to_string();
    assert!(cookie.starts_with('R'));
    assert_eq!(v["result"]["host"], "127.0.0.1");
    assert_eq!(v["result"]["port"], ts.rendezvous().port());
    assert_eq!(v["result"]["ttl"], 600);
    // GET: the I triple.
    let g = request(ts.registrar(), "GET", &base, &[]);
    assert_eq!(g.status, 200);
    let gi = json(&g);
    assert!(gi["result"]["cookie"]
        .as_str()
        .expect("cookie")
        .starts_with('I'));
    assert!(gi["result"].get("ttl").is_none());
    // Cookie refresh returns the same cookie.
    let f = request(
        ts.registrar(),
        "PUT",
        &format!("{base}&cookie={cookie}"),
        &[],
    );
    assert_eq!(f.status, 200);
    assert_eq!(json(&f)["result"]["cookie"], cookie.as_str());
    // A wrong or foreign cookie: 401.
    let bad = format!("R{}", uuid::Uuid::new_v4());
    let f = request(ts.registrar(), "PUT", &format!("{base}&cookie={bad}"), &[]);
    assert_eq!(f.status, 401);
    assert_eq!(json(&f)["error"]["permanent"], false);
    let i = gi["result"]["cookie"].as_str().expect("cookie");
    let f = request(ts.registrar(), "PUT", &format!("{base}&cookie={i}"), &[]);
    assert_eq!(f.status, 401, "an I cookie never refreshes");
    let f = request(
        ts.registrar(),
        "PUT",
        &format!("{base}&cookie=garbage"),
        &[],
    );
    assert_eq!(f.status, 401);
}

#[test]
fn method_follows_query_and_errors() {
    let ts = TestServer::start(Opts::default());
    let base = format!("/?uuid={}", ts.uuid);
    let r = request(
        ts.registrar(),
        "GET",
        &format!("{base}&response=123456"),
        &[],
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("PUT"));
    let r = request(ts.registrar(), "POST", &base, &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = request(ts.registrar(), "PUT", &base, &[]);
    assert_eq!(r.status, 405);
    let r = request(
        ts.registrar(),
        "PUT",
        &format!("{base}&response=1&cookie=R"),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(json(&r)["error"]["permanent"], true);
    let r = request(ts.registrar(), "GET", "/?uuid=not-a-uuid", &[]);
    assert_eq!(r.status, 400);
    let r = request(ts.registrar(), "GET", &base, &[]);
    assert_eq!(r.status, 404, "not registered yet");
    assert_eq!(r.header("connection"), Some("close"));
    let r = request(ts.registrar(), "GET", "/.well-known/rendezvous/health", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["result"]["status"], "ok");
    let r = request(ts.registrar(), "GET", "/.well-known/rendezvous/nope", &[]);
    assert_eq!(r.status, 404);
    // Bodies: too large refused (chunked ones: chunked_request_bodies_are_read).
    let r = request(ts.registrar(), "GET", &base, &["Content-Length: 100000"]);
    assert_eq!(r.status, 413);
}

#[test]
fn generic_disabled_answers_404_before_authentication() {
    let ts = TestServer::start(Opts {
        rendezvous: false,
        ..Opts::default()
    });
    let r = request(
        ts.registrar(),
        "PUT",
        &format!("/?uuid={}&response=000000", ts.uuid),
        &[],
    );
    assert_eq!(r.status, 404);
    assert!(json(&r)["error"]["diagnostic"]
        .as_str()
        .expect("text")
        .contains("not configured for the generic protocol"));
    // No failure was counted: the token still works on a server that has it.
    let stats = ts.server().shared().registry.stats();
    assert_eq!(stats.registrations, 0);
}

#[test]
fn keep_alive_after_200_and_challenge_close_after_errors() {
    let ts = TestServer::start(Opts::default());
    let mut s = connect(ts.registrar());
    send(&mut s, "GET", "/.well-known/rendezvous/health", &[]);
    assert_eq!(read_response(&mut s).expect("first").status, 200);
    send(&mut s, "GET", "/", &[]);
    let c = read_response(&mut s).expect("challenge");
    assert_eq!(c.status, 401);
    let challenges: Vec<_> = c
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.clone())
        .collect();
    assert!(
        challenges[0].starts_with("Digest realm=\"rendezvous\", qop=\"auth, auth-int\", nonce=\""),
        "{challenges:?}"
    );
    assert!(challenges[0].contains("opaque=\""));
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic realm=")),
        "{challenges:?}"
    );
    // Still open: a third request on the same connection.
    send(&mut s, "GET", "/.well-known/rendezvous/health", &[]);
    assert_eq!(read_response(&mut s).expect("third").status, 200);
    // Nonces are fresh.
    send(&mut s, "GET", "/x", &[]);
    let c2 = read_response(&mut s).expect("challenge 2");
    assert_ne!(c2.header("www-authenticate"), c.header("www-authenticate"));
    // An error closes.
    send(&mut s, "GET", "/?uuid=bad", &[]);
    assert_eq!(read_response(&mut s).expect("error").status, 400);
    send(&mut s, "GET", "/.well-known/rendezvous/health", &[]);
    assert!(read_response(&mut s).is_err(), "closed after an error");
}

#[test]
fn head_limits() {
    let ts = TestServer::start(Opts::default());
    let many: Vec<String> = (0..64).map(|i| format!("X-H{i}: v")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    // Host + 64 = 65 header lines.
    let r = request(ts.registrar(), "GET", "/", &refs);
    assert_eq!(r.status, 431);
    // Host + 63 is fine (the 401 challenge).
    let r = request(ts.registrar(), "GET", "/", &refs[..63]);
    assert_eq!(r.status, 401);
    let big = format!("X-Big: {}", "a".repeat(16 * 1024));
    let r = request(ts.registrar(), "GET", "/", &[&big]);
    assert_eq!(r.status, 431);
    // Exactly 16 KiB including the final blank line is served; one byte more is not.
    let exact = |len: usize| {
        let start = "GET /.well-known/rendezvous/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ";
        let end = "\r\nConnection: close\r\n\r\n";
        let head = format!("{start}{}{end}", "p".repeat(len - start.len() - end.len()));
        assert_eq!(head.len(), len);
        let mut s = connect(ts.registrar());
        s.write_all(head.as_bytes()).expect("send");
        read_response(&mut s).expect("response").status
    };
    assert_eq!(exact(16 * 1024), 200, "a head of exactly 16 KiB");
    assert_eq!(exact(16 * 1024 + 1), 431, "a head of 16 KiB + 1");
    let mut s = connect(ts.registrar());
    s.write_all(b"this is not http\r\n\r\n").expect("send");
    assert_eq!(read_response(&mut s).expect("response").status, 400);
}

#[test]
fn tokens_wrong_replayed_and_skewed() {
    avoid_step_edge();
    let ts = TestServer::start(Opts::default());
    let put = |tok: &str| ts.put_token(tok);
    let wrong = wrong_token();
    assert_eq!(put(wrong).status, 401);
    assert_eq!(put("12345").status, 401, "wrong length");
    assert_eq!(put("1234567").status, 401, "wrong length");
    // The previous step is accepted (skew), then the current one, then neither again.
    assert_eq!(put(&token_at(-1)).status, 200);
    assert_eq!(put(&token_at(0)).status, 200);
    assert_eq!(put(&token_at(0)).status, 401, "replay");
    assert_eq!(put(&token_at(-1)).status, 401, "older step");
    // An unknown UUID is 401 too.
    let r = request(
        ts.registrar(),
        "PUT",
        &format!("/?uuid={}&response=123456", uuid::Uuid::new_v4()),
        &[],
    );
    assert_eq!(r.status, 401);
}

#[test]
fn ten_failures_lock_the_address_with_retry_after() {
    avoid_step_edge();
    let ts = TestServer::start(Opts::default());
    let put = |tok: &str| ts.put_token(tok);
    let wrong = wrong_token();
    for _ in 0..10 {
        assert_eq!(put(wrong).status, 401);
    }
    let r = put(&token_at(0));
    assert_eq!(r.status, 429, "locked even with the right token");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&retry), "{retry}");
}

#[test]
fn plain_tcp_handshake_timeout_for_slow_heads() {
    let ts = TestServer::start(Opts {
        handshake_timeout: Duration::from_millis(600),
        ..Opts::default()
    });
    let mut s = connect(ts.registrar());
    let start = std::time::Instant::now();
    // Trickle a head that never ends.
    let mut closed = false;
    for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let r = read_response(&mut s);
    assert!(closed || r.map(|r| r.status == 408).unwrap_or(true));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn every_answer_carries_a_date() {
    let ts = TestServer::start(Opts::default());
    let now = rendezvous::totp::now();
    for (method, target) in [
        ("GET", "/.well-known/rendezvous/health".to_string()),
        ("GET", format!("/?uuid={}", ts.uuid)),
        ("PUT", format!("/?uuid={}&response=000000", ts.uuid)),
        ("GET", "/nowhere".to_string()),
    ] {
        let r = request(ts.registrar(), method, &target, &[]);
        let date = r
            .header("date")
            .unwrap_or_else(|| panic!("{method} {target}: {} without Date", r.status));
        let t = rendezvous::wire::parse_http_date(date).expect("IMF-fixdate");
        // Generous: the machine may be loaded; the format is what matters.
        assert!(t + 60 >= now && t <= now + 60, "{date} vs {now}");
    }
}

/// A cookie refresh after the cookie's TTL is refused (401), and a new token
/// registers again.
#[test]
fn an_expired_cookie_is_refused() {
    let ts = TestServer::start(Opts {
        cookie_ttl: Duration::from_secs(1),
        ..Opts::default()
    });
    let base = format!("/?uuid={}", ts.uuid);
    let r = ts.register();
    ts.clock.advance(Duration::from_millis(1500));
    let f = request(ts.registrar(), "PUT", &format!("{base}&cookie={r}"), &[]);
    assert_eq!(f.status, 401);
    assert_eq!(json(&f)["error"]["permanent"], false);
    let again = request(
        ts.registrar(),
        "PUT",
        &format!("{base}&response={}", token_at(1)),
        &[],
    );
    assert_eq!(again.status, 200, "a new token registers again");
}

/// The triple names `--public-host` and `--public-port` when given, else the
/// client's `Host` without its port and the rendezvous listener's port.
#[test]
fn triples_name_the_public_host_and_port() {
    let ts = TestServer::start(Opts {
        public_host: Some("rv.example.net".into()),
        public_port: Some(443),
        ..Opts::default()
    });
    let base = format!("/?uuid={}", ts.uuid);
    let put = request(
        ts.registrar(),
        "PUT",
        &format!("{base}&response={}", token_at(0)),
        &[],
    );
    assert_eq!(put.status, 200);
    let get = request(ts.registrar(), "GET", &base, &[]);
    for r in [&put, &get] {
        let v = json(r);
        assert_eq!(v["result"]["host"], "rv.example.net");
        assert_eq!(v["result"]["port"], 443);
    }

    let ts = TestServer::start(Opts::default());
    let base = format!("/?uuid={}", ts.uuid);
    ts.register();
    let mut s = connect(ts.registrar());
    s.write_all(
        format!("GET {base} HTTP/1.1\r\nHost: gw.example.org:8898\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("send");
    let r = read_response(&mut s).expect("response");
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["result"]["host"], "gw.example.org");
    assert_eq!(v["result"]["port"], ts.rendezvous().port());
}

/// The step and digits come from the user's line in the users file: a user
/// with 60 s and 8 digits registers with such a code, and a code of the
/// default length is refused for it (while the 30 s/6-digit user next to it
/// still registers with its own).
#[test]
fn step_and_digits_come_from_the_users_file() {
    use rendezvous::totp::{self, Params};
    let ts = TestServer::start(Opts::default());
    let long = uuid::Uuid::new_v4();
    let users = ts.dir.join("users");
    let mut text = std::fs::read_to_string(&users).expect("users");
    text.push_str(&format!("{long} {SECRET_B32} 60 8 long codes\n"));
    rendezvous::files::write_atomic(&users, text.as_bytes(), 0o600).expect("write");
    ts.server().reload();
    let params = Params {
        step: 60,
        digits: 8,
    };
    let put = |uuid: &uuid::Uuid, tok: &str| {
        request(
            ts.registrar(),
            "PUT",
            &format!("/?uuid={uuid}&response={tok}"),
            &[],
        )
        .status
    };
    let six = token_at(0);
    assert_eq!(put(&long, &six), 401, "a 6-digit code for an 8-digit user");
    let eight = totp::generate(&secret(), params, totp::now());
    assert_eq!(eight.len(), 8);
    assert_eq!(put(&long, &eight), 200, "its own 8-digit, 60 s code");
    assert_eq!(put(&ts.uuid, &six), 200, "the 30 s/6-digit user");
}

/// Send raw bytes on one connection and half-close it; the status of every
/// response that came back before the server closed. (Read to the end
/// first: several responses can arrive in one read, and `read_response`
/// reads one response, not a stream of them.)
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u16> {
    use std::io::Read;
    let mut s = connect(addr);
    s.write_all(bytes).expect("send");
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    text.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n') || text[..*i].ends_with('}'))
        .filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok())
        .collect()
}

/// Request framing per RFC 9112 §6.3: a second, different Content-Length
/// or a signed one is 400 and closes (the old code took the "body" as a
/// second request and routed it); Transfer-Encoding with Content-Length is
/// 400, an unknown coding 501.
#[test]
fn ambiguous_framing_is_refused_and_closes() {
    let ts = TestServer::start(Opts::default());
    let smuggled = format!("GET /?uuid={} HTTP/1.1\r\nHost: x\r\n\r\n", ts.uuid);
    let cases = [
        (
            format!(
                "GET /.well-known/rendezvous/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
            vec![400],
        ),
        (
            format!(
                "GET /.well-known/rendezvous/health HTTP/1.1\r\nHost: x\r\nContent-Length: +{}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
            vec![400],
        ),
        (
            "PUT /?uuid=x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_string(),
            vec![400],
        ),
        (
            "PUT /?uuid=x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".to_string(),
            vec![501],
        ),
    ];
    for (req, want) in cases {
        assert_eq!(
            raw_exchange(ts.registrar(), req.as_bytes()),
            want,
            "{req:?}"
        );
    }
}

/// Chunked request bodies on the registrar API are read (old hidden servers
/// send PUT with an empty chunked body) and the next request on the
/// connection is served; an over-long one is 413.
#[test]
fn chunked_request_bodies_are_read() {
    avoid_step_edge();
    let ts = TestServer::start(Opts::default());
    let put = format!(
        "PUT /?uuid={}&response={} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ts.uuid,
        token_at(0)
    );
    let then = "GET /.well-known/rendezvous/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nX-Trailer: 1\r\n\r\nGET /.well-known/rendezvous/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let got = raw_exchange(ts.registrar(), format!("{put}{then}").as_bytes());
    assert_eq!(got, vec![200, 200, 200]);
    let big = format!(
        "GET /.well-known/rendezvous/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        rendezvous::limits::MAX_BODY_BYTES + 1
    );
    assert_eq!(raw_exchange(ts.registrar(), big.as_bytes()), vec![413]);
    let bad = "GET /.well-known/rendezvous/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(raw_exchange(ts.registrar(), bad.as_bytes()), vec![400]);
}
