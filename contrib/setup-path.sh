#!/bin/bash
# Where the setup of a generic connection waits: the chain of thread
# wake-ups from a client's connect to its answer, across `rendezvous
# connect --listen`, rendezvousd and `rendezvous expose` and a local echo
# service, from `perf sched record` (scheduler tracepoints: far lighter
# than strace, so the µs are close to real).
#
#   contrib/setup-path.sh [BINDIR] [N]   (default target/release, 200; as root)
#
# For each of N exchanges (connect, 41 bytes, their echo; each after one
# with the service directly, as `make bench` alternates them) it walks back
# from the wake-up that gave the client its answer: who woke that thread,
# who woke the waker, and so on to the client's own connect. It prints
# three such paths (each hop: the thread woken, how long it waited for a
# CPU after the wake-up, how long it ran before it woke the next) and the
# medians over all of them. Threads are named process:thread-name.
set -eu
bin=${1:-target/release}
n=${2:-200}
command -v perf >/dev/null || { echo "needs perf: apt-get install -y linux-perf" >&2; exit 1; }
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 1; }
command -v rustc >/dev/null || { echo "needs rustc" >&2; exit 1; }
. "$(dirname "$0")/lib.sh"
start_server "$bin/rendezvousd" http --plaintext

# The echo service and the client, in Rust like the bench's (a Python
# client is slow enough to send its line after connect --listen looked).
cat >"$dir/cl.rs" <<'RS'
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
fn one(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_nodelay(true);
    let mut b = [0u8; 41];
    s.write_all(&[b'x'; 41]).is_ok() && s.read_exact(&mut b).is_ok()
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a[1] == "echo" {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        println!("{}", l.local_addr().expect("addr").port());
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut b = [0u8; 4096];
                while let Ok(n @ 1..) = c.read(&mut b) {
                    if c.write_all(&b[..n]).is_err() { return }
                }
            });
        }
        return;
    }
    // n exchanges through the chain, each after one with the service
    // directly, as the bench alternates them.
    let (n, chain, direct): (usize, u16, u16) = (a[1].parse().unwrap(), a[2].parse().unwrap(), a[3].parse().unwrap());
    std::fs::write(&a[4], std::process::id().to_string()).expect("pid file");
    for _ in 0..n { one(direct); one(chain); }
}
RS
rustc -O --edition 2021 -o "$dir/cl" "$dir/cl.rs"
"$dir/cl" echo >"$dir/echo.port" &
echo_pid=$!
pids="$pids $echo_pid"
for _ in $(seq 50); do [ -s "$dir/echo.port" ] && break; sleep 0.1; done
echo_port=$(cat "$dir/echo.port")

start_chain "$bin" "$echo_port" 4

"$dir/cl" 50 "$entry" "$echo_port" "$dir/client.pid"
perf sched record -q -o "$dir/perf.data" -- "$dir/cl" "$n" "$entry" "$echo_port" "$dir/client.pid" >/dev/null 2>&1
perf script -i "$dir/perf.data" -F comm,pid,tid,cpu,time,event,trace 2>/dev/null >"$dir/sched.txt"
python3 - "$dir/sched.txt" "$(cat "$dir/client.pid")" \
	"$server_pid=rendezvousd" "$agent=expose" "$connect=connect" "$echo_pid=echo" <<'EOF'
import bisect, collections, re, statistics, sys
path, client = sys.argv[1], int(sys.argv[2])
procs = dict(a.split("=", 1) for a in sys.argv[3:])
wakes, runs, pid_of, answers = collections.defaultdict(list), collections.defaultdict(list), {}, []
for line in open(path):
    m = re.match(r"\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)", line)
    if not m:
        continue
    pid, tid, t, ev, rest = int(m[2]), int(m[3]), float(m[5]), m[6], m[7]
    pid_of[tid] = pid
    if ev in ("sched_waking", "sched_wakeup_new"):
        woken = int(re.search(r" pid=(\d+)", rest)[1])
        wakes[woken].append((t, tid))
        if woken == client:
            answers.append((t, tid))
    elif ev == "sched_switch":
        nxt = int(re.search(r"next_pid=(\d+)", rest)[1])
        runs[nxt].append((t, re.search(r"next_comm=(.*?) next_pid", rest)[1]))
paths = []
for t_end, waker in answers:
    hops, x, t = [], waker, t_end
    while x != client and x != 0 and len(hops) < 40:
        i = bisect.bisect_right(runs[x], (t, "\uffff")) - 1
        if i < 0:
            break
        ran, name = runs[x][i]
        j = bisect.bisect_right(wakes[x], (ran, 1 << 62)) - 1
        if j < 0:
            break
        woken, by = wakes[x][j]
        hops.append((procs.get(str(pid_of.get(x)), "?") + ":" + name, woken, ran, t))
        x, t = by, woken
    # An answer on a path that starts at the client's own connect and
    # went through the chain (not one of the direct exchanges).
    if x == client and any(not h[0].startswith("echo:") for h in hops):
        paths.append(list(reversed(hops)))
us = lambda s: s * 1e6
for p in paths[len(paths) // 2 : len(paths) // 2 + 3]:
    t0 = p[0][1]
    print(f"--- {us(p[-1][3] - t0):.0f} µs, {len(p)} wake-ups")
    for name, woken, ran, until in p:
        print(f"  {us(woken - t0):6.0f}  {name[:32]:32} waited {us(ran - woken):4.0f}  ran {us(until - ran):4.0f}")
if not paths:
    sys.exit("no complete path found")
waited = [us(h[2] - h[1]) for p in paths for h in p]
ran = [us(h[3] - h[2]) for p in paths for h in p]
print(f"{len(paths)} paths: median {statistics.median(us(p[-1][3] - p[0][1]) for p in paths):.0f} µs, "
      f"{statistics.median(len(p) for p in paths):.0f} wake-ups; per wake-up, waited for a CPU "
      f"median {statistics.median(waited):.0f} µs (mean {statistics.mean(waited):.0f}), "
      f"ran median {statistics.median(ran):.0f} µs (mean {statistics.mean(ran):.0f})")
EOF
