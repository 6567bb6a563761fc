#!/bin/bash
# Setup latency of two builds of the generic chain, A/B, on this machine:
# a client connects to `rendezvous connect --listen`, through rendezvousd
# and `rendezvous expose`, to a local echo service, and sends 41 bytes
# and reads their echo; each exchange right after the same one with the
# service directly.
#
#   contrib/setup-ab.sh OLD_BINDIR NEW_BINDIR [ROUNDS] [N]
#
# Each round starts a fresh chain from each build in turn (which goes
# first alternates) and makes N exchanges (default 2000) through each; it prints
# each round's p50 and p99 added over direct, and the medians over ROUNDS
# (default 10). Run on a shared machine a single round says little: the
# direct baseline itself moves by tens of µs from one minute to the next.
set -eu
if [ "${1:-}" = --one ]; then
	# One chain from $2, measured with the client $3.
	bin=$2 cl=$3
	. "$(dirname "$0")/lib.sh"
	start_server "$bin/rendezvousd" http --plaintext
	"$cl" echo >"$dir/echo.port" &
	pids="$pids $!"
	for _ in $(seq 50); do [ -s "$dir/echo.port" ] && break; sleep 0.1; done
	start_chain "$bin" "$(cat "$dir/echo.port")" 4
	"$cl" "$4" "$entry" "$(cat "$dir/echo.port")"
	exit
fi
old=$1 new=$2 rounds=${3:-10} n=${4:-2000}
command -v rustc >/dev/null || { echo "needs rustc" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/cl.rs" <<'RS'
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;
fn one(port: u16) -> Option<f64> {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut b = [0u8; 41];
    s.write_all(&[b'x'; 41]).ok()?;
    s.read_exact(&mut b).ok()?;
    Some(t.elapsed().as_secs_f64() * 1e6)
}
fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a[1] == "echo" {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        println!("{}", l.local_addr().expect("addr").port());
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n @ 1..) = c.read(&mut b) {
                    if c.write_all(&b[..n]).is_err() { return }
                }
            });
        }
        return;
    }
    let n: usize = a[1].parse().expect("N");
    let (chain, direct): (u16, u16) = (a[2].parse().expect("port"), a[3].parse().expect("port"));
    for _ in 0..50 { one(direct); one(chain); }
    let (mut d, mut c) = (Vec::new(), Vec::new());
    for _ in 0..n {
        if let (Some(x), Some(y)) = (one(direct), one(chain)) { d.push(x); c.push(y); }
    }
    if d.is_empty() { eprintln!("no exchange went through"); std::process::exit(1) }
    println!("{:.0} {:.0}", pct(&mut c, 0.5) - pct(&mut d, 0.5), pct(&mut c, 0.99) - pct(&mut d, 0.99));
}
RS
rustc -O --edition 2021 -o "$work/cl" "$work/cl.rs"
for r in $(seq "$rounds"); do
	# Which build goes first alternates, so neither always follows the other.
	order="old new"; [ $((r % 2)) = 0 ] && order="new old"
	for b in $order; do
		d=$old; [ $b = new ] && d=$new
		read -r p50 p99 < <(bash "$0" --one "$d" "$work/cl" "$n")
		echo "$p50 $p99" >>"$work/$b"
		echo "round $r $b: p50 +$p50 µs, p99 +$p99 µs"
	done
done
for b in old new; do
	sort -n "$work/$b" | awk -v b="$b" '{p50[NR]=$1} END {printf "%s: median of round p50s +%s µs\n", b, p50[int((NR+1)/2)]}'
	sort -n -k2 "$work/$b" | awk -v b="$b" '{p99[NR]=$2} END {printf "%s: median of round p99s +%s µs\n", b, p99[int((NR+1)/2)]}'
done
