#!/bin/sh
# Builds the Debian package rendezvous_VERSION_ARCH.deb from binaries built
# before (`make deb` does `make release` first):
#
#   contrib/deb/build-deb.sh [BINDIR [OUTDIR]]
#     BINDIR             holds rendezvous and rendezvousd (default target/release)
#     OUTDIR             receives the package (default target/deb)
#     DEB_COMPRESS       dpkg-deb -Z: xz (default), gzip, zstd, or none (quick)
#     DEB_BUILD_OPTIONS  "nostrip" keeps the binaries' symbols, as in Debian
#     SOURCE_DATE_EPOCH  the date in changelog.gz (default: now)
#
# Plain `dpkg-deb --build` on a tree staged here, not cargo-deb or debhelper:
# the package is small and fixed, and this way building it needs no tool that
# a Debian machine with a Rust toolchain lacks (dpkg-deb, gzip, coreutils,
# binutils' strip) and never runs cargo.
# --root-owner-group makes every file root's without needing root or fakeroot.
set -eu
umask 022

top=$(cd "$(dirname "$0")/../.." && pwd)
here="$top/contrib/deb"
bindir=${1:-$top/target/release}
out=${2:-$top/target/deb}

die() { echo "build-deb.sh: $*" >&2; exit 1; }

compress=${DEB_COMPRESS:-xz}
case $compress in
xz | gzip | zstd | none) ;;
*) die "DEB_COMPRESS=$compress: not xz, gzip, zstd or none" ;;
esac

for b in rendezvous rendezvousd; do
	[ -x "$bindir/$b" ] || die "$bindir/$b: missing (make release, or make build for target/debug)"
done
. "$here/elf.sh"
# The binaries' own architecture (a cross build is packaged for its
# target), and both alike.
arch=$(elf_arch "$bindir/rendezvous") || die "cannot tell the architecture of $bindir/rendezvous"
[ "$(elf_arch "$bindir/rendezvousd")" = "$arch" ] || die "$bindir: rendezvous is $arch, rendezvousd is not"

# The [package] table's fields. A Cargo pre-release such as 1.0.0-rc.1
# becomes 1.0.0~rc.1: "~" sorts before the release, and a "-" would read as a
# Debian revision (this is a native package: the packaging lives upstream).
cargo_field() {
	sed -n "/^\[package\]/,/^\[/s/^$1 *= *\"\([^\"]*\)\".*/\1/p" "$top/Cargo.toml"
}
version=$(cargo_field version | sed 's/-/~/')
[ -n "$version" ] || die "no version in $top/Cargo.toml"
license=$(cargo_field license)
[ "$license" = MIT ] || die "Cargo.toml says license \"$license\" but contrib/deb/copyright says MIT (Expat): update it"

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage="$out/stage"
deb="$out/rendezvous_${version}_${arch}.deb"
rm -rf "$stage" "$deb"

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/sbin" \
	"$stage/usr/lib/systemd/system" "$stage/usr/lib/sysusers.d" \
	"$stage/usr/lib/tmpfiles.d" "$stage/usr/share/doc/rendezvous" \
	"$stage/usr/share/man/man1" "$stage/usr/share/man/man5" \
	"$stage/usr/share/man/man7" "$stage/usr/share/man/man8"

# Debian strips binaries (their symbols would go to a -dbgsym package) unless
# DEB_BUILD_OPTIONS says nostrip, and drops the compiler's .comment and .note
# sections too: the same strip(1) call as dh_strip's for executables.
install -m 0755 "$bindir/rendezvous" "$stage/usr/bin/rendezvous"
install -m 0755 "$bindir/rendezvousd" "$stage/usr/sbin/rendezvousd"
case " ${DEB_BUILD_OPTIONS:-} " in
*" nostrip "*) ;;
*) strip=$(elf_strip_tool "$arch") || die "cannot strip $arch binaries"
	"$strip" --remove-section=.comment --remove-section=.note \
		"$stage/usr/bin/rendezvous" "$stage/usr/sbin/rendezvousd" ;;
esac

