//! A connection's thread is named `conn-<id>` (what `ps -L` and `top -H`
//! show), also when a pooled thread is reused for the next connection. Its
//! own test binary: the threads of other tests would be in the same process.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// Thread id → kernel name, for this process's connection threads.
fn conn_threads() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        let name = name.trim_end().to_string();
        if name == "conn" || name.starts_with("conn-") {
            out.insert(task.file_name().to_string_lossy().into_owned(), name);
        }
    }
    out
}

fn wait_for_one(what: &str) -> (String, String) {
    let start = Instant::now();
    loop {
        let t = conn_threads();
        if t.len() == 1 {
            return t.into_iter().next().expect("one");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: connection threads {t:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn conn_id(name: &str) -> u64 {
    name.strip_prefix("conn-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("thread name {name:?} is not conn-<id>"))
}

#[test]
fn connection_threads_are_named_after_their_connection() {
    let ts = TestServer::start(Opts::default());
    let open = || ts.server().shared().conns.open();
    // An idle connection: its thread waits in the head read.
    let mut conn = TcpStream::connect(ts.registrar()).expect("connect");
    let (mut tid, mut name) = wait_for_one("first connection");
    let mut id = conn_id(&name);
    // Closed, its thread returns to the pool and lingers (2 s); the next
    // connection is handed to it and renames it. The hand-over can miss (a
    // thread not yet back in the pool gets a new one), so try a few times.
    for attempt in 1.. {
        drop(conn);
        let start = Instant::now();
        while open() != 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "not closed");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        conn = TcpStream::connect(ts.registrar()).expect("connect");
        // The one conn thread with a new name: the new connection's.
        let start = Instant::now();
        let (tid2, name2) = loop {
            let t = conn_threads();
            if let Some((t2, n2)) = t.iter().find(|(_, n)| **n != name) {
                break (t2.clone(), n2.clone());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{t:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        let id2 = conn_id(&name2);
        assert!(id2 > id, "{name} then {name2}");
        if tid2 == tid {
            eprintln!("thread {tid} was {name}, reused as {name2} (attempt {attempt})");
            return;
        }
        assert!(attempt < 5, "the pooled thread was never reused");
        // Not reused this time: wait for the old thread to exit and go on
        // from the new one.
        let _ = wait_for_one("the lingering thread exits");
        (tid, name, id) = (tid2, name2, id2);
    }
}
