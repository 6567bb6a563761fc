//! The accept loop under a low RLIMIT_NOFILE.

use super::*;

// ---- the accept loop under a low RLIMIT_NOFILE -------------------------------

/// `rendezvousd serve` with RLIMIT_NOFILE set to `limit` (prlimit, else the
/// shell's ulimit), plaintext, on ports 0.
fn serve_with_nofile(state: &Path, limit: usize) -> Command {
    let bin = env!("CARGO_BIN_EXE_rendezvousd");
    let have_prlimit = Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut c = if have_prlimit {
        let mut c = Command::new("prlimit");
        c.arg(format!("--nofile={limit}:{limit}"))
            .arg("--")
            .arg(bin);
        c
    } else {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
            bin,
        ]);
        c
    };
    c.env_remove("RENDEZVOUS_STATE_DIR")
        .env_remove("RENDEZVOUS_SECRET");
    let mut c = serve_cmd(c, state, "127.0.0.1:0", "127.0.0.1:0");
    // Idle connections must hold their descriptors for the whole test.
    c.args(["--handshake-timeout", "60"]);
    // Every accept and every close in the log, for the failure message.
    c.env(
        "RUST_LOG",
        "info,rendezvous::accept=debug,rendezvous::registrar=debug",
    );
    c
}

/// How many of the descriptor numbers below `limit` the process has open.
/// Descriptors inherited above the limit (a make jobserver pipe, say) are
/// not counted: they do not take a number the limit allows.
fn fds_below(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.parse::<usize>().ok())
                        .is_some_and(|n| n < limit)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Wait (up to 5 s: the accept loop retries at least once a second) until
/// the server holds every descriptor number its limit allows; on failure,
/// show them and the server's log.
///
/// One number may be missing from `/proc/PID/fd` and still be taken: the
/// rendezvous listener's `accept(2)`, blocked since start, has reserved the
/// lowest free number (the kernel allocates it before waiting, and installs
/// it only when a connection arrives).
fn wait_all_in_use(srv: &Proc, pid: u32, limit: usize, what: &str) {
    let start = Instant::now();
    loop {
        let n = fds_below(pid, limit);
        if n >= limit - 1 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: {n} descriptors below {limit}, not {limit} or {} \
             (one reserved by the rendezvous listener's blocked accept): {}\n{}",
            limit - 1,
            fd_links(pid),
            srv.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Under a low RLIMIT_NOFILE the accept loop backs off instead of exiting or
/// spinning, logs the failure once per 10 s (not once per retry), and serves
/// again (the connection that waited in the backlog, then new ones) once
/// descriptors free up.
#[test]
fn accept_loop_backs_off_under_low_nofile() {
    const LIMIT: usize = 32;
    let dir = TempDir::new("soak-nofile");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let srv = Proc::spawn("rendezvousd-nofile", serve_with_nofile(&state, LIMIT));
    let reg = srv.listening("registrar");
    let rv = srv.listening("rendezvous");
    let pid = srv.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("nofile line");
    assert_eq!(
        nofile
            .split_whitespace()
            .filter(|w| *w == LIMIT.to_string())
            .count(),
        2,
        "{nofile}"
    );
    let health = "/.well-known/rendezvous/health";
    assert_eq!(request(reg, "GET", health, &[]).status, 200);
    let mut last = (Instant::now(), 0);
    wait_for("a steady descriptor count", Duration::from_secs(20), || {
        let n = fds_threads(pid).0;
        if n != last.1 {
            last = (Instant::now(), n);
        }
        last.0.elapsed() >= Duration::from_secs(1)
    });
    let base = last.1;

    // Idle connections (nothing sent) until the server has no descriptor left;
    // the ones past the limit wait in the listen backlog.
    let idle: Vec<TcpStream> = (0..LIMIT).map(|_| connect(reg)).collect();
    let warning = srv.wait_line("accept on registrar failed");
    let exhausted = Instant::now();
    assert!(
        warning.contains("os error 24") && warning.contains("backing off"),
        "{warning}"
    );
    wait_all_in_use(&srv, pid, LIMIT, "every descriptor in use");

    // A request now waits in the backlog: no answer for 2 s.
    let mut waiting = connect(reg);
    write!(
        waiting,
        "GET {health} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    waiting
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut b = [0u8; 1];
    let early = waiting.read(&mut b);
    assert!(
        matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut),
        "answered while out of descriptors: {early:?}"
    );
    // The loop kept retrying (10 ms doubling to 1 s) but logged once.
    let lines = count_lines(&srv, "accept on registrar failed");
    let window = exhausted.elapsed();
    assert_eq!(lines, 1, "rate-limited warning:\n{}", srv.log());
    wait_all_in_use(&srv, pid, LIMIT, "still out of descriptors");

    // Free the descriptors: the waiting request is served, then new ones.
    drop(idle);
    let freed = Instant::now();
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let r = rendezvous::wire::read_response(&mut waiting).expect("the waiting request is served");
    let recovered = freed.elapsed();
    assert_eq!(r.status, 200);
    assert!(recovered <= Duration::from_secs(3), "{recovered:?}");
    assert_eq!(request(reg, "GET", health, &[]).status, 200);
    let (_s, line) = rv_line(rv, "Rnot-a-cookie\n");
    assert_eq!(line, "-ERR invalid cookie");
    drop(waiting);
    wait_for(
        "descriptors back to baseline",
        Duration::from_secs(10),
        || fds_threads(pid).0 <= base,
    );
    let mut srv = srv;
    assert!(
        srv.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    eprintln!(
        "accept loop: RLIMIT_NOFILE {LIMIT}, baseline {base} fds; {lines} warning line in {:.1} s of exhaustion; \
         the waiting request served {} ms after descriptors were freed",
        window.as_secs_f64(),
        recovered.as_millis()
    );
}
