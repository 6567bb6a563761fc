# rendezvous: build, test, check, run and install.
# `make run` starts rendezvousd on local ports with a state folder in ./var;
# `make test` runs the whole test suite (debug build).

CARGO     ?= cargo
PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
SBINDIR   ?= $(PREFIX)/sbin
MANDIR    ?= $(PREFIX)/share/man
DESTDIR   ?=
STATE     ?= ./var
RELEASE   ?= target/release

MAN1 := man/rendezvous.1
MAN5 := man/rendezvous-users.5
MAN7 := man/rendezvous-protocol.7
MAN8 := man/rendezvousd.8
MANS := $(MAN1) $(MAN5) $(MAN7) $(MAN8)

FUZZ_SECS    ?= 60
FUZZ_TARGETS := head authorization connect_target cookie_line users_file provision_file http_date

# Cross-compilation for gateways: a static musl binary, ring's C built with
# Debian's cross gcc (apt-get install gcc-aarch64-linux-gnu; qemu-user to check).
TARGET   ?= aarch64-unknown-linux-musl
CROSS_CC ?= aarch64-linux-gnu-gcc
CROSS_AR ?= aarch64-linux-gnu-ar
PROFILE  ?= minimal
CROSS_DIR = target/$(TARGET)/$(PROFILE)

.PHONY: all build release minimal test check lint-man run install uninstall clean fuzz soak soak-cluster bench cross cross-check deb deb-check

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

minimal:
	$(CARGO) build --profile minimal

test:
	$(CARGO) test --locked

check: lint-man
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	# Without the tests' `internals` feature the inside is pub(crate), so
	# this run finds what only the tests use.
	$(CARGO) clippy --locked -- -D warnings
	$(CARGO) test --locked --test layers
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps

lint-man:
	@for m in $(MANS); do \
		out=$$(groff -mdoc -ww -z $$m 2>&1); \
		if [ -n "$$out" ]; then echo "$$m: groff: $$out"; exit 1; fi; \
		if command -v mandoc >/dev/null 2>&1; then \
			out=$$(mandoc -T lint -W warning $$m 2>&1); \
			if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; \
		fi; \
	done; echo "man pages lint clean"

# Starts the server in the foreground on 127.0.0.1:8898 (HTTPS) and :8899.
# The state folder gets a self-signed certificate and an empty users file.
run: build
	target/debug/rendezvousd serve --state-dir $(STATE) \
		--registrar 127.0.0.1:8898 --rendezvous 127.0.0.1:8899

install:
	@test -x $(RELEASE)/rendezvous -a -x $(RELEASE)/rendezvousd || \
		{ echo "run 'make release' first"; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR)
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -d $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(RELEASE)/rendezvous $(DESTDIR)$(BINDIR)/rendezvous
	install -m 0755 $(RELEASE)/rendezvousd $(DESTDIR)$(SBINDIR)/rendezvousd
	install -m 0644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(MAN7) $(DESTDIR)$(MANDIR)/man7/
	install -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/rendezvous $(DESTDIR)$(SBINDIR)/rendezvousd
	rm -f $(DESTDIR)$(MANDIR)/man1/rendezvous.1 $(DESTDIR)$(MANDIR)/man5/rendezvous-users.5
	rm -f $(DESTDIR)$(MANDIR)/man7/rendezvous-protocol.7 $(DESTDIR)$(MANDIR)/man8/rendezvousd.8

cross:
	rustup target list --installed | grep -qx '$(TARGET)' || rustup target add '$(TARGET)'
	env "CC_$$(echo '$(TARGET)' | tr - _)=$(CROSS_CC)" \
	    "AR_$$(echo '$(TARGET)' | tr - _)=$(CROSS_AR)" \
	    "CARGO_TARGET_$$(echo '$(TARGET)' | tr a-z- A-Z_)_LINKER=$(CROSS_CC)" \
	    $(CARGO) build --locked --profile $(PROFILE) --target '$(TARGET)'
	ls -l $(CROSS_DIR)/rendezvous $(CROSS_DIR)/rendezvousd

# Runs the cross-built client under qemu-user: --help, and a TOTP code that
# must equal the native build's for the same instant (--at: a build or a
# slow emulator must not cross a time step between the two).
cross-check: cross build
	qemu-aarch64 $(CROSS_DIR)/rendezvous --help >/dev/null
	at=$$(date +%s); \
	test "$$(RENDEZVOUS_SECRET=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ qemu-aarch64 $(CROSS_DIR)/rendezvous totp --at $$at)" = \
	     "$$(RENDEZVOUS_SECRET=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ target/debug/rendezvous totp --at $$at)"
	@echo "cross-check: $(TARGET) binaries run under qemu and agree with the native build"

# The Debian package target/deb/rendezvous_VERSION_ARCH.deb from the release
# binaries (contrib/deb/build-deb.sh; DEB_COMPRESS=none builds it quicker).
deb: release
	contrib/deb/build-deb.sh target/release target/deb

# Packages the debug binaries that `make test` built (uncompressed: quick)
# and checks the package's files, modes, control fields and scripts.
deb-check:
	rm -rf target/deb-check
	DEB_COMPRESS=none contrib/deb/build-deb.sh target/debug target/deb-check
	contrib/deb/check-deb.sh target/deb-check/rendezvous_*.deb

# The full load-and-fault run (tests/soak/; its fast subset is in `make test`).
soak:
	$(CARGO) test --release --test soak -- --ignored --nocapture --test-threads=1 --skip soak_cluster

# The soak over three nodes on a Redis store, one killed midway (needs
# redis-server): pairs, bytes, mismatches and recovery times.
soak-cluster:
	$(CARGO) test --release --test soak soak_cluster -- --ignored --nocapture --test-threads=1

# The benchmark (release build, loopback only, bounded): one table, and
# BENCH_ARGS="--json FILE" to keep the figures.
bench:
	$(CARGO) bench --bench relay -- $(BENCH_ARGS)

# Runs every cargo-fuzz target for FUZZ_SECS seconds (not part of `make test`).
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. Crashes land in fuzz/artifacts/TARGET/; keep each as
# a regression input in fuzz/regressions/TARGET/ (tests/fuzz_regressions.rs).
fuzz:
	command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t; \
		RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$t corpus/$$t regressions/$$t -- \
			-max_total_time=$(FUZZ_SECS) -print_final_stats=1 || exit 1; \
	done

clean:
	$(CARGO) clean
	rm -rf $(STATE)
