#!/bin/sh
# Checks a package that build-deb.sh made: contrib/deb/check-deb.sh DEB
#
# It reads the package only with dpkg-deb (-c, -I, -f, -x, -e) and compares
# it with the sources it came from (man/, contrib/), so a change to either
# that the packaging does not follow shows here. One line per check; the
# first failure stops it with a message and exit status 1.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/contrib/deb/elf.sh"
deb=${1:?usage: check-deb.sh DEB}

ok() { echo "ok: $*"; }
fail() { echo "check-deb.sh: FAIL: $*" >&2; exit 1; }

[ -f "$deb" ] || fail "$deb: no such file"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb -I "$deb" >/dev/null || fail "dpkg-deb -I cannot read $deb"
dpkg-deb -x "$deb" "$scratch/root" || fail "dpkg-deb -x cannot unpack $deb"
dpkg-deb -e "$deb" "$scratch/DEBIAN" || fail "dpkg-deb -e cannot unpack $deb's control"
ok "dpkg-deb unpacks $deb"

# Every path in the package with its mode; owners are checked apart.
cat >"$scratch/expected" <<'EOF'
drwxr-xr-x ./
drwxr-xr-x ./usr/
drwxr-xr-x ./usr/bin/
-rwxr-xr-x ./usr/bin/rendezvous
drwxr-xr-x ./usr/lib/
drwxr-xr-x ./usr/lib/systemd/
drwxr-xr-x ./usr/lib/systemd/system/
-rw-r--r-- ./usr/lib/systemd/system/rendezvous-expose@.service
-rw-r--r-- ./usr/lib/systemd/system/rendezvousd.service
drwxr-xr-x ./usr/lib/sysusers.d/
-rw-r--r-- ./usr/lib/sysusers.d/rendezvous.conf
drwxr-xr-x ./usr/lib/tmpfiles.d/
-rw-r--r-- ./usr/lib/tmpfiles.d/rendezvous.conf
drwxr-xr-x ./usr/sbin/
-rwxr-xr-x ./usr/sbin/rendezvousd
drwxr-xr-x ./usr/share/
drwxr-xr-x ./usr/share/doc/
drwxr-xr-x ./usr/share/doc/rendezvous/
-rw-r--r-- ./usr/share/doc/rendezvous/LICENSES-bundled.gz
-rw-r--r-- ./usr/share/doc/rendezvous/changelog.gz
-rw-r--r-- ./usr/share/doc/rendezvous/copyright
drwxr-xr-x ./usr/share/man/
drwxr-xr-x ./usr/share/man/man1/
-rw-r--r-- ./usr/share/man/man1/rendezvous.1.gz
drwxr-xr-x ./usr/share/man/man5/
-rw-r--r-- ./usr/share/man/man5/rendezvous-users.5.gz
drwxr-xr-x ./usr/share/man/man7/
-rw-r--r-- ./usr/share/man/man7/rendezvous-protocol.7.gz
drwxr-xr-x ./usr/share/man/man8/
-rw-r--r-- ./usr/share/man/man8/rendezvousd.8.gz
EOF
dpkg-deb -c "$deb" >"$scratch/listing"
awk '{ print $6 }' "$scratch/listing" | LC_ALL=C sort >"$scratch/paths"
awk '{ print $2 }' "$scratch/expected" | LC_ALL=C sort >"$scratch/expected-paths"
if ! cmp -s "$scratch/paths" "$scratch/expected-paths"; then
	fail "file list differs (< in the package only, > missing from it):
$(diff "$scratch/paths" "$scratch/expected-paths" | grep '^[<>]')"
fi
ok "file list: the $(wc -l <"$scratch/paths") expected paths, nothing else"
others=$(awk '$2 != "root/root" { print $2, $6 }' "$scratch/listing")
[ -z "$others" ] || fail "not owned by root/root: $others"
ok "owners: all root/root"
awk '{ print $1, $6 }' "$scratch/listing" | LC_ALL=C sort -k2 >"$scratch/modes"
LC_ALL=C sort -k2 "$scratch/expected" >"$scratch/expected-modes"
if ! cmp -s "$scratch/modes" "$scratch/expected-modes"; then
	fail "modes differ (< package, > expected):
$(diff "$scratch/modes" "$scratch/expected-modes" | grep '^[<>]')"
fi
ok "modes: binaries and folders 0755, other files 0644"

