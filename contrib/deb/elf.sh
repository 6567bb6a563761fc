# Sourced by build-deb.sh and check-deb.sh: what an executable's ELF header
# says, so that a package is labelled for the machine its binaries are
# built for (a cross build's too), not for the one that packs it.

# elf_arch FILE: the Debian architecture of FILE's e_machine (bytes 18-19,
# little-endian: every architecture below is). 40 is any 32-bit ARM; our
# cross builds for it are hard-float (armv7-unknown-linux-musleabihf).
elf_arch() {
	[ "$(od -An -c -N4 "$1" | tr -d ' ')" = '177ELF' ] || { echo "$1: not an ELF file" >&2; return 1; }
	set -- "$1" $(od -An -tu1 -j18 -N2 "$1")
	case $(($2 + 256 * $3)) in
	62) echo amd64 ;;
	183) echo arm64 ;;
	40) echo armhf ;;
	3) echo i386 ;;
	243) echo riscv64 ;;
	*) echo "$1: ELF machine $(($2 + 256 * $3)): no Debian architecture known for it" >&2; return 1 ;;
	esac
}

# elf_static FILE: true when FILE asks for no program interpreter (linked
# statically, as the musl builds are: it needs no library at all).
elf_static() {
	! readelf -lW "$1" | grep -q 'Requesting program interpreter'
}

# elf_strip_tool ARCH: strip(1) for ARCH's binaries: $STRIP if set, else
# the host's for the host's architecture, else Debian's cross binutils'
# (binutils-aarch64-linux-gnu and the like).
elf_strip_tool() {
	if [ -n "${STRIP:-}" ]; then echo "$STRIP"; return; fi
	if [ "$1" = "$(dpkg --print-architecture)" ]; then echo strip; return; fi
	case $1 in
	amd64) t=x86_64-linux-gnu ;; arm64) t=aarch64-linux-gnu ;; armhf) t=arm-linux-gnueabihf ;;
	i386) t=i686-linux-gnu ;; riscv64) t=riscv64-linux-gnu ;;
	esac
	command -v "$t-strip" >/dev/null 2>&1 || { echo "no $t-strip for $1 binaries: apt-get install binutils-$t, or set STRIP" >&2; return 1; }
	echo "$t-strip"
}
