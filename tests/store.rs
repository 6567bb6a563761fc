//! The store's contract, held against both stores with the same cases: the
//! embedded one, and Redis (a real `redis-server` this file starts on a
//! private Unix socket). Time is a test clock both read, so lock periods are
//! tested without sleeping.

mod support;

use rendezvous::clock::ManualClock;
use rendezvous::error::AuthFailure;
use rendezvous::limits::{LOCK_AFTER_FAILURES, LOCK_BASE, UUID_FAILURES_PER_STEP};
use rendezvous::server::security::SecurityState;
use rendezvous::server::store::ops::{Failed, Throttled, TokenAttempt, Verdict};
use rendezvous::server::store::redis::RedisStore;
use rendezvous::server::store::{Store, StoreArgs};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use support::RedisServer;
use uuid::Uuid;

const STEP: Duration = Duration::from_secs(30);

fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

/// A store under test, with its clock (and its redis-server, kept alive).
struct Subject {
    name: &'static str,
    store: Store,
    clock: ManualClock,
    _redis: Option<RedisServer>,
}

impl Subject {
    fn try_token(&self, u: Uuid, from: IpAddr, step: u64, matched: &[u64]) -> Verdict {
        let a = TokenAttempt {
            uuid: u,
            ip: from,
            step,
            to_next_step: STEP,
            matched: matched.to_vec(),
        };
        self.store
            .token(&a)
            .unwrap_or_else(|_| panic!("{}: store unavailable", self.name))
    }

    /// A wrong token; the lock it engaged, if any.
    fn fail(&self, u: Uuid, from: IpAddr, step: u64) -> Option<Duration> {
        match self.try_token(u, from, step, &[]) {
            Verdict::Failed(f) => f.locked,
            other => panic!("{}: a wrong token gave {other:?}", self.name),
        }
    }
}

/// Run `case` against each store, fresh: embedded, Redis and Valkey.
fn both(case: impl Fn(&Subject)) {
    let clock = ManualClock::new();
    case(&Subject {
        name: "embedded",
        store: Store::Embedded(Box::new(
            SecurityState::new().with_clock(Arc::new(clock.clone())),
        )),
        clock,
        _redis: None,
    });
    let redis = RedisServer::start();
    let clock = ManualClock::new();
    let store = RedisStore::connect(&StoreArgs::new(redis.url()), Arc::new(clock.clone()))
        .expect("connect");
    case(&Subject {
        name: "redis",
        store: Store::Redis(Arc::new(store)),
        clock,
        _redis: Some(redis),
    });
    let valkey = RedisServer::start_valkey();
    let clock = ManualClock::new();
    let store = RedisStore::connect(&StoreArgs::new(valkey.url()), Arc::new(clock.clone()))
        .expect("connect to valkey");
    case(&Subject {
        name: "valkey",
        store: Store::Redis(Arc::new(store)),
        clock,
        _redis: Some(valkey),
    });
}

#[test]
fn a_token_is_accepted_once() {
    both(|s| {
        let u = Uuid::new_v4();
        assert_eq!(
            s.try_token(u, ip(1), 7, &[7]),
            Verdict::Accepted(7),
            "{}",
            s.name
        );
        assert_eq!(
            s.try_token(u, ip(1), 7, &[7]),
            Verdict::Failed(Failed {
                why: AuthFailure::Replay,
                locked: None
            }),
            "{}",
            s.name
        );
        assert_eq!(
            s.try_token(u, ip(2), 8, &[8]),
            Verdict::Accepted(8),
            "{}",
            s.name
        );
        assert!(
            matches!(s.try_token(u, ip(1), 8, &[7]), Verdict::Failed(f) if f.why == AuthFailure::Replay),
            "{}: a step below the floor is a replay",
            s.name
        );
        // Another UUID has its own floor.
        assert_eq!(
            s.try_token(Uuid::new_v4(), ip(1), 7, &[7]),
            Verdict::Accepted(7),
            "{}",
            s.name
        );
    });
}

