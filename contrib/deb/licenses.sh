#!/bin/sh
# The notices of the code statically linked into the rendezvous programs,
# as text on stdout (build-deb.sh installs it, compressed, as
# /usr/share/doc/rendezvous/LICENSES-bundled.gz):
#
#   contrib/deb/licenses.sh TOP STATIC
#     TOP     the source tree (its Cargo.lock names the crates)
#     STATIC  yes when the programs are static (musl libc is in them too)
#
# The crates are Cargo.lock's registry packages whose sources cargo fetched
# for the build ($CARGO_HOME/registry/src): a few that only other systems
# or the tests use may be listed too, never one that is missing. Each crate's
# licence files are shown once per distinct text, after the crates that
# carry it. Then the Rust standard library's notices (from the toolchain's
# COPYRIGHT-library.html, which rustc's sysroot holds) and, for a static
# build, musl's (Debian's musl package: apt-get install -y musl).
# Reads no network and runs no cargo.
set -eu
top=$1
static=$2

die() { echo "licenses.sh: $*" >&2; exit 1; }

registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
[ -d "$registry" ] || die "$registry: no crate sources (build first)"
command -v rustc >/dev/null || die "needs rustc, for the standard library's notices"
# rustup's toolchains hold the notices in the sysroot; Debian's rustc
# package in its copyright file.
std_notes="$(rustc --print sysroot)/share/doc/rust/COPYRIGHT-library.html"
[ -f "$std_notes" ] || std_notes=/usr/share/doc/rustc/copyright
[ -f "$std_notes" ] || die "no notices of the Rust standard library in rustc's sysroot or /usr/share/doc/rustc"
musl_notes=/usr/share/doc/musl/copyright
if [ "$static" = yes ] && [ ! -f "$musl_notes" ]; then
	die "$musl_notes: missing, for a static build's musl notices: apt-get install -y musl"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name version, of every registry package in Cargo.lock.
awk '/^\[\[package\]\]/ { n = ""; v = "" }
	/^name = / { n = $3 }
	/^version = / { v = $3 }
	/^source = "registry/ { gsub(/"/, "", n); gsub(/"/, "", v); print n, v }' \
	"$top/Cargo.lock" | sort -u >"$work/locked"

echo "Code statically linked into rendezvous and rendezvousd, with its notices"
echo "========================================================================="
echo
echo "Rust crates (name version: licence):"
: >"$work/hashes"
while read -r name version; do
	dir=$(find "$registry" -mindepth 2 -maxdepth 2 -type d -name "$name-$version" | head -n 1)
	if [ -z "$dir" ]; then
		echo "licenses.sh: $name $version: no sources in $registry (not built here?); not listed" >&2
		continue
	fi
	licence=$(sed -n 's/^license *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n 1)
	echo "  $name $version: ${licence:-see its files below}"
	find "$dir" -maxdepth 1 -type f \( -iname 'licen[cs]e*' -o -iname 'copying*' \
		-o -iname 'copyright*' -o -iname 'notice*' -o -iname 'unlicense*' \) | sort |
		while read -r f; do
			h=$(sha256sum <"$f" | cut -c1-64)
			[ -f "$work/$h" ] || cp "$f" "$work/$h"
			echo "$h $name-$version/$(basename "$f")" >>"$work/hashes"
		done
done <"$work/locked"
echo
echo "The Rust standard library: Apache-2.0 OR MIT, The Rust Project Developers;"
echo "its notices and those of what it bundles follow the crates' texts."
if [ "$static" = yes ]; then
	echo "musl libc (this build is static): MIT and others; its notices are last."
fi

# Each distinct text once, after the files that carry it.
for h in $(awk '{ print $1 }' "$work/hashes" | awk '!seen[$0]++'); do
	echo
	echo "------------------------------------------------------------------------"
	awk -v h="$h" '$1 == h { print "  " $2 }' "$work/hashes"
	echo "------------------------------------------------------------------------"
	echo
	cat "$work/$h"
done

echo
echo "------------------------------------------------------------------------"
echo "  The Rust standard library (rustc $(rustc --version | cut -d' ' -f2), $(basename "$std_notes"))"
echo "------------------------------------------------------------------------"
case $std_notes in
*.html)
	sed -e 's/<[^>]*>//g' -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&quot;/"/g' \
		-e 's/&#34;/"/g' -e 's/&#60;/</g' -e 's/&#62;/>/g' -e "s/&#39;/'/g" \
		-e 's/&amp;/\&/g' -e 's/^[[:space:]]*//' "$std_notes" | cat -s
	;;
*) cat "$std_notes" ;;
esac

if [ "$static" = yes ]; then
	echo
	echo "------------------------------------------------------------------------"
	echo "  musl libc ($musl_notes)"
	echo "------------------------------------------------------------------------"
	echo
	cat "$musl_notes"
fi
