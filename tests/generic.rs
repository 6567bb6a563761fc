//! The generic protocol over real sockets: pairing, +OK and every -ERR, early
//! initiator bytes, pool order and eviction, the pairing wait, dead parked
//! sockets, cookie independence, and the relay's integrity, half-close and
//! prompt close.

mod support;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn pair_ok_both_sides_and_early_bytes() {
    let ts = TestServer::start(Opts::default());
    let r = ts.register();
    assert!(r.starts_with('R'));
    let i = ts.lookup();
    assert!(i.starts_with('I'));
    let mut resp = park(ts.rendezvous(), &r);
    // The initiator sends bytes right after its cookie line.
    let mut init = connect(ts.rendezvous());
    init.write_all(format!("{i}\nhello early").as_bytes())
        .expect("send");
    assert_eq!(read_line(&mut init), "+OK");
    assert_eq!(read_line(&mut resp), "+OK");
    let mut buf = [0u8; 11];
    resp.read_exact(&mut buf).expect("early bytes");
    assert_eq!(&buf, b"hello early");
    resp.write_all(b"pong").expect("write");
    let mut buf = [0u8; 4];
    init.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"pong");
}

#[test]
fn every_err_line() {
    let ts = TestServer::start(Opts {
        pair_timeout: Duration::from_millis(500),
        ..Opts::default()
    });
    let rv = ts.rendezvous();
    assert_eq!(rv_line(rv, "hello\n").1, "-ERR invalid cookie");
    assert_eq!(rv_line(rv, "R\n").1, "-ERR invalid cookie");
    assert_eq!(rv_line(rv, "Rnot-a-uuid\n").1, "-ERR invalid cookie");
    // 257 bytes with the newline: refused, even though the prefix is fine.
    let long = format!("R{}\n", "a".repeat(255));
    assert_eq!(long.len(), 257);
    assert_eq!(rv_line(rv, &long).1, "-ERR invalid cookie");
    // No newline at all within the limit.
    let (mut s, _) = (connect(rv), ());
    s.write_all(&[b'I'; 4096]).expect("send");
    assert_eq!(read_line(&mut s), "-ERR invalid cookie");
    let fake = format!("R{}\n", uuid::Uuid::new_v4());
    assert_eq!(rv_line(rv, &fake).1, "-ERR not registered");
    let fake = format!("I{}\n", uuid::Uuid::new_v4());
    assert_eq!(rv_line(rv, &fake).1, "-ERR not registered");
    // Registered, but no responder within --pair-timeout.
    ts.register();
    let i = ts.lookup();
    let start = Instant::now();
    assert_eq!(rv_line(rv, &format!("{i}\n")).1, "-ERR not ready");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// A refused client whose bytes after the cookie line were still unread
/// gets its `-ERR` line and then an orderly end, not a reset (which, on a
/// lossy link, ends the connection before a lost line is sent again): the
/// server reads what follows before it closes.
#[test]
fn a_refusal_ends_with_a_fin_though_bytes_were_unread() {
    let ts = TestServer::start(Opts::default());
    let rv = ts.rendezvous();
    let unknown = uuid::Uuid::new_v4();
    for line in [
        "hello\n".into(),
        format!("I{unknown}\n"),
        format!("R{unknown}\n"),
    ] {
        let mut s = connect(rv);
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // The line, then more than the server reads with it.
        let mut msg = line.into_bytes();
        msg.extend(std::iter::repeat_n(b'x', 32 * 1024));
        s.write_all(&msg).expect("send");
        let status = read_line(&mut s);
        assert!(status.starts_with("-ERR "), "{status}");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "bytes after {status:?}"),
            Err(e) => panic!("after {status:?}: {e}"),
        }
    }
}

/// A refused client that neither closes nor stops sending is closed after
/// the drain's second: its writes are taken until then, and fail after.
#[test]
fn a_refused_client_that_stays_is_closed_after_a_second() {
    let ts = TestServer::start(Opts::default());
    let mut s = connect(ts.rendezvous());
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let line = format!("I{}\n", uuid::Uuid::new_v4());
    s.write_all(line.as_bytes()).expect("send");
    assert_eq!(read_line(&mut s), "-ERR not registered");
    let start = Instant::now();
    assert_eq!(s.read(&mut [0u8; 1]).expect("the FIN after the line"), 0);
    while s.write_all(b"x").is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "never closed");
        thread::sleep(Duration::from_millis(20));
    }
    let closed = start.elapsed();
    assert!(
        closed > Duration::from_millis(500) && closed < Duration::from_secs(5),
        "closed after {closed:?}"
    );
}