# Man pages: gzip -9n, without name or time stamp, so equal pages give equal
# files (Debian policy 12.1; lintian checks it).
for page in rendezvous.1 rendezvous-users.5 rendezvous-protocol.7 rendezvousd.8; do
	dir="$stage/usr/share/man/man${page##*.}"
	install -m 0644 "$top/man/$page" "$dir/$page"
	gzip -9n "$dir/$page"
done

# The units name the binaries under /usr/local (make install's PREFIX); the
# package puts them under /usr.
for unit in rendezvousd.service rendezvous-expose@.service; do
	sed 's|^ExecStart=/usr/local/|ExecStart=/usr/|' "$top/contrib/systemd/$unit" \
		>"$stage/usr/lib/systemd/system/$unit"
	if grep -q /usr/local "$stage/usr/lib/systemd/system/$unit"; then
		die "contrib/systemd/$unit: /usr/local left after the ExecStart= rewrite"
	fi
done
install -m 0644 "$here/rendezvous.sysusers" "$stage/usr/lib/sysusers.d/rendezvous.conf"
install -m 0644 "$here/rendezvous.tmpfiles" "$stage/usr/lib/tmpfiles.d/rendezvous.conf"

# A native package's changelog is changelog.gz (policy 12.7: changelog.Debian.gz
# is for a package with a separate upstream).
install -m 0644 "$here/copyright" "$stage/usr/share/doc/rendezvous/copyright"
# What the programs bundle (crates, the Rust standard library, musl when
# static), with its notices: the copyright file's header points there.
static=no
elf_static "$bindir/rendezvous" && static=yes
sh "$here/licenses.sh" "$top" "$static" >"$out/LICENSES-bundled" || die "cannot gather the bundled code's notices"
gzip -9n <"$out/LICENSES-bundled" >"$stage/usr/share/doc/rendezvous/LICENSES-bundled.gz"
rm -f "$out/LICENSES-bundled"
date=$(date -u -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
cat >"$stage/usr/share/doc/rendezvous/changelog" <<EOF
rendezvous ($version) unstable; urgency=medium

  * Built from the rendezvous sources; their history is in git.

 -- rendezvous developers <rendezvous@example.org>  $date
EOF
gzip -9n "$stage/usr/share/doc/rendezvous/changelog"

install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"

# Depends: dpkg-shlibdeps (dpkg-dev) derives it from the libraries and symbol
# versions the binaries use; it insists on a debian/control in its working
# folder, an empty one will do. Without dpkg-dev, what `objdump -p` showed
# for 0.1.0 on amd64: libc.so.6 up to GLIBC_2.34, and libgcc_s.so.1 for
# unwinding. adduser: postinst's fallback without systemd-sysusers.
# Static binaries (the musl builds) need no library: adduser alone.
if elf_static "$stage/usr/bin/rendezvous" && elf_static "$stage/usr/sbin/rendezvousd"; then
	shlibs=
elif [ "$arch" != "$(dpkg --print-architecture)" ]; then
	die "$arch binaries linked to shared libraries: their Depends cannot be derived here"
elif command -v dpkg-shlibdeps >/dev/null 2>&1; then
	mkdir -p "$out/shlibs/debian"
	: >"$out/shlibs/debian/control"
	shlibs=$(cd "$out/shlibs" && dpkg-shlibdeps -O \
		-e"$stage/usr/bin/rendezvous" -e"$stage/usr/sbin/rendezvousd" |
		sed -n 's/^shlibs:Depends=//p')
	rm -rf "$out/shlibs"
else
	shlibs='libc6 (>= 2.34), libgcc-s1 (>= 4.2)'
fi
elf_static "$stage/usr/bin/rendezvous" || [ -n "$shlibs" ] || die "dpkg-shlibdeps found no library dependencies"

# Installed-Size is in KiB, for everything but the control files.
size=$(du -sk --exclude=DEBIAN "$stage" | sed 's/[^0-9].*//')
sed -e "s#@VERSION@#$version#" -e "s#@ARCH@#$arch#" \
	-e "s#@INSTALLED_SIZE@#$size#" -e "s#@DEPENDS@#${shlibs:+$shlibs, }adduser#" \
	"$here/control.in" >"$stage/DEBIAN/control"
# md5sums: what dpkg --verify and debsums compare the installed files with.
(cd "$stage" && find usr -type f | LC_ALL=C sort | xargs md5sum) >"$stage/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
