#!/bin/sh
# The cross-built gateway client under qemu-user, against the native build:
#   cross-check.sh QEMU GATEWAY_CLIENT NATIVE_CLIENT NATIVE_SERVER
# 1. `--help` runs; 2. `totp --at T` prints the native build's code for the
#    same instant (a build or a slow emulator must not cross a time step);
# 3. over real TLS to a native rendezvousd with a self-signed certificate:
#    `expose` registers with the provisioning file's pin (TOTP, TLS, the
#    registrar API), and `lookup` with `--ca` finds it; 4. without a pin or
#    a CA, the build without built-in roots uses the system's bundle, which
#    does not hold the self-signed certificate: a certificate error, not
#    "no roots".
set -eu
qemu=$1 client=$2 native=$3 server=$4
. "$(dirname "$0")/lib.sh"
fail() { echo "cross-check: $*" >&2; exit 1; }

"$qemu" "$client" --help >/dev/null || fail "--help failed under $qemu"
secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
at=$(date +%s)
a=$(RENDEZVOUS_SECRET=$secret "$qemu" "$client" totp --at "$at")
b=$(RENDEZVOUS_SECRET=$secret "$native" totp --at "$at")
[ "$a" = "$b" ] || fail "totp at $at: $a under qemu, $b native"
echo "cross-check: totp agrees ($a at $at)"

start_server "$server" https
port=$registrar
uuid=$(sed -n 's/^uuid = //p' "$dir/agent.conf")

"$qemu" "$client" expose --config "$dir/agent.conf" --to 127.0.0.1:9 --pool 1 2>"$dir/expose.log" &
pids="$pids $!"
for _ in $(seq 300); do
	grep -qs "registered uuid=$uuid" "$dir/expose.log" && break
	sleep 0.1
done
grep -q "registered uuid=$uuid" "$dir/expose.log" ||
	fail "expose under qemu did not register: $(cat "$dir/expose.log")"
echo "cross-check: expose registered over TLS with the pin"

"$qemu" "$client" lookup --server "https://127.0.0.1:$port" --ca "$dir/state/cert.pem" --uuid "$uuid" >"$dir/triple" ||
	fail "lookup with --ca under qemu failed"
grep -q '"cookie":"I' "$dir/triple" || fail "lookup printed no triple: $(cat "$dir/triple")"
echo "cross-check: lookup with --ca found it"

if "$qemu" "$client" lookup --server "https://127.0.0.1:$port" --uuid "$uuid" >/dev/null 2>"$dir/roots.err"; then
	fail "a self-signed certificate was trusted without a pin or CA"
fi
if grep -q "no built-in CA roots" "$dir/roots.err"; then
	echo "cross-check: no system CA bundle here; the refusal names --ca and --pin-sha256"
else
	grep -qi "certificate" "$dir/roots.err" || fail "unexpected error without a pin: $(cat "$dir/roots.err")"
	echo "cross-check: without a pin, the system bundle is used and refuses the self-signed certificate"
fi
