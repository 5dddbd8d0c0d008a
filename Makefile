# mkheadnode's developer entry points. Every target that needs the host prepared (packages,
# /dev/kvm permissions, libvirtd running) runs scripts/setup-host.sh first; it is idempotent.

CARGO ?= cargo
BIN := target/release/mkheadnode

.PHONY: setup build lint unit test run clean-run

setup:
	bash scripts/setup-host.sh

build:
	$(CARGO) build --release --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Unit tests, validators, libvirt's test driver and the real qemu:///system.
unit: setup
	$(CARGO) test --locked

test: setup lint unit
