#!/bin/sh
# Idle memory of `rendezvous expose --pool 8` waiting at a local rendezvousd:
#   agent-memory.sh CLIENT [SERVER]
# prints, after 4 s of waiting, the agent's resident set split into the
# pages of files (its binary, shared libraries) and its own (anonymous:
# heap, stacks), and its proportional set (PSS: shared pages divided among
# the processes that map them), from /proc/PID/smaps, for the generic and
# the HTTP-specific protocol. SERVER defaults to target/debug/rendezvousd.
set -eu
client=$1 server=${2:-target/debug/rendezvousd}
. "$(dirname "$0")/lib.sh"
start_server "$server" http --plaintext

for proto in generic http; do
	# The service is never dialled while the agent only waits.
	"$client" expose --pool 8 --protocol "$proto" --config "$dir/agent.conf" --to 127.0.0.1:9 2>"$dir/$proto.log" &
	pid=$!
	pids="$pids $pid"
	sleep 4
	grep -q "registered uuid=" "$dir/$proto.log" || { cat "$dir/$proto.log" >&2; exit 1; }
	awk -v proto="$proto" -v threads="$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")" '
		/^[0-9a-f]+-[0-9a-f]+ / { file = (NF >= 6 && $6 ~ /^\//) }
		/^Rss:/ { if (file) f += $2; else a += $2 }
		/^Pss:/ { pss += $2 }
		END { printf "%-8s rss %5d KiB: files %5d KiB, own %4d KiB; pss %5d KiB; %d threads\n", proto, f + a, f, a, pss, threads }
	' "/proc/$pid/smaps"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
done