# Man pages: gzip -9n (header: no name flag, zero time stamp, maximum
# compression), and the pages of man/ exactly.
for page in rendezvous.1 rendezvous-users.5 rendezvous-protocol.7 rendezvousd.8; do
	gz="$scratch/root/usr/share/man/man${page##*.}/$page.gz"
	gzip -t "$gz" 2>/dev/null || fail "$page.gz is not valid gzip"
	header=$(od -An -tu1 -j3 -N6 "$gz" | tr -s ' ' ' ')
	[ "$header" = " 0 0 0 0 0 2" ] ||
		fail "$page.gz: gzip header flags, time, extra flags are$header, not those of gzip -9n"
	gzip -dc "$gz" | cmp -s - "$top/man/$page" || fail "$page.gz does not decompress to man/$page"
done
ok "man pages: gzip -9n, decompress to man/*"

# The units: contrib/systemd's with only ExecStart= moved from /usr/local to
# the package's binaries, which must exist.
for unit in rendezvousd.service rendezvous-expose@.service; do
	packaged="$scratch/root/usr/lib/systemd/system/$unit"
	! grep -q /usr/local "$packaged" || fail "$unit still names /usr/local"
	sed 's|^ExecStart=/usr/local/|ExecStart=/usr/|' "$top/contrib/systemd/$unit" |
		cmp -s - "$packaged" || fail "$unit differs from contrib/systemd/$unit beyond ExecStart="
	exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$packaged")
	[ -x "$scratch/root$exe" ] || fail "$unit: ExecStart=$exe is not in the package"
done
ok "units: ExecStart= names /usr/bin/rendezvous and /usr/sbin/rendezvousd"

# sysusers.d and tmpfiles.d agree with rendezvousd.service: its User= and
# Group=, its state folder and StateDirectoryMode=.
unit="$top/contrib/systemd/rendezvousd.service"
user=$(sed -n 's/^User=//p' "$unit")
group=$(sed -n 's/^Group=//p' "$unit")
mode=$(sed -n 's/^StateDirectoryMode=//p' "$unit")
state=/var/lib/$(sed -n 's/^StateDirectory=//p' "$unit")
grep -q "^u $user - .* $state /usr/sbin/nologin\$" "$scratch/root/usr/lib/sysusers.d/rendezvous.conf" ||
	fail "sysusers.d/rendezvous.conf does not create user $user with home $state"
grep -qx "d $state $mode $user $group -" "$scratch/root/usr/lib/tmpfiles.d/rendezvous.conf" ||
	fail "tmpfiles.d/rendezvous.conf does not make $state mode $mode owned by $user:$group"
ok "sysusers.d, tmpfiles.d: user $user, $state mode $mode, as the unit says"

doc="$scratch/root/usr/share/doc/rendezvous"
head -n1 "$doc/copyright" |
	grep -qx 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' ||
	fail "copyright is not in the machine-readable format"
grep -qx 'License: Expat' "$doc/copyright" || fail "copyright does not say License: Expat"
grep -q 'LICENSES-bundled.gz' "$doc/copyright" || fail "copyright does not point to LICENSES-bundled.gz"
ok "copyright: machine-readable, Expat (MIT), pointing to the bundled code's notices"
# Every crate the lock file names from the registry that the programs link
# (rustls, ring, log: the heart of both) is there with its notices, and so
# is the standard library; a static build's musl too.
gunzip -c "$doc/LICENSES-bundled.gz" >"$scratch/bundled"
for crate in rustls ring log uuid rustix; do
	v=$(awk -v n="\"$crate\"" '$1 == "name" && $3 == n { getline; gsub(/"/, "", $3); print $3; exit }' "$top/Cargo.lock")
	[ -n "$v" ] || fail "Cargo.lock names no $crate"
	grep -q "^  $crate $v: " "$scratch/bundled" || fail "LICENSES-bundled.gz does not list $crate $v"
	grep -q "^  $crate-$v/" "$scratch/bundled" || fail "LICENSES-bundled.gz has no notice of $crate $v"
done
std_lines=$(sed -n '/^  The Rust standard library (rustc /,$p' "$scratch/bundled" | wc -l)
[ "$std_lines" -gt 100 ] ||
	fail "LICENSES-bundled.gz lacks the standard library's notices"
if elf_static "$scratch/root/usr/bin/rendezvous"; then
	grep -q 'Upstream-Name: musl' "$scratch/bundled" || fail "a static build's LICENSES-bundled.gz lacks musl's notices"
