//! mkheadnode's integration tests: one binary, a module per area.
//!
//! `cli` and `validate` need only the built binary and the validators (`virt-xml-validate`,
//! `cloud-init`, `isoinfo`); `test_driver` uses libvirt's in-memory `test:///default`; `system`
//! drives the real `qemu:///system` (libvirtd running, root), as `make test` arranges.

mod bmc;
mod cli;
mod guest;
mod smoke;
mod support;
mod system;
mod test_driver;
mod uefi;
mod validate;
