# Shared by the contrib scripts (sourced): a scratch folder $dir, removed on
# exit once the processes in $pids are stopped and waited for (a server that
# is stopping still writes its state there), and a rendezvousd on ports of
# its own choosing.
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
