#!/bin/bash
# How deep each thread's stack went under held connections: N clients held
# open through `rendezvous connect --listen`, rendezvousd and `rendezvous
# expose` to a local echo service, then, for every thread of the three
# processes, the deepest byte written below its stack's top (a fresh
# stack is zeroed, so the lowest non-zero byte is the high-water mark) and
# how many pages of it are resident. A relay thread keeps every page its
# setup touched for as long as its connection is held: a frame that grows
# past a page boundary costs 4 KiB per held connection, which
# `make bench-peers` shows only as a total.
#
#   contrib/stack-depth.sh [BINDIR] [N] [PROCESS:THREAD]
#
# BINDIR defaults to target/release, N to 100. With PROCESS:THREAD (say
# connect:local, or rendezvousd:conn-), it also prints one such thread's
# stack, top down: the return addresses found in it, live (above the stack
# pointer) and stale (below it, left by the deepest calls), named with
# addr2line (binutils). Reads /proc/PID/mem: run as root, or as the same
# user with kernel.yama.ptrace_scope=0.
set -eu
bin=${1:-target/release}
n=${2:-100}
show=${3:-}
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 1; }
if [ -n "$show" ] && ! command -v addr2line >/dev/null; then
	echo "needs addr2line: apt-get install -y binutils" >&2
	exit 1
fi
. "$(dirname "$0")/lib.sh"
start_server "$bin/rendezvousd" http --plaintext

# The echo service, and the clients that stay (one byte echoed each).
python3 - "$dir/echo.port" <<'PY' &
import socket, sys, threading
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1024)
open(sys.argv[1], "w").write(str(l.getsockname()[1]))
def echo(c):
    while d := c.recv(4096):
        c.sendall(d)
while True:
    c, _ = l.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
PY
pids="$pids $!"
for _ in $(seq 50); do [ -s "$dir/echo.port" ] && break; sleep 0.1; done
start_chain "$bin" "$(cat "$dir/echo.port")" 4

python3 - "$entry" "$n" "$dir/held" <<'PY' &
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"x"); s.recv(1); held.append(s)
open(ready, "w").write("held")
time.sleep(30)
PY
holder=$!
pids="$pids $holder"
for _ in $(seq 300); do [ -s "$dir/held" ] && break; sleep 0.1; done
[ -s "$dir/held" ] || { echo "the clients were not all served" >&2; exit 1; }

python3 - "$show" "connect=$connect:$bin/rendezvous" "rendezvousd=$server_pid:$bin/rendezvousd" \
	"expose=$agent:$bin/rendezvous" <<'PY'
import collections, os, re, statistics, struct, subprocess, sys
show = sys.argv[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
for arg in sys.argv[2:]:
    proc, rest = arg.split("=", 1)
    pid, binary = rest.split(":", 1)
    maps = []
    for line in open(f"/proc/{pid}/maps"):
        f = line.split()
        a, b = (int(x, 16) for x in f[0].split("-"))
        maps.append((a, b, f[1], int(f[2], 16), f[5] if len(f) > 5 else ""))
    text = [(a, b, off) for a, b, p, off, name in maps
            if "x" in p and os.path.basename(name) == os.path.basename(binary)]
    base = min(a - off for a, b, off in text)
    depths = collections.defaultdict(list)
    candidates = []
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
            try:
                name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
                sp = int(open(f"/proc/{pid}/task/{tid}/syscall").read().split()[-2], 16)
            except (OSError, ValueError, IndexError):
                continue  # ended, or running
            stack = next(((a, b) for a, b, *_ in maps if a <= sp < b), None)
            if stack is None:
                continue
            lo = max(stack[0], stack[1] - 64 * 1024)
            mem.seek(lo)
            data = mem.read(stack[1] - lo)
            low = next((i for i, c in enumerate(data) if c), len(data))
            deepest = stack[1] - (lo + low)
            depths[re.sub(r"-\d+$", "-N", name)].append(deepest)
            if show and show == f"{proc}:{name}"[:len(show)]:
                candidates.append((deepest, tid, name, sp, stack, lo, low, data))
    if candidates:
        # The one at the median depth: what most such threads hold.
        candidates.sort(key=lambda c: c[0])
        deepest, tid, name, sp, stack, lo, low, data = candidates[len(candidates) // 2]
        found = []
        for k in range(len(data) - 8, low - 8, -8):
            v = struct.unpack("<Q", data[k:k + 8])[0]
            if any(a <= v < b for a, b, _ in text):
                found.append((stack[1] - (lo + k), v - base, lo + k >= sp))
        names = subprocess.run(["addr2line", "-f", "-C", "-e", binary] +
                               [hex(v) for _, v, _ in found],
                               capture_output=True, text=True).stdout.split("\n")[::2]
        print(f"{proc}:{name} (thread {tid}, the median of {len(candidates)}): stack pointer "
              f"{stack[1] - sp} bytes below the top, deepest write {deepest}")
        for (d, _, live), fn in zip(found, names):
            print(f"  {d:6d}  {'live ' if live else 'stale'}  {fn[:100]}")
    print(f"{proc}: deepest byte written below each stack's top (bytes), pages resident")
    for name, v in sorted(depths.items()):
        pages = collections.Counter(-(-d // PAGE) for d in v)
        print(f"  {name:18} {len(v):5} threads  median {statistics.median(v):6.0f}  "
              f"max {max(v):6}  pages " + ", ".join(f"{k}: {c}" for k, c in sorted(pages.items())))
PY
