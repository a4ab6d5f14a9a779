# rcon: build, test, demo and bench entry points.
# `make test` is the one test command (CI runs it through .ci/run); it installs
# what it needs, so a fresh machine only needs a Rust toolchain.

CARGO ?= cargo
# Root integration tests run in parallel; each builds its own world.
TEST_THREADS ?= 4
# Extra arguments for the root tests' harness, e.g. `make test-root ARGS=netns`.
ARGS ?=
# Where cargo puts what it builds (it honours CARGO_TARGET_DIR), and the binary.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RCON_BIN := $(TARGET_DIR)/release/rcon
# Where `make man` writes the man pages.
MANDIR ?= $(TARGET_DIR)/man

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: all deps bench-deps build install rcon bundle qemu test test-unit test-root sweep demo man bench lint clean

all: build

deps:
	hack/install-deps.sh

# The bench also needs runc, crun, hyperfine, netavark, the CNI plugins and python3.
bench-deps:
	hack/install-deps.sh --bench

build:
	$(CARGO) build --release
	$(CARGO) build --release --example ipip_wire
	$(CARGO) test --release --no-run --test runtime

# rcon, and the CNI plugin where runtimes look for plugins (docs/CNI.md).
PREFIX ?= /usr/local
CNI_BIN_DIR ?= /opt/cni/bin
install:
	install -D -m 0755 $(TARGET_DIR)/release/rcon $(DESTDIR)$(PREFIX)/bin/rcon
	install -D -m 0755 $(TARGET_DIR)/release/rcon-cni $(DESTDIR)$(CNI_BIN_DIR)/rcon

# The rcon binary alone (no test binary, no example): what the demo and the
# man pages need.
rcon:
	$(CARGO) build --release --bin rcon

bundle:
	hack/mkbundle.sh
	hack/mkimage.sh

# Debian's stock kernel for the qemu scenarios (downloads once, then instant).
qemu:
	hack/qemu/fetch.sh >/dev/null

test: deps bundle qemu
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-root

test-unit:
	$(CARGO) test --lib --bins

# Sweep leftovers of crashed runs, snapshot the root namespace, run the root
# tests, then fail if the root namespace gained a link, a named netns or an nft
# table. The check runs even when the tests fail, and both results count.
test-root:
	@if [[ $$(id -u) -ne 0 ]]; then \
		echo "make test-root: the runtime tests need root (namespaces, mounts, veth); run as root" >&2; \
		exit 1; \
	fi
	hack/sweep.sh
	@snap=$$(mktemp /tmp/rcon-hostsnap.XXXXXX); \
	trap 'rm -f "$$snap"' EXIT; \
	hack/hostcheck.sh snapshot "$$snap"; \
	rc=0; \
	$(CARGO) test --release --test runtime -- --test-threads=$(TEST_THREADS) $(ARGS) || rc=$$?; \
	hack/hostcheck.sh compare "$$snap" || rc=1; \
	exit $$rc

sweep:
	hack/sweep.sh

# Builds only what it runs: the rcon binary and the busybox image (not the
# tests, not the examples); both steps are no-ops when already done.
demo: deps rcon
	hack/mkimage.sh
	RCON=$(RCON_BIN) hack/demo.sh

# One man page per command (rcon.1, rcon-run.1, rcon-pod-create.1, ...) in
# $(MANDIR), the old ones removed first; read one with `man -l target/man/rcon-run.1`.
man: rcon
	rm -f $(MANDIR)/rcon*.1
	$(RCON_BIN) __man $(MANDIR)

bench: bench-deps deps build bundle
	hack/bench.sh
	hack/bench-net.sh
	hack/bench-attach-phases.sh
	hack/bench-ports.sh
	hack/bench-services.sh
	hack/bench-pods.sh
	hack/bench-cluster.sh
	hack/bench-etcd.sh
	hack/bench-cni.sh
	hack/bench-dns.sh

# shellcheck is optional here (not in the deps lists): skip with a note.
lint:
	@if command -v shellcheck >/dev/null; then \
		shellcheck -x .ci/run hack/*.sh hack/lib/*.sh hack/qemu/*.sh hack/qemu/scenarios/*.sh examples/*/run.sh; \
		shellcheck -s sh hack/qemu/init; \
	else echo "lint: shellcheck not installed, skipped"; fi
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf hack/.cache