/// A refused client that keeps sending is closed once the drain has taken
/// its 64 KiB (`REFUSAL_DRAIN_BYTES`), not read for the whole second: of
/// 32 MiB, more than the two ends' socket buffers hold, the writes fail
/// before all went out (0.8 to 0.9 MiB were taken in three runs). Without
/// the byte limit a loopback drain takes all 32 MiB well within the second.
#[test]
fn a_refused_client_that_floods_is_cut_off() {
    let ts = TestServer::start(Opts::default());
    let mut s = connect(ts.rendezvous());
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let line = format!("I{}\n", uuid::Uuid::new_v4());
    s.write_all(line.as_bytes()).expect("send");
    assert_eq!(read_line(&mut s), "-ERR not registered");
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    let failed = loop {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break e,
        }
        assert!(sent < 32 << 20, "{sent} bytes taken after the refusal");
    };
    assert!(
        matches!(
            failed.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "after {sent} bytes: {failed}"
    );
}

#[test]
fn r_and_i_cookies_are_independent() {
    let ts = TestServer::start(Opts::default());
    let r = ts.register();
    let i = ts.lookup();
    // Neither is derivable from the other: the random parts differ.
    assert_ne!(&r[1..], &i[1..]);
    // An I cookie with an R prefix is not an R cookie, and vice versa.
    let rv = ts.rendezvous();
    assert_eq!(
        rv_line(rv, &format!("R{}\n", &i[1..])).1,
        "-ERR not registered"
    );
    assert_eq!(
        rv_line(rv, &format!("I{}\n", &r[1..])).1,
        "-ERR not registered"
    );
    // Each registration's R cookie is new; the I cookie stays while live.
    let r2 = ts.extra_r_cookie();
    assert_ne!(r, r2);
    assert_eq!(ts.lookup(), i);
}

#[test]
fn pool_is_oldest_first_and_evicts_the_oldest() {
    let ts = TestServer::start(Opts {
        pool_max: 2,
        ..Opts::default()
    });
    let r = ts.register();
    let i = ts.lookup();
    let rv = ts.rendezvous();
    let mut a = park(rv, &r);
    wait_until("a parked", || {
        ts.server().shared().registry.stats().parked_generic == 1
    });
    let mut b = park(rv, &r);
    wait_until("b parked", || {
        ts.server().shared().registry.stats().parked_generic == 2
    });
    let mut c = park(rv, &r);
    // a is evicted: closed without a status line.
    let mut buf = [0u8; 8];
    assert_eq!(a.read(&mut buf).unwrap_or(0), 0, "oldest closed");
    wait_until("c parked", || {
        ts.server().shared().registry.stats().parked_generic == 2
    });
    for (name, resp) in [("b", &mut b), ("c", &mut c)] {
        let (mut init, status) = rv_line(rv, &format!("{i}\n"));
        assert_eq!(status, "+OK");
        assert_eq!(read_line(resp), "+OK", "{name} paired in order");
        resp.write_all(name.as_bytes()).expect("write");
        let mut got = [0u8; 1];
        init.read_exact(&mut got).expect("read");
        assert_eq!(&got, name.as_bytes());
    }
}

#[test]
fn initiator_waits_for_a_responder() {
    let ts = TestServer::start(Opts::default());
    let r = ts.register();
    let i = ts.lookup();
    let rv = ts.rendezvous();
    let h = thread::spawn(move || rv_line(rv, &format!("{i}\n")));
    thread::sleep(Duration::from_millis(300));
    let mut resp = park(rv, &r);
    let (_init, status) = h.join().expect("initiator");
    assert_eq!(status, "+OK");
    assert_eq!(read_line(&mut resp), "+OK");
}

#[test]
fn dead_parked_socket_is_skipped() {
    let ts = TestServer::start(Opts::default());
    let r = ts.register();
    let i = ts.lookup();
    let rv = ts.rendezvous();
    let dead = park(rv, &r);
    wait_until("parked", || {
        ts.server().shared().registry.stats().parked_generic == 1
    });
    let mut live = park(rv, &r);
    wait_until("parked", || {
        ts.server().shared().registry.stats().parked_generic == 2
    });
    drop(dead);
    let (mut init, status) = rv_line(rv, &format!("{i}\n"));
    assert_eq!(status, "+OK");
    assert_eq!(read_line(&mut live), "+OK");
    live.write_all(b"x").expect("write");
    let mut b = [0u8; 1];
    init.read_exact(&mut b).expect("read");
    assert_eq!(&b, b"x");
}

