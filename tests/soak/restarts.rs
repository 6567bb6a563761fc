//! Agents after two server restarts within one TOTP step.

use super::*;

// ---- agents after two server restarts within one TOTP step ---------------------

/// kill -9 and restart of rendezvousd twice within one 30 s TOTP step. After
/// the first restart each agent registers with the next step's token (this
/// step's is used); after the second, the server (restarted, without replay
/// floor) would accept any token within ±1 step, and the agents must be back
/// within the 10 s, not at the next step boundary.
#[test]
fn agents_recover_from_two_server_restarts_in_one_totp_step() {
    let dir = TempDir::new("soak-totp");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let (ug, uh) = (Uuid::new_v4(), Uuid::new_v4());
    std::fs::write(
        state.join("users"),
        format!("{ug} {SECRET_B32} 30 6 g\n{uh} {SECRET_B32} 30 6 h\n"),
    )
    .expect("write users");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(state.join("users"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{SECRET_B32}\n")).expect("write secret");
    let board = Arc::new(Board::default());
    let service = Service::start(board.clone());
    // Begin a step with at least 25 s left, so both restarts fall inside it.
    let left = 30 - rendezvous::totp::now() % 30;
    if left < 25 {
        thread::sleep(Duration::from_secs(left) + Duration::from_millis(200));
    }
    let (srv, reg, rv) = start_server(&state, "127.0.0.1:0", "127.0.0.1:0");
    let ctx = Ctx::new(reg, board.clone());
    let g = AgentSpec {
        name: "agent-generic",
        uuid: ug,
        http: false,
        pool: 2,
    };
    let h = AgentSpec {
        name: "agent-http",
        uuid: uh,
        http: true,
        pool: 2,
    };
    let ag = start_agent(&g, reg, service.addr, &secret);
    let ah = start_agent(&h, reg, service.addr, &secret);
    let start = Instant::now();
    recover(&ctx, false, ug, start, Duration::from_secs(20));
    recover(&ctx, true, uh, start, Duration::from_secs(20));
    let mut srv = srv;
    let mut times = Vec::new();
    for _ in 0..2 {
        let _ = srv.child.kill();
        let _ = srv.child.wait();
        let (s, r, v) = start_server(&state, &reg.to_string(), &rv.to_string());
        assert_eq!((r, v), (reg, rv));
        srv = s;
        let up = Instant::now();
        let step_left = 30 - rendezvous::totp::now() % 30;
        let (dg, dh) = recover_both(
            &ctx,
            (ug, uh),
            up,
            Duration::from_secs(40),
            "agent recovers",
        );
        times.push((dg, dh, step_left));
    }
    eprintln!("recovery after each restart (generic, http, secs left in the TOTP step at restart): {times:?}");
    for (dg, dh, _) in &times {
        assert!(
            *dg <= Duration::from_secs(10) && *dh <= Duration::from_secs(10),
            "agents recover within 10 s of a restart: {times:?}\ngeneric agent:\n{}\nhttp agent:\n{}",
            ag.log(),
            ah.log()
        );
    }
    drop((ag, ah));
    wait_for(
        "service connections closed",
        Duration::from_secs(40),
        || board.active.load(Ordering::Acquire) == 0,
    );
}
