#!/bin/bash
# Where the setup of one generic connection goes, across the three
# processes of the chain: a client connects to `rendezvous connect
# --listen`, which dials rendezvousd, which pairs it with a connection
# `rendezvous expose` parked, which dials a local echo service.
#
#   contrib/trace-setup.sh [BINDIR]     (default target/release; needs strace)
#
# Warms the chain up with 30 connections, then traces 3 more with
# `strace -f -ttt` on each process and prints the third one's system
# calls from all three in time order, in µs since the client's connect
# (strace slows every call: read the order and the hand-offs between
# threads, not the absolute figures).
set -eu
bin=${1:-target/release}
command -v strace >/dev/null || { echo "needs strace: apt-get install -y strace" >&2; exit 1; }
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 1; }
. "$(dirname "$0")/lib.sh"
start_server "$bin/rendezvousd" http --plaintext

# The echo service: one thread per connection, echoing until EOF.
python3 -c '
import socket, sys, threading
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(64)
print(l.getsockname()[1], flush=True)
def echo(c):
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = l.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
' >"$dir/echo.port" &
pids="$pids $!"
for _ in $(seq 50); do [ -s "$dir/echo.port" ] && break; sleep 0.1; done
echo_port=$(cat "$dir/echo.port")

start_chain "$bin" "$echo_port" 2

exchange='
import socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    t = time.time()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"x" * 40 + b"\n"); s.recv(100); s.close()
    print("%.6f %.6f" % (t, time.time()), flush=True)
    time.sleep(0.2)
'
python3 -c "$exchange" 30 "$entry" >/dev/null
skip='!futex,madvise,mprotect,mmap,munmap,rt_sigprocmask,sigaltstack,sched_getaffinity,getrandom'
for p in server:$server_pid agent:$agent connect:$connect; do
	strace -f -ttt -e trace="$skip" -p "${p#*:}" -o "$dir/trace.${p%%:*}" 2>/dev/null &
	pids="$pids $!"
done
sleep 1
python3 -c "$exchange" 3 "$entry" >"$dir/times"
sleep 0.5
read -r t0 t1 < <(tail -1 "$dir/times")
echo "client: connect to echo back $(python3 -c "print('%.0f' % (($t1 - $t0) * 1e6))") µs under strace"
python3 - "$dir" "$t0" "$t1" <<'EOF'
import re, sys
d, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = []
for name in ("connect", "server", "agent"):
    for line in open(f"{d}/trace.{name}"):
        m = re.match(r"(\d+)\s+(\d+\.\d+)\s+(.*)", line)
        if m and t0 <= float(m.group(2)) <= t1:
            rows.append((float(m.group(2)), name, m.group(1), m.group(3)[:100]))
for t, name, tid, call in sorted(rows):
    print(f"{(t - t0) * 1e6:7.0f} {name:7} {tid:>7} {call}")
EOF
