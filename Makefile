# mkheadnode's entry points. Targets that need the host prepared (packages, /dev/kvm
# permissions, libvirtd running) run scripts/setup-host.sh first; it is idempotent.

CARGO ?= cargo
BIN := target/release/mkheadnode
IMAGE_DIR ?= /var/lib/mkheadnode/base

.PHONY: setup build deb image lint unit smoke test run bench

setup:
	bash scripts/setup-host.sh

build:
	$(CARGO) build --release --locked

# The Debian package, target/debian/mkheadnode_<version>_amd64.deb (packaging/lintian.md). The
# man pages and completions are made by the release binary from its own clap definition;
# cargo-deb (installed if missing) packs them with it as Cargo.toml's [package.metadata.deb] says.
DEB_ASSETS := target/assets
deb: build
	$(CARGO) deb --version >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked --version '^3'
	rm -rf $(DEB_ASSETS) && mkdir -p $(DEB_ASSETS)/completions
	$(BIN) __man $(DEB_ASSETS)/man
	$(BIN) completions bash > $(DEB_ASSETS)/completions/mkheadnode
	$(BIN) completions zsh > $(DEB_ASSETS)/completions/_mkheadnode
	$(BIN) completions fish > $(DEB_ASSETS)/completions/mkheadnode.fish
	$(CARGO) deb --no-build --locked

# The test/demo base image, built offline from Debian's archive; cached by its recipe.
image: setup
	OUT_DIR=$(IMAGE_DIR) bash scripts/build-image.sh
	OUT_DIR=$(IMAGE_DIR) bash scripts/build-installer.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --all-features -- -D warnings

# Unit tests, validators, the guest stack on loopback, libvirt's test driver and the real
# qemu:///system (no guest boots), and the Debian package installed into a Debian 12 root
# (tests/package.rs, which takes the package `deb` makes). A plain `cargo test` runs only the
# pure ones; the host-tests feature adds the rest.
unit: setup deb
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