#[test]
fn ten_failures_lock_the_pair_only_and_locks_double() {
    both(|s| {
        let u = Uuid::new_v4();
        let mut periods = Vec::new();
        for round in 0..3 {
            for i in 0..LOCK_AFTER_FAILURES {
                // A new step each round: the per-UUID cap is not the subject.
                let locked = s.fail(u, ip(1), 100 + round);
                if i + 1 < LOCK_AFTER_FAILURES {
                    assert_eq!(locked, None, "{}: failure {i}", s.name);
                } else if let Some(p) = locked {
                    periods.push(p);
                    assert!(
                        matches!(
                            s.try_token(u, ip(1), 100 + round, &[100 + round]),
                            Verdict::Throttled(Throttled::PairLocked(_))
                        ),
                        "{}: locked even for the right token",
                        s.name
                    );
                    assert!(
                        matches!(s.try_token(u, ip(2), 100 + round, &[]), Verdict::Failed(_)),
                        "{}: another address is not locked",
                        s.name
                    );
                    s.clock.advance(p);
                }
            }
        }
        assert_eq!(
            periods,
            vec![LOCK_BASE, LOCK_BASE * 2, LOCK_BASE * 4],
            "{}",
            s.name
        );
    });
}

/// A cookie success from the locked address changes nothing but the last
/// good address: the lock holds until it ends, and the next one doubles.
#[test]
fn a_cookie_success_never_shortens_or_forgets_a_lock() {
    both(|s| {
        let u = Uuid::new_v4();
        for _ in 0..LOCK_AFTER_FAILURES {
            s.fail(u, ip(1), 1);
        }
        for _ in 0..5 {
            s.store.cookie_success(u, ip(1)).expect("cookie success");
        }
        s.clock.advance(LOCK_BASE - Duration::from_millis(10));
        assert!(
            matches!(
                s.try_token(u, ip(1), 3, &[3]),
                Verdict::Throttled(Throttled::PairLocked(_))
            ),
            "{}: still locked after cookie successes",
            s.name
        );
        s.clock.advance(Duration::from_millis(10));
        let mut locked = None;
        for _ in 0..LOCK_AFTER_FAILURES {
            s.store.cookie_success(u, ip(1)).expect("cookie success");
            locked = s.fail(u, ip(1), 4);
        }
        assert_eq!(
            locked,
            Some(LOCK_BASE * 2),
            "{}: the next lock doubles",
            s.name
        );
    });
}

/// A token success clears the pair's failure count, not its lock history.
#[test]
fn a_token_success_clears_failures_not_history() {
    both(|s| {
        let u = Uuid::new_v4();
        for _ in 0..LOCK_AFTER_FAILURES {
            s.fail(u, ip(1), 1);
        }
        s.clock.advance(LOCK_BASE);
        for _ in 0..LOCK_AFTER_FAILURES - 1 {
            s.fail(u, ip(1), 2);
        }
        assert_eq!(
            s.try_token(u, ip(1), 2, &[2]),
            Verdict::Accepted(2),
            "{}",
            s.name
        );
        for _ in 0..LOCK_AFTER_FAILURES - 1 {
            assert_eq!(s.fail(u, ip(1), 3), None, "{}: count restarted", s.name);
        }
        assert_eq!(s.fail(u, ip(1), 3), Some(LOCK_BASE * 2), "{}", s.name);
    });
}

#[test]
fn the_uuid_cap_spares_the_last_good_address() {
    both(|s| {
        let u = Uuid::new_v4();
        s.store.cookie_success(u, ip(9)).expect("cookie success");
        for i in 0..UUID_FAILURES_PER_STEP {
            s.fail(u, ip(10 + (i % 5) as u8), 7);
        }
        assert_eq!(
            s.try_token(u, ip(3), 7, &[7]),
            Verdict::Throttled(Throttled::UuidCapped(STEP)),
            "{}",
            s.name
        );
        assert_eq!(
            s.try_token(u, ip(9), 7, &[7]),
            Verdict::Accepted(7),
            "{}: the last good address still tries",
            s.name
        );
        assert_eq!(
            s.try_token(u, ip(3), 8, &[8]),
            Verdict::Accepted(8),
            "{}: the next step opens again",
            s.name
        );
    });
}