#[test]
fn reaper_and_liveness_keep_the_registration_alive_only_while_parked() {
    let ts = TestServer::start(Opts {
        cookie_ttl: Duration::from_secs(1),
        ..Opts::default()
    });
    let r = ts.register();
    let rv = ts.rendezvous();
    let s = park(rv, &r);
    wait_until("parked", || {
        ts.server().shared().registry.stats().parked_generic == 1
    });
    ts.clock.advance(Duration::from_millis(1200));
    // The cookie expired but a socket is parked: still live.
    let i = ts.lookup();
    assert!(i.starts_with('I'));
    // The R cookie itself is gone.
    assert_eq!(rv_line(rv, &format!("{r}\n")).1, "-ERR not registered");
    drop(s);
    wait_until("reaped and lapsed", || {
        ts.server().shared().registry.sweep();
        ts.server().shared().registry.stats().registrations == 0
    });
    let resp = request(ts.registrar(), "GET", &format!("/?uuid={}", ts.uuid), &[]);
    assert_eq!(resp.status, 404);
}

fn pair(ts: &TestServer) -> (std::net::TcpStream, std::net::TcpStream) {
    // A fresh R cookie without a token (tokens are once per step).
    let r = ts.extra_r_cookie();
    let i = ts.lookup();
    let mut resp = park(ts.rendezvous(), &r);
    let (init, status) = rv_line(ts.rendezvous(), &format!("{i}\n"));
    assert_eq!(status, "+OK");
    assert_eq!(read_line(&mut resp), "+OK");
    (init, resp)
}

