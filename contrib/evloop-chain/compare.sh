#!/bin/bash
# Setup over direct through three chains in front of one echo service, in
# turn, ROUNDS times: the event-loop chain of this folder, rendezvous's
# (connect --listen, rendezvousd, expose from BINDIR) and rathole's (when
# `make bench-peers` installed it into target/peers). See README.md here.
#
#   contrib/evloop-chain/compare.sh [BINDIR] [ROUNDS]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-target/release}
rounds=${2:-3}
ev=$here/target/release/evloop-chain
[ -x "$ev" ] || { echo "build it first: cargo build --release --manifest-path $here/Cargo.toml" >&2; exit 1; }
. "$here/../lib.sh"

# wait_file FILE: until it holds something, within 10 s.
wait_file() {
	for _ in $(seq 100); do [ -s "$1" ] && return; sleep 0.1; done
	echo "nothing in $1" >&2
	exit 1
}

"$ev" echo "$dir/echo.port" & pids="$pids $!"
wait_file "$dir/echo.port"
svc=$(cat "$dir/echo.port")

"$ev" b "$dir/b.ports" & pids="$pids $!"
wait_file "$dir/b.ports"
read -r b_a b_c <"$dir/b.ports" || true
"$ev" c "$b_c" "$svc" 4 & pids="$pids $!"
"$ev" a "$dir/a.port" "$b_a" & pids="$pids $!"
wait_file "$dir/a.port"
ports="$(cat "$dir/a.port")"
names="evloop-chain"

start_server "$bin/rendezvousd" http --plaintext
start_chain "$bin" "$svc" 4
ports="$ports $entry"
names="$names rendezvous"

rathole=$here/../../target/peers/bin/rathole
if [ -x "$rathole" ]; then
	control=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	public=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	printf '[server]\nbind_addr = "127.0.0.1:%s"\n[server.services.echo]\ntoken = "probe"\nbind_addr = "127.0.0.1:%s"\n' \
		"$control" "$public" >"$dir/rs.toml"
	printf '[client]\nremote_addr = "127.0.0.1:%s"\n[client.services.echo]\ntoken = "probe"\nlocal_addr = "127.0.0.1:%s"\n' \
		"$control" "$svc" >"$dir/rc.toml"
	"$rathole" --server "$dir/rs.toml" >/dev/null 2>&1 & pids="$pids $!"
	sleep 0.3
	"$rathole" --client "$dir/rc.toml" >/dev/null 2>&1 & pids="$pids $!"
	sleep 1
	ports="$ports $public"
	names="$names rathole"
else
	echo "(no rathole in target/peers: make bench-peers installs it)"
fi

# Each port named in what is printed.
rename=
# shellcheck disable=SC2086
set -- $names
for p in $ports; do
	rename="$rename;s/^port $p:/$1:/"
	shift
done
# shellcheck disable=SC2086
"$ev" measure 200 "$svc" $ports >/dev/null
for _ in $(seq "$rounds"); do
	# shellcheck disable=SC2086
	"$ev" measure 1000 "$svc" $ports | sed "${rename#;}"
done