fi
ok "LICENSES-bundled.gz: the crates, the standard library$(elf_static "$scratch/root/usr/bin/rendezvous" && echo ', musl')"

# Control fields. The version is Cargo.toml's, as build-deb.sh turns it.
version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$top/Cargo.toml" | sed 's/-/~/')
gzip -dc "$doc/changelog.gz" | head -n1 | grep -q "^rendezvous ($version) " ||
	fail "changelog.gz does not start with version $version"
ok "changelog.gz: version $version"
field() { dpkg-deb -f "$deb" "$1"; }
bin="$scratch/root/usr/bin/rendezvous"
arch=$(elf_arch "$bin") || fail "cannot tell the architecture of usr/bin/rendezvous"
for f in "Package rendezvous" "Version $version" "Architecture $arch" \
	"Maintainer rendezvous developers <rendezvous@example.org>" "Section net" "Priority optional"; do
	name=${f%% *}
	[ "$(field "$name")" = "${f#* }" ] || fail "control: $name is '$(field "$name")', not '${f#* }'"
done
field Installed-Size | grep -qx '[1-9][0-9]*' || fail "control: Installed-Size '$(field Installed-Size)' is not a size in KiB"
depends=$(field Depends)
# A static build needs no library; a dynamic one, libc at least.
if elf_static "$bin"; then needs=adduser; else needs="libc6 adduser"; fi
for d in $needs; do
	echo ", $depends" | grep -q ", $d\\b" || fail "control: Depends '$depends' lacks $d"
done
[ "$(field Description | wc -l)" -gt 3 ] || fail "control: Description has no long description"
ok "control: Package, Version, Architecture, Maintainer, Section, Priority, Installed-Size, Depends ($depends), Description"

# Maintainer scripts: exactly postinst, prerm and postrm, mode 0755, plain
# sh that parses, stops on errors, and never starts or enables a service;
# prerm stops the services on removal only.
members=$(cd "$scratch/DEBIAN" && echo *)
[ "$members" = "control md5sums postinst postrm prerm" ] ||
	fail "control members are '$members', not 'control md5sums postinst postrm prerm'"
sed -n '/^remove)/,/;;/p' "$scratch/DEBIAN/prerm" | grep -q 'deb-systemd-invoke stop rendezvousd.service' ||
	fail "prerm does not stop rendezvousd on remove"
for s in postinst prerm postrm; do
	script="$scratch/DEBIAN/$s"
	[ "$(stat -c %a "$script")" = 755 ] || fail "$s has mode $(stat -c %a "$script"), not 0755"
	[ "$(head -n1 "$script")" = "#!/bin/sh" ] || fail "$s does not start with #!/bin/sh"
	sh -n "$script" || fail "$s does not parse (sh -n)"
	grep -qx 'set -e' "$script" || fail "$s has no 'set -e'"
	if grep -v '^[[:space:]]*#' "$script" |
		grep -Eq 'systemctl[^#]*(start|enable)|deb-systemd-invoke[^#]*(start|enable)|deb-systemd-helper|invoke-rc\.d'; then
		fail "$s starts or enables a service"
	fi
done
ok "maintainer scripts: postinst, prerm, postrm 0755, sh -n clean, set -e, start or enable nothing; prerm stops the services on remove"
(cd "$scratch/root" && md5sum --quiet -c "$scratch/DEBIAN/md5sums") >/dev/null 2>&1 ||
	fail "md5sums does not match the files"
[ "$(wc -l <"$scratch/DEBIAN/md5sums")" = "$(grep -c '^-' "$scratch/expected")" ] ||
	fail "md5sums does not list every file"
ok "md5sums: every file, matching"

# Another architecture's binaries run under qemu-user.
run=
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
	case $arch in
	amd64) run=qemu-x86_64 ;; arm64) run=qemu-aarch64 ;; armhf) run=qemu-arm ;;
	i386) run=qemu-i386 ;; riscv64) run=qemu-riscv64 ;;
	esac
	command -v "$run" >/dev/null 2>&1 || fail "$arch binaries: $run is needed to run them (apt-get install qemu-user)"
fi
for exe in usr/bin/rendezvous usr/sbin/rendezvousd; do
	$run "$scratch/root/$exe" --help >/dev/null 2>&1 || fail "$exe --help fails"
done
ok "binaries: both run (--help${run:+, under $run})"
echo "check-deb.sh: $deb is good"