#[test]
fn sixteen_mib_each_way_at_once() {
    let ts = TestServer::start(Opts::default());
    let (init, resp) = pair(&ts);
    const N: usize = 16 << 20;
    let up = pseudo_random(N, 1);
    let down = pseudo_random(N, 2);
    let (up_sum, down_sum) = (sha256(&up), sha256(&down));
    let start = Instant::now();
    let send = |mut s: std::net::TcpStream, data: Vec<u8>| {
        thread::spawn(move || {
            for chunk in data.chunks(7919) {
                s.write_all(chunk).expect("send");
            }
            s.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let recv = |mut s: std::net::TcpStream| {
        thread::spawn(move || {
            let mut got = Vec::with_capacity(N);
            s.read_to_end(&mut got).expect("receive");
            got
        })
    };
    let t1 = send(init.try_clone().expect("clone"), up);
    let t2 = send(resp.try_clone().expect("clone"), down);
    let r1 = recv(resp);
    let r2 = recv(init);
    t1.join().expect("send up");
    t2.join().expect("send down");
    let got_up = r1.join().expect("recv up");
    let got_down = r2.join().expect("recv down");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got_up.len(), N);
    assert_eq!(got_down.len(), N);
    assert_eq!(sha256(&got_up), up_sum);
    assert_eq!(sha256(&got_down), down_sum);
    eprintln!(
        "16 MiB each way in {secs:.2} s: {:.0} MiB/s total (debug build)",
        32.0 / secs
    );
}

#[test]
fn half_closing_client_receives_the_whole_reply() {
    let ts = TestServer::start(Opts::default());
    let (mut init, mut resp) = pair(&ts);
    init.write_all(b"question").expect("send");
    init.shutdown(Shutdown::Write).expect("half-close");
    let mut q = Vec::new();
    resp.read_to_end(&mut q).expect("responder sees EOF");
    assert_eq!(q, b"question");
    let reply = pseudo_random(1 << 20, 3);
    resp.write_all(&reply).expect("reply");
    drop(resp);
    let mut got = Vec::new();
    init.read_to_end(&mut got).expect("read reply");
    assert_eq!(sha256(&got), sha256(&reply));
}

#[test]
fn abrupt_close_of_either_side_closes_the_other() {
    let ts = TestServer::start(Opts::default());
    for close_initiator in [true, false] {
        let (init, resp) = pair(&ts);
        let (gone, mut other) = if close_initiator {
            (init, resp)
        } else {
            (resp, init)
        };
        // RST: linger 0 then drop.
        socket2::SockRef::from(&gone)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(gone);
        let start = Instant::now();
        let mut buf = [0u8; 16];
        let n = other.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "other side closed");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
    wait_until("pairs finished", || {
        ts.server().shared().pairs.active() == 0
    });
}

#[test]
fn reload_keeps_the_table_when_the_users_file_is_gone_or_broken() {
    let ts = TestServer::start(Opts::default());
    let users = ts.dir.join("users");
    std::fs::remove_file(&users).expect("remove");
    ts.server().reload();
    assert!(
        ts.server().shared().users().get(&ts.uuid).is_some(),
        "old table kept"
    );
    std::fs::write(&users, "garbage line\n").expect("write");
    ts.server().reload();
    assert!(
        ts.server().shared().users().get(&ts.uuid).is_some(),
        "old table kept"
    );
    assert!(users.exists());
}

/// A registrar stand-in on 127.0.0.1 that counts lookups and answers each
/// one by asking the real registrar at that moment. It stops when dropped.
struct CountingRegistrar {
    addr: std::net::SocketAddr,
    lookups: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl CountingRegistrar {
    fn start(real: std::net::SocketAddr, uuid: uuid::Uuid) -> CountingRegistrar {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let lookups = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, halt) = (lookups.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).is_ok_and(|k| k == 1) {
                    head.push(b[0]);
                }
                n.fetch_add(1, Ordering::SeqCst);
                let r = request(real, "GET", &format!("/?uuid={uuid}"), &[]);
                let _ = write!(
                    s,
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    r.status,
                    r.body.len()
                );
                let _ = s.write_all(&r.body);
            }
        });
        CountingRegistrar {
            addr,
            lookups,
            stop,
            thread: Some(thread),
        }
    }

    fn lookups(&self) -> usize {
        self.lookups.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CountingRegistrar {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `connect --listen`'s dialer caches the triple: a second connection asks
/// the registrar nothing. Once the registration is gone and back (a new `I`
/// cookie), the cached triple meets `-ERR not registered`, and one new
/// lookup gets the connection through.
#[test]
fn the_dialer_caches_the_triple_and_refreshes_it_when_refused() {
    use rendezvous::agent::dial::Dialer;
    use rendezvous::agent::settings::{ClientFlags, Settings};
    let ts = TestServer::start(Opts::default());
    let fake = CountingRegistrar::start(ts.registrar(), ts.uuid);
    let settings = Settings::resolve(
        &ClientFlags {
            server: vec![format!("http://{}", fake.addr)],
            uuid: Some(ts.uuid.to_string()),
            ..ClientFlags::default()
        },
        false,
    )
    .expect("settings");
    let dialer = Dialer::new(&settings).expect("dialer");
    // One paired exchange: the hidden side reads +OK and the byte.
    let through = |dialer: &Dialer| {
        let r = ts.extra_r_cookie();
        let mut hidden = park(ts.rendezvous(), &r);
        wait_until("parked", || {
            ts.server().shared().registry.stats().parked_generic == 1
        });
        let mut m = dialer.dial().expect("paired");
        m.write_all(b"x").expect("write");
        let mut got = [0u8; 5];
        hidden.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"+OK\nx");
    };
    through(&dialer);
    assert_eq!(fake.lookups(), 1);
    through(&dialer);
    assert_eq!(
        fake.lookups(),
        1,
        "the second connection used the cached triple"
    );

    // The registration goes (the user is removed) and comes back: a new I cookie.
    let old_i = ts.lookup();
    let users = ts.dir.join("users");
    let text = std::fs::read_to_string(&users).expect("users");
    rendezvous::files::write_atomic(&users, b"", 0o600).expect("write");
    ts.server().reload();
    rendezvous::files::write_atomic(&users, text.as_bytes(), 0o600).expect("write");
    ts.server().reload();
    through(&dialer);
    assert_ne!(ts.lookup(), old_i, "a new registration");
    assert_eq!(fake.lookups(), 2, "refused once, looked up once more");
}

/// A sweep takes the pool out, drops the dead and puts the live back in
/// their order (oldest first), ahead of a socket parked since.
#[test]
fn a_sweep_keeps_the_live_in_order() {
    let ts = TestServer::start(Opts::default());
    let r = ts.register();
    let rv = ts.rendezvous();
    let parked = |n: usize| {
        wait_until("parked", || {
            ts.server().shared().registry.stats().parked_generic == n
        })
    };
    let mut a = park(rv, &r);
    parked(1);
    let dead = park(rv, &r);
    parked(2);
    let mut c = park(rv, &r);
    parked(3);
    drop(dead);
    wait_until("swept", || ts.server().shared().registry.sweep().dead == 1);
    let mut d = park(rv, &r);
    parked(3);
    for (name, s) in [("a", &mut a), ("c", &mut c), ("d", &mut d)] {
        let i = ts.lookup();
        let (_init, status) = rv_line(rv, &format!("{i}\n"));
        assert_eq!(status, "+OK", "{name}");
        assert_eq!(read_line(s), "+OK", "{name} is next");
    }
}
