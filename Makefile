# mkheadnode's entry points. Targets that need the host prepared (packages, /dev/kvm
# permissions, libvirtd running) run scripts/setup-host.sh first; it is idempotent.

CARGO ?= cargo
BIN := target/release/mkheadnode
IMAGE_DIR ?= /var/lib/mkheadnode/base

.PHONY: setup build early early-test deb image lint unit smoke test run bench bench-storm fuzz fuzz-brief fuzz-setup \
	fuzz-run mutants mutants-diff mutants-setup

setup:
	bash scripts/setup-host.sh

build:
	$(CARGO) build --release --locked

# The base image's early set-up (scripts/image-early/src/main.rs says what it does): a crate of
# its own, built static (its .cargo/config.toml) so that the image takes it whatever C library
# the building host has. build-image.sh puts it into the image; the Debian package carries it.
EARLY_DIR := scripts/image-early
EARLY_BIN := $(EARLY_DIR)/target/x86_64-unknown-linux-gnu/release/mkheadnode-early
early:
	cd $(EARLY_DIR) && $(CARGO) build --release --locked

early-test:
	cd $(EARLY_DIR) && $(CARGO) test --locked

# The Debian package, target/debian/mkheadnode_<version>_amd64.deb (packaging/lintian.md). The
# man pages and completions are made by the release binary from its own clap definition;
# cargo-deb (installed if missing) packs them with it as Cargo.toml's [package.metadata.deb] says.
DEB_ASSETS := target/assets
deb: build early
	$(CARGO) deb --version >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked --version '^3'
	rm -rf $(DEB_ASSETS) && mkdir -p $(DEB_ASSETS)/completions
	$(BIN) __man $(DEB_ASSETS)/man
	$(BIN) completions bash > $(DEB_ASSETS)/completions/mkheadnode
	$(BIN) completions zsh > $(DEB_ASSETS)/completions/_mkheadnode
	$(BIN) completions fish > $(DEB_ASSETS)/completions/mkheadnode.fish
	$(CARGO) deb --no-build --locked

# The test/demo base image, built offline from Debian's archive; cached by its recipe.
image: setup early
	OUT_DIR=$(IMAGE_DIR) EARLY_BIN=$(abspath $(EARLY_BIN)) bash scripts/build-image.sh
	OUT_DIR=$(IMAGE_DIR) bash scripts/build-installer.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --all-features -- -D warnings
	cd $(EARLY_DIR) && $(CARGO) fmt --check && $(CARGO) clippy --locked --all-targets -- -D warnings

# Unit tests, validators, the guest stack on loopback, libvirt's test driver and the real
# qemu:///system (no guest boots), and the Debian package installed into a Debian 12 root
# (tests/package.rs, which takes the package `deb` makes), and selftest's failing runs
# (tests/selftest.rs, which take the base image and installer `image` makes), and the early
# set-up's own tests. A plain `cargo test` runs only the pure ones; the host-tests feature adds
# the rest (tests/guest_early.rs takes the early set-up `early` makes).
unit: setup deb image early-test
	$(CARGO) test --locked --features host-tests

# The nightly: a real headnode boots and a second VM PXE-installs from it (minutes, TCG).
smoke: setup image
	MKHEADNODE_IMAGE=$(IMAGE_DIR)/debian-12-headnode.qcow2 \
	  $(CARGO) test --locked --features host-tests --test integration smoke -- --ignored --nocapture

test: lint unit fuzz-brief smoke

# Fuzzing (cargo fuzz, libFuzzer) of the VLAN list parser, machines.txt, the config loader and
# the template renderer; the crate is fuzz/, outside the main build. libFuzzer needs nightly's
# -Z flags: the nightly toolchain where there is one, else the stable one with RUSTC_BOOTSTRAP.
# A crash stops the run with its input in fuzz/artifacts/<target>/: fix it, then move the input
# into fuzz/regressions/<target>/, which every run (and `cargo test`) replays.
FUZZ_TARGETS := vlan_list machines config template
FUZZ_SECONDS ?= 120
FUZZ_BRIEF_SECONDS ?= 8
FUZZ_TOOLCHAIN := $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo +nightly)
CARGO_FUZZ = $(if $(FUZZ_TOOLCHAIN),,RUSTC_BOOTSTRAP=1) $(CARGO) $(FUZZ_TOOLCHAIN) fuzz

