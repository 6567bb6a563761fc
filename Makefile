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

# Cross-compilation for gateways: static musl binaries, ring's C built with
# Debian's cross gcc (apt-get install gcc-aarch64-linux-gnu; qemu-user to
# check). The client is the gateway build: no default features (no built-in
# CA roots, TLS 1.3 only, no rustls logging) at the `gateway` profile
# (panic=abort); see GATEWAY BUILDS in rendezvous(1). GATEWAY_STD=build
# also rebuilds the standard library with panics as plain aborts (unstable
# options, through RUSTC_BOOTSTRAP, with the toolchain's rust-src).
TARGET   ?= aarch64-unknown-linux-musl
CROSS_CC ?= aarch64-linux-gnu-gcc
CROSS_AR ?= aarch64-linux-gnu-ar
PROFILE  ?= minimal
GATEWAY_PROFILE ?= gateway
GATEWAY_STD ?=
CROSS_DIR = target/$(TARGET)/$(PROFILE)
GATEWAY_DIR = target/$(TARGET)/$(GATEWAY_PROFILE)
CROSS_ENV = "CC_$$(echo '$(TARGET)' | tr - _)=$(CROSS_CC)" \
	    "AR_$$(echo '$(TARGET)' | tr - _)=$(CROSS_AR)" \
	    "CARGO_TARGET_$$(echo '$(TARGET)' | tr a-z- A-Z_)_LINKER=$(CROSS_CC)"
ifeq ($(GATEWAY_STD),build)
GATEWAY_ENV   = RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort"
GATEWAY_FLAGS = -Z build-std=std,panic_abort
endif

.PHONY: all build release minimal test check lint-man run install uninstall clean fuzz soak soak-cluster bench cross cross-check agent-memory deb deb-cross deb-check bench-peers

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
	test -z '$(GATEWAY_STD)' || rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
	env $(CROSS_ENV) $(GATEWAY_ENV) $(CARGO) build --locked --profile $(GATEWAY_PROFILE) \
	    --target '$(TARGET)' --bin rendezvous --no-default-features $(GATEWAY_FLAGS)
	env $(CROSS_ENV) $(CARGO) build --locked --profile $(PROFILE) --target '$(TARGET)' --bin rendezvousd
	ls -l $(GATEWAY_DIR)/rendezvous $(CROSS_DIR)/rendezvousd

# Runs the cross-built binaries under qemu-user against the native build:
# the same TOTP code for one instant (--at), and the gateway client
# registering and looking up over real TLS (contrib/cross-check.sh).
cross-check: cross build
	qemu-aarch64 $(CROSS_DIR)/rendezvousd --version >/dev/null
	sh contrib/cross-check.sh qemu-aarch64 $(GATEWAY_DIR)/rendezvous target/debug/rendezvous target/debug/rendezvousd
	@echo "cross-check: $(TARGET) binaries run under qemu and agree with the native build"

# The Debian package target/deb/rendezvous_VERSION_ARCH.deb from the release
# binaries (contrib/deb/build-deb.sh; DEB_COMPRESS=none builds it quicker).
deb: release
	contrib/deb/build-deb.sh target/release target/deb

# The package of the `make cross` binaries (the gateway client, the
# minimal server), labelled with their architecture: for TARGET
# aarch64-unknown-linux-musl, target/deb/rendezvous_VERSION_arm64.deb. They
# are static: the package needs no library (contrib/deb/elf.sh).
deb-cross: cross
	rm -rf target/$(TARGET)/deb-bin
	mkdir -p target/$(TARGET)/deb-bin
	cp $(GATEWAY_DIR)/rendezvous $(CROSS_DIR)/rendezvousd target/$(TARGET)/deb-bin/
	contrib/deb/build-deb.sh target/$(TARGET)/deb-bin target/deb

# Packages the debug binaries that `make test` built (uncompressed: quick)
# and checks the package's files, modes, control fields and scripts.
deb-check:
	rm -rf target/deb-check
	DEB_COMPRESS=none contrib/deb/build-deb.sh target/debug target/deb-check
	contrib/deb/check-deb.sh target/deb-check/rendezvous_*.deb

# Idle memory of `expose --pool 8` (contrib/agent-memory.sh): the gateway
# client built static for x86_64 musl, as on a gateway, beside the default
# build linked to glibc.
agent-memory: build
	rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
	env CC_x86_64_unknown_linux_musl=gcc $(CARGO) build --locked --profile $(GATEWAY_PROFILE) \
	    --target x86_64-unknown-linux-musl --bin rendezvous --no-default-features
	$(CARGO) build --locked --profile minimal --bin rendezvous
	@echo "gateway build, static musl:"
	sh contrib/agent-memory.sh target/x86_64-unknown-linux-musl/$(GATEWAY_PROFILE)/rendezvous
	@echo "default build, glibc:"
	sh contrib/agent-memory.sh target/minimal/rendezvous

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

# Ours beside rathole 0.5 and bore 0.6, installed into PEERS_DIR by cargo
# install (rathole builds only without --locked): setup, throughput, CPU and
# memory in one table, each a ratio to direct or what a tunnel adds to it,
# measured in the same run (not part of `make test`).
# Our programs are measured twice: as cargo bench builds them (glibc), and
# built static for musl (STATIC_TARGET), as a gateway runs them.
PEERS_DIR ?= $(CURDIR)/target/peers
STATIC_TARGET ?= x86_64-unknown-linux-musl
bench-peers:
	test -x $(PEERS_DIR)/bin/rathole || $(CARGO) install --root $(PEERS_DIR) --version 0.5.0 rathole
	test -x $(PEERS_DIR)/bin/bore || $(CARGO) install --locked --root $(PEERS_DIR) --version 0.6.0 bore-cli
	rustup target list --installed | grep -qx $(STATIC_TARGET) || rustup target add $(STATIC_TARGET)
	env CC_$(subst -,_,$(STATIC_TARGET))=gcc $(CARGO) build --locked --release --target $(STATIC_TARGET) --bins
	$(CARGO) bench --bench relay -- --peers $(PEERS_DIR)/bin --static $(CURDIR)/target/$(STATIC_TARGET)/release $(BENCH_ARGS)

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
