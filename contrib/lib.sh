# Shared by the contrib scripts (sourced): a scratch folder $dir, removed on
# exit once the processes in $pids are stopped and waited for (a server that
# is stopping still writes its state there), and a rendezvousd on ports of
# its own choosing, and the generic chain in front of a local service.
dir=$(mktemp -d)
pids=
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# logged_port LOG [WHAT]: the 127.0.0.1 port a process logged it listens
# on ("listening on ADDR (WHAT, ...)"; connect --listen names no WHAT),
# within 10 s.
logged_port() {
	for _ in $(seq 100); do
		p=$(sed -n "s/.*listening on 127\.0\.0\.1:\([0-9]*\)${2:+ ($2}.*/\1/p" "$1" | head -1)
		[ -n "$p" ] && { echo "$p"; return; }
		sleep 0.1
	done
	echo "no ${2:-listening} port in $1: $(cat "$1")" >&2
	exit 1
}

# start_server SERVER SCHEME [serve flags...]: a user (provisioning file
# $dir/agent.conf, naming the registrar) and `SERVER serve` with its state
# in $dir/state; sets $server_pid and $registrar (the port).
start_server() {
	_server=$1 scheme=$2
	shift 2
	"$_server" user add --state-dir "$dir/state" --server "$scheme://127.0.0.1:1" --out "$dir/agent.conf" >/dev/null
	"$_server" serve --state-dir "$dir/state" --registrar 127.0.0.1:0 --rendezvous 127.0.0.1:0 "$@" 2>"$dir/server.log" &
	server_pid=$!
	pids="$pids $server_pid"
	registrar=$(logged_port "$dir/server.log" registrar)
	sed -i "s|^server = .*|server = $scheme://127.0.0.1:$registrar|" "$dir/agent.conf"
}

# start_chain BIN ECHO_PORT POOL: `BIN/rendezvous expose` to the service at
# 127.0.0.1:ECHO_PORT with POOL waiting connections, registered, and
# `connect --listen` for it; sets $agent, $connect (PIDs) and $entry (the
# port clients connect to). Needs start_server first.
start_chain() {
	uuid=$(sed -n 's/^uuid = //p' "$dir/agent.conf")
	"$1/rendezvous" expose --config "$dir/agent.conf" --to "127.0.0.1:$2" --pool "$3" 2>"$dir/agent.log" &
	agent=$!
	pids="$pids $agent"
	"$1/rendezvous" connect --listen 127.0.0.1:0 --server "http://127.0.0.1:$registrar" --uuid "$uuid" 2>"$dir/connect.log" &
	connect=$!
	pids="$pids $connect"
	for _ in $(seq 100); do grep -q "registered uuid=" "$dir/agent.log" 2>/dev/null && break; sleep 0.1; done
	entry=$(logged_port "$dir/connect.log")
}