fuzz-setup:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

# Each target for FUZZ_SECONDS (from its seeds and what earlier runs found), after the replay.
fuzz: fuzz-setup
	$(MAKE) --no-print-directory fuzz-run FUZZ_RUN_SECONDS=$(FUZZ_SECONDS)

# Every regression input replayed, then each target for a few seconds: part of `make test`.
fuzz-brief: fuzz-setup
	$(MAKE) --no-print-directory fuzz-run FUZZ_RUN_SECONDS=$(FUZZ_BRIEF_SECONDS)

fuzz-run:
	$(CARGO_FUZZ) build
	set -e; for t in $(FUZZ_TARGETS); do \
	  $(CARGO_FUZZ) run $$t fuzz/regressions/$$t -- -runs=0; \
	  mkdir -p fuzz/corpus/$$t; \
	  $(CARGO_FUZZ) run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- -dict=fuzz/dicts/$$t.dict \
	    -max_total_time=$(FUZZ_RUN_SECONDS) -max_len=4096 -timeout=10 -print_final_stats=1; \
	done

# Mutation testing (cargo-mutants) of the pure layers, src/model/ and src/render/, against their
# own unit tests; .cargo/mutants.toml says which tests run and lists, with a reason each, the
# mutants that cannot change behaviour. Not part of `make test`: the whole run takes 20 to 30
# minutes on two cores (an hour when other builds share them). It fails while a mutant survives;
# a mutant that makes the tests hang (a loop that no longer ends) is caught, only slowly. (Then
# cargo-mutants exits 3 whether or not one also survived: the score script, which reads the
# outcomes, decides.)
# `make mutants-diff` mutates only the lines changed since MUTANTS_BASE (uncommitted ones too;
# `git add -N` a new file first): run it before resolving an issue that changes a parser or a
# validator.
MUTANTS_JOBS ?= 2
MUTANTS_BASE ?= main
CARGO_MUTANTS = $(CARGO) mutants -j $(MUTANTS_JOBS)
# The score as a share of the viable mutants, with each survivor; it exits 2 while one survives.
MUTANTS_SCORE = python3 scripts/mutants-score.py

mutants-setup:
	$(CARGO) mutants --version >/dev/null 2>&1 || $(CARGO) install cargo-mutants --locked --version '^27'

mutants: mutants-setup
	$(CARGO_MUTANTS) --output target; status=$$?; \
	  case $$status in 0|2|3) $(MUTANTS_SCORE) target/mutants.out;; *) exit $$status;; esac

mutants-diff: mutants-setup
	rm -rf target/mutants-diff && mkdir -p target/mutants-diff
	git diff $$(git merge-base $(MUTANTS_BASE) HEAD) > target/mutants-diff/change.diff
	$(CARGO_MUTANTS) --output target/mutants-diff --in-diff target/mutants-diff/change.diff; \
	  status=$$?; \
	  case $$status in 0|2|3) $(MUTANTS_SCORE) target/mutants-diff/mutants.out;; *) exit $$status;; esac

# mkheadnode vs virt-install vs bare libvirt on this machine; writes BENCHMARKS.md.
bench: setup image build
	IMAGE=$(IMAGE_DIR)/debian-12-headnode.qcow2 BIN=$(BIN) BENCH_NOTES=scripts/bench-notes.md python3 scripts/bench.py
	IMAGE=$(IMAGE_DIR)/debian-12-headnode.qcow2 BIN=$(BIN) STORM_OUT=$(STORM_OUT) python3 scripts/storm.py
	{ echo; cat $(STORM_OUT); } >> BENCHMARKS.md

# The install storm: 1, 10 and 50 simulated PXE machines at once against one real headnode
# (VLAN 3990, isolated networks), and dnsmasq as the anchor; ~10 minutes. Writes STORM_OUT.
STORM_OUT ?= target/storm.md
bench-storm: setup image build
	IMAGE=$(IMAGE_DIR)/debian-12-headnode.qcow2 BIN=$(BIN) STORM_OUT=$(STORM_OUT) python3 scripts/storm.py

# A headnode for demo VLAN 42 on this machine, made the way an operator would.
run: setup image build
	IMAGE=$(IMAGE_DIR)/debian-12-headnode.qcow2 BIN=$(BIN) bash scripts/demo.sh
