# mkheadnode's entry points. Targets that need the host prepared (packages, /dev/kvm
# permissions, libvirtd running) run scripts/setup-host.sh first; it is idempotent.

CARGO ?= cargo
BIN := target/release/mkheadnode
IMAGE_DIR ?= /var/lib/mkheadnode/base

.PHONY: setup build image lint unit smoke test run bench

setup:
	bash scripts/setup-host.sh

build:
	$(CARGO) build --release --locked

# The test/demo base image, built offline from Debian's archive; cached by its recipe.
image: setup
	OUT_DIR=$(IMAGE_DIR) bash scripts/build-image.sh
	OUT_DIR=$(IMAGE_DIR) bash scripts/build-installer.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --all-features -- -D warnings

# Unit tests, validators, the guest stack on loopback, libvirt's test driver and the real
# qemu:///system (no guest boots). A plain `cargo test` runs only the pure ones; the host-tests
# feature adds the rest.
unit: setup
	$(CARGO) test --locked --features host-tests

# The nightly: a real headnode boots and a second VM PXE-installs from it (minutes, TCG).
smoke: setup image
	MKHEADNODE_IMAGE=$(IMAGE_DIR)/debian-12-headnode.qcow2 \
	  $(CARGO) test --locked --features host-tests --test integration smoke -- --ignored --nocapture

test: lint unit smoke

# mkheadnode vs virt-install vs bare libvirt on this machine; writes BENCHMARKS.md.
bench: setup image build
	IMAGE=$(IMAGE_DIR)/debian-12-headnode.qcow2 BIN=$(BIN) BENCH_NOTES=scripts/bench-notes.md python3 scripts/bench.py

# A headnode for demo VLAN 42 on this machine, made the way an operator would.
run: setup image build
	IMAGE=$(IMAGE_DIR)/debian-12-headnode.qcow2 BIN=$(BIN) bash scripts/demo.sh