/// Attempts at once count as if one after another: of 40 wrong tokens
/// from one address at once, exactly 10 are judged; of 8 copies of one
/// right token, exactly one is accepted.
#[test]
fn attempts_at_once_are_judged_one_after_another() {
    both(|s| {
        let u = Uuid::new_v4();
        let verdicts: Vec<Verdict> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..40)
                .map(|_| sc.spawn(|| s.try_token(u, ip(1), 5, &[])))
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let judged = verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Failed(_)))
            .count();
        assert_eq!(
            judged, LOCK_AFTER_FAILURES as usize,
            "{}: {verdicts:?}",
            s.name
        );
        let v = Uuid::new_v4();
        let accepted = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| sc.spawn(|| s.try_token(v, ip(2), 5, &[5])))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("thread"))
                .filter(|v| matches!(v, Verdict::Accepted(_)))
                .count()
        });
        assert_eq!(accepted, 1, "{}", s.name);
    });
}

// ---- servers on the store ---------------------------------------------------

use support::{avoid_step_edge, json, request, token_at, wait_until, Opts, TestServer};

fn on(redis: &RedisServer, uuid: Option<Uuid>) -> TestServer {
    TestServer::start(Opts {
        store: Some(redis.url()),
        uuid,
        ..Opts::default()
    })
}

