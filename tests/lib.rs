//! mkheadnode's integration tests: one binary, a module per area.
//!
//! `cli` and `validate` need only the built binary and the validators (`virt-xml-validate`,
//! `cloud-init`, `isoinfo`); `test_driver` uses libvirt's in-memory `test:///default`; `system`
//! drives the real `qemu:///system` (libvirtd running, root), as `make test` arranges.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a failed unwrap is a failed test, and a scenario reads best in one piece"
)]

mod bmc;
mod cli;
mod guest;
mod layers;
#[allow(
    clippy::absolute_paths,
    reason = "it names SYSTEM_URI and BOOT_SIGN in place"
)]
mod smoke;
mod support;
mod system;
mod test_driver;
mod validate;