/// The replay floor is the store's: one token sent to two servers at once
/// (nodes 2 and 3 of three) is accepted by one of them only. (With the
/// embedded store each server would accept it.)
#[test]
fn one_token_sent_to_two_servers_at_once_is_accepted_once() {
    let redis = RedisServer::start();
    let first = on(&redis, None);
    let a = on(&redis, Some(first.uuid));
    let b = on(&redis, Some(first.uuid));
    avoid_step_edge();
    // The three steps the window accepts, in order (each raises the floor).
    for round in -1..=1 {
        let tok = token_at(round);
        let barrier = std::sync::Barrier::new(2);
        let mut statuses: Vec<u16> = std::thread::scope(|sc| {
            let hs: Vec<_> = [&a, &b]
                .into_iter()
                .map(|ts| {
                    let (barrier, tok) = (&barrier, &tok);
                    sc.spawn(move || {
                        barrier.wait();
                        ts.put_token(tok).status
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        statuses.sort_unstable();
        assert_eq!(statuses, vec![200, 401], "round {round}");
    }
}

/// Guesses spread over three servers count together: ten wrong tokens,
/// spread over them, lock the address out at all three.
#[test]
fn failures_at_three_servers_count_together() {
    let redis = RedisServer::start();
    let a = on(&redis, None);
    let b = on(&redis, Some(a.uuid));
    let c = on(&redis, Some(a.uuid));
    let wrong = support::wrong_token();
    for i in 0..10 {
        let ts = [&a, &b, &c][i % 3];
        assert_eq!(ts.put_token(wrong).status, 401, "failure {i}");
    }
    for ts in [&a, &b, &c] {
        let r = ts.put_token(&token_at(0));
        assert_eq!(r.status, 429);
        assert!(r.header("retry-after").is_some());
    }
}

/// No store, no token: 503 with Retry-After while it is down (cookies
/// still work), and service back by itself once it returns.
#[test]
fn without_its_store_tokens_get_503_until_it_is_back() {
    let mut redis = RedisServer::start();
    let ts = on(&redis, None);
    avoid_step_edge();
    let cookie = ts.register();
    redis.kill();
    let r = ts.put_token(&token_at(1));
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(String::from_utf8_lossy(&r.body).contains("state store unavailable"));
    let refresh = request(
        ts.registrar(),
        "PUT",
        &format!("/?uuid={}&cookie={cookie}", ts.uuid),
        &[],
    );
    assert_eq!(refresh.status, 200, "a cookie needs no store");
    assert_eq!(json(&refresh)["result"]["cookie"], cookie.as_str());
    redis.restart();
    let mut seen = Vec::new();
    wait_until("a token accepted again", || {
        let s = ts.put_token(&token_at(1)).status;
        seen.push(s);
        s == 200
    });
    assert!(
        seen.iter().all(|s| *s == 503 || *s == 200),
        "only 503 before the store was back: {seen:?}"
    );
}

// ---- users in the store -----------------------------------------------------

/// `user add --store`, with its provisioning file parsed: (UUID, secret).
fn add_user(redis: &RedisServer, state: &std::path::Path) -> (Uuid, rendezvous::secret::Secret) {
    let o = support::run(
        support::rendezvousd()
            .args([
                "user",
                "add",
                "--store",
                &redis.url(),
                "--server",
                "http://127.0.0.1:9",
            ])
            .arg("--state-dir")
            .arg(state),
    );
    assert!(o.status.success(), "user add: {}", support::stderr(&o));
    let p =
        rendezvous::provision::Provision::parse(&support::stdout(&o), std::path::Path::new("-"))
            .expect("provisioning file");
    (p.uuid.expect("uuid"), p.secret.expect("secret"))
}

fn token_for(secret: &rendezvous::secret::Secret, offset: i64) -> String {
    let now = rendezvous::totp::now() as i64 + offset * 30;
    rendezvous::totp::generate(secret, rendezvous::totp::Params::default(), now as u64)
}

fn put(ts: &TestServer, uuid: Uuid, tok: &str) -> u16 {
    request(
        ts.registrar(),
        "PUT",
        &format!("/?uuid={uuid}&response={tok}"),
        &[],
    )
    .status
}

/// With --store the users file is not read; a user added with `user add
/// --store` registers on a running server within 5 s, `user list --store`
/// shows it without its secret, and once removed it is refused.
#[test]
fn users_added_to_the_store_register_within_seconds() {
    let redis = RedisServer::start();
    let ts = on(&redis, None);
    avoid_step_edge();
    // A user only in the users file is unknown, even after a reload.
    let file_only = Uuid::new_v4();
    let users = ts.dir.join("users");
    let mut text = std::fs::read_to_string(&users).expect("users file");
    text.push_str(&format!(
        "{file_only} {} 30 6 file-only\n",
        support::SECRET_B32
    ));
    std::fs::write(&users, text).expect("write users");
    ts.server().reload();
    assert_eq!(
        put(&ts, file_only, &token_at(0)),
        401,
        "the users file is not read"
    );
    let state = support::TempDir::new("admin");
    let (uuid, secret) = add_user(&redis, state.path());
    let added = std::time::Instant::now();
    let tok = token_for(&secret, 0);
    let mut cookie = String::new();
    wait_until("the new user to register", || {
        let q = format!("/?uuid={uuid}&response={tok}");
        let r = request(ts.registrar(), "PUT", &q, &[]);
        if r.status == 200 {
            cookie = json(&r)["result"]["cookie"]
                .as_str()
                .unwrap_or("")
                .to_string();
        }
        r.status == 200
    });
    assert!(
        added.elapsed() < Duration::from_secs(5),
        "took {:?}",
        added.elapsed()
    );
    let list = support::run(support::rendezvousd().args(["user", "list", "--store", &redis.url()]));
    let text = support::stdout(&list);
    assert!(text.contains(&uuid.hyphenated().to_string()), "{text}");
    assert!(
        !text.contains(&secret.to_base32()),
        "user list shows no secret"
    );
    let o = support::run(support::rendezvousd().args([
        "user",
        "remove",
        "--store",
        &redis.url(),
        &uuid.hyphenated().to_string(),
    ]));
    assert!(o.status.success(), "{}", support::stderr(&o));
    let removed = std::time::Instant::now();
    wait_until("the removal to reach the server", || {
        ts.server().shared().users().get(&uuid).is_none()
    });
    assert!(
        removed.elapsed() < Duration::from_secs(5),
        "took {:?}",
        removed.elapsed()
    );
    assert_eq!(
        put(&ts, uuid, &token_for(&secret, 1)),
        401,
        "a removed user is refused"
    );
    // Its cookie is gone from the store too: no server learns it back.
    let refresh = request(
        ts.registrar(),
        "PUT",
        &format!("/?uuid={uuid}&cookie={cookie}"),
        &[],
    );
    assert_eq!(refresh.status, 401, "a removed user's cookie is refused");
    let again = support::run(support::rendezvousd().args([
        "user",
        "remove",
        "--store",
        &redis.url(),
        &uuid.hyphenated().to_string(),
    ]));
    assert_eq!(again.status.code(), Some(1));
    assert!(support::stderr(&again).contains("is not in the store"));
}

// ---- registrations in the store ---------------------------------------------

fn lookup(ts: &TestServer) -> String {
    let r = request(ts.registrar(), "GET", &format!("/?uuid={}", ts.uuid), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    json(&r)["result"]["cookie"]
        .as_str()
        .expect("cookie")
        .to_string()
}

/// Park with `r` and pair with `i` at `ts`: both sides get +OK.
fn pair_at(ts: &TestServer, r: &str, i: &str) {
    let mut responder = support::park(ts.rendezvous(), r);
    let (_initiator, status) = support::rv_line(ts.rendezvous(), &format!("{i}\n"));
    assert_eq!(status, "+OK", "initiator");
    assert_eq!(support::read_line(&mut responder), "+OK", "responder");
}

/// A hidden server registers at one server and parks at another: the `R`
/// cookie and the UUID's one `I` cookie are the store's.
#[test]
fn a_registration_made_at_one_server_is_known_at_another() {
    let redis = RedisServer::start();
    let a = on(&redis, None);
    let b = on(&redis, Some(a.uuid));
    avoid_step_edge();
    let r = a.register();
    let i = lookup(&a);
    assert_eq!(
        lookup(&b),
        i,
        "one I cookie for the UUID, whichever server answers"
    );
    let refresh = request(
        b.registrar(),
        "PUT",
        &format!("/?uuid={}&cookie={r}", b.uuid),
        &[],
    );
    assert_eq!(refresh.status, 200, "B renews a cookie A issued");
    pair_at(&b, &r, &i);
    // A registration made at B joins the same one: same I cookie.
    // (The floor is shared too: the next step's token.)
    let second = b.put_token(&token_at(1));
    assert_eq!(second.status, 200);
    assert_ne!(json(&second)["result"]["cookie"], r.as_str());
    assert_eq!(lookup(&b), i);
    assert_eq!(lookup(&a), i);
}

/// Sockets parked here keep pairing while the store is down, and a cookie
/// this server knows still parks until the node's lease lapses; then new
/// parks are refused (the hidden server goes to a live node), and what is
/// parked still pairs.
#[test]
fn parked_sockets_keep_pairing_while_the_store_is_down() {
    let mut redis = RedisServer::start();
    let ts = TestServer::start(Opts {
        store: Some(redis.url()),
        node_ttl: Duration::from_secs(3),
        ..Opts::default()
    });
    avoid_step_edge();
    let health = request(ts.registrar(), "GET", "/.well-known/rendezvous/health", &[]);
    assert_eq!(health.status, 200);
    assert_eq!(json(&health)["result"]["lease"], true);
    assert_eq!(json(&health)["result"]["store"], true);
    let r = ts.register();
    let i = lookup(&ts);
    // One after the other: the pool pairs the oldest first.
    let mut first = support::park(ts.rendezvous(), &r);
    wait_until("the first socket parked", || {
        ts.server().shared().registry.stats().parked_generic == 1
    });
    let mut second = support::park(ts.rendezvous(), &r);
    wait_until("the second socket parked", || {
        ts.server().shared().registry.stats().parked_generic == 2
    });
    redis.kill();
    let (_initiator, status) = support::rv_line(ts.rendezvous(), &format!("{i}\n"));
    assert_eq!(status, "+OK");
    assert_eq!(support::read_line(&mut first), "+OK");

    let node = ts.server().shared().node.clone().expect("a node");
    wait_until("the lease to go", || !node.leased());
    let health = request(ts.registrar(), "GET", "/.well-known/rendezvous/health", &[]);
    assert_eq!(
        health.status, 503,
        "a node without its lease is not healthy"
    );
    assert_eq!(json(&health)["result"]["lease"], false);
    assert_eq!(
        json(&health)["result"]["store"],
        false,
        "the store did not answer"
    );
    let (_refused, status) = support::rv_line(ts.rendezvous(), &format!("{r}\n"));
    assert_eq!(status, "-ERR not registered", "no new park without a lease");
    let (_initiator, status) = support::rv_line(ts.rendezvous(), &format!("{i}\n"));
    assert_eq!(status, "+OK");
    assert_eq!(support::read_line(&mut second), "+OK");
}

// ---- round trips ------------------------------------------------------------

/// The store's `MONITOR` feed: every command a client sent, and the ones
/// scripts ran (marked `[N lua]`).
struct Monitor {
    feed: std::io::BufReader<std::os::unix::net::UnixStream>,
    socket: std::path::PathBuf,
    marks: u32,
}

impl Monitor {
    fn start(redis: &RedisServer) -> Monitor {
        use std::io::{BufRead, Write};
        let socket = redis.socket();
        let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("connect redis");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"MONITOR\r\n").expect("monitor");
        let mut feed = std::io::BufReader::new(s);
        let mut ok = String::new();
        feed.read_line(&mut ok).expect("monitor reply");
        assert_eq!(ok.trim_end(), "+OK");
        Monitor {
            feed,
            socket,
            marks: 0,
        }
    }

    /// The commands clients sent since the last call (script commands not
    /// counted): each a store round trip. A marker sent after the step
    /// bounds the read, so nothing depends on timing.
    fn round_trips(&mut self) -> Vec<String> {
        use std::io::BufRead;
        self.marks += 1;
        let mark = format!("mark-{}", self.marks);
        support::redis_command(&self.socket, &["ECHO", &mark]);
        let mut sent = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.feed.read_line(&mut line).expect("monitor feed");
            assert!(n > 0, "monitor closed");
            if line.contains(&format!("\"{mark}\"")) {
                return sent;
            }
            if line.contains(" lua] ") || line.contains("\"ECHO\" \"mark-") {
                continue;
            }
            // Shown only when the test fails: which client sent what (a
            // step once counted two EVALSHA under the full suite's load).
            eprintln!("monitor: {}", line.trim_end());
            // `+TIME [DB ADDR] "COMMAND" ...`: keep the command's name.
            let name = line.split('"').nth(1).unwrap_or("?").to_uppercase();
            sent.push(name);
        }
    }
}

/// Round trips without a script's first load (`EVALSHA` answered
/// `NOSCRIPT`, then `SCRIPT LOAD` and `EVALSHA` again): one round trip of
/// the protocol, paid once per script after the store starts.
fn without_loads(mut trips: Vec<String>) -> Vec<String> {
    while let Some(at) = trips.iter().position(|c| c == "SCRIPT") {
        trips.remove(at);
        if at > 0 && trips[at - 1] == "EVALSHA" {
            trips.remove(at - 1);
        }
    }
    trips
}

/// Each protocol step costs at most one store round trip, and a pairing
/// with a cached triple none (the scripts are loaded first: the first use
/// of a script after the store starts costs a `NOSCRIPT` and a load).
#[test]
fn each_protocol_step_costs_at_most_one_store_round_trip() {
    let redis = RedisServer::start();
    // Heartbeats (a third of the node TTL apart) stay out of the count.
    let node = |uuid| {
        TestServer::start(Opts {
            store: Some(redis.url()),
            uuid,
            node_ttl: Duration::from_secs(300),
            ..Opts::default()
        })
    };
    let a = node(None);
    let b = node(Some(a.uuid));
    let c = node(Some(a.uuid));
    avoid_step_edge();
    let warm = a.register();
    let refresh = |ts: &TestServer, r: &str| {
        let q = format!("/?uuid={}&cookie={r}", ts.uuid);
        assert_eq!(request(ts.registrar(), "PUT", &q, &[]).status, 200);
    };
    refresh(&a, &warm);
    lookup(&b); // the node-locating script
    let mut monitor = Monitor::start(&redis);

    let second = b.put_token(&token_at(1));
    assert_eq!(second.status, 200);
    let r = json(&second)["result"]["cookie"]
        .as_str()
        .expect("cookie")
        .to_string();
    assert_eq!(monitor.round_trips(), ["EVALSHA"], "token registration");

    // The refresh records the last good address in the same round trip.
    let sec = format!("rdv:{{{}}}:sec", a.uuid);
    redis.command(&["HDEL", &sec, "good"]);
    assert_eq!(monitor.round_trips(), ["HDEL"]);
    refresh(&a, &r);
    assert_eq!(monitor.round_trips(), ["EVALSHA"], "cookie refresh");
    assert!(redis
        .command(&["HGET", &sec, "good"])
        .contains("\r\n127.0.0.1\r\n"));
    assert_eq!(monitor.round_trips(), ["HGET"]);

    let mut responder = support::park(a.rendezvous(), &r);
    wait_until("the socket parked", || {
        a.server().shared().registry.stats().parked_generic == 1
    });
    // The park itself asks nothing (R was renewed in the store within a
    // quarter of its life); a pool newly held wakes the heartbeat, which
    // says so at once, on its own thread.
    let held = format!("rdv:{{{}}}:held:g", a.uuid);
    wait_until("node a announced", || {
        redis.command(&["EXISTS", &held]).contains(":1")
    });
    let mut trips = without_loads(monitor.round_trips());
    trips.retain(|c| c != "EXISTS");
    assert_eq!(
        trips,
        ["EVALSHA"],
        "park: the heartbeat's announcement only"
    );

    let i = lookup(&a);
    assert_eq!(
        monitor.round_trips(),
        Vec::<String>::new(),
        "lookup where the sockets are parked"
    );
    assert_eq!(lookup(&b), i);
    assert_eq!(
        monitor.round_trips(),
        ["EVALSHA"],
        "lookup elsewhere: which node holds them"
    );
    assert_eq!(lookup(&c), i);
    assert_eq!(
        monitor.round_trips(),
        ["EVALSHA"],
        "lookup at a node that never saw the registration: its I cookie and the holder at once"
    );

    let (_initiator, status) = support::rv_line(a.rendezvous(), &format!("{i}\n"));
    assert_eq!(status, "+OK");
    assert_eq!(support::read_line(&mut responder), "+OK");
    assert_eq!(
        monitor.round_trips(),
        Vec::<String>::new(),
        "pairing with a cached triple"
    );

    // A quarter of the cookie's life later, a park renews it in the store.
    a.clock.advance(Duration::from_secs(600 / 4 + 1));
    let _again = support::park(a.rendezvous(), &r);
    wait_until("the socket parked", || {
        a.server().shared().registry.stats().parked_generic == 1
    });
    assert_eq!(monitor.round_trips(), ["EVALSHA"], "park that renews R");
}

/// Valkey serves as the store: two servers share a registration and pair,
/// and a user added with `user add --store` registers.
#[test]
fn valkey_serves_as_the_store() {
    let valkey = RedisServer::start_valkey();
    assert!(valkey
        .command(&["INFO", "server"])
        .contains("valkey_version"));
    let a = on(&valkey, None);
    let b = on(&valkey, Some(a.uuid));
    avoid_step_edge();
    let r = a.register();
    let i = lookup(&a);
    assert_eq!(lookup(&b), i, "one I cookie, either server");
    pair_at(&a, &r, &i);
    let state = support::TempDir::new("valkey-admin");
    let (uuid, secret) = add_user(&valkey, state.path());
    let tok = token_for(&secret, 0);
    wait_until("the new user to register", || put(&b, uuid, &tok) == 200);
}
