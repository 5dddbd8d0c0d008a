//! mkheadnode's integration tests: one binary, a module per area.
//!
//! A plain `cargo test` runs the pure ones: `cli` and `node_cli` (the built binary, no
//! hypervisor needed), `layers` (the source's imports) and `fuzz_regressions` (the fuzz targets'
//! kept inputs). The `host-tests` feature, which `make unit` and `make smoke` turn on, adds those
//! that need the host: `validate` (the validators `virt-xml-validate`, `cloud-init`, `isoinfo`),
//! `guest` (dhcpd, nginx, fcgiwrap, iptables), `guest_early` (the base image's early set-up on
//! the rendered seed), `guest_firewall` (the seed's and the base image's
//! rules in force in network namespaces), `guest_leases` (the boot-default CGI's lease check,
//! with a real dhcpd and hypothesis), `guest_web_user` (what www-data may do: sudo,
//! mkheadnode-disarm), `guest_nodes` (the nodes tool, `--power-status` and publishing on temp
//! dirs), `uefi` (dhcpd per client architecture, GRUB's config, both loaders armed and
//! disarmed), `bmc` (BMC emulators and `qemu:///system`), `test_driver` and `node_agent`
//! (libvirt's in-memory `test:///default`), `system` (the real `qemu:///system`, libvirtd
//! running, root), `hardening` (links, copied domains and interrupted runs there), `images`
//! (base images pushed to a second libvirtd over qemu+ssh), `selftest` (`mkheadnode selftest`
//! failing where it should, interrupted, refused) and `smoke` (the passing selftest run;
//! ignored unless `make smoke`).
//!
//! `package` checks the example config file that the Debian package ships (pure) and, with
//! `host-tests`, installs the package that `make deb` made into a fresh Debian 12 root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a failed unwrap is a failed test, and a scenario reads best in one piece"
)]

#[cfg(feature = "host-tests")]
mod bmc;
mod cli;
mod fuzz_regressions;
#[cfg(feature = "host-tests")]
mod guest;
#[cfg(feature = "host-tests")]
mod guest_early;
#[cfg(feature = "host-tests")]
mod guest_firewall;
#[cfg(feature = "host-tests")]
mod guest_leases;
#[cfg(feature = "host-tests")]
mod guest_nodes;
#[cfg(feature = "host-tests")]
mod guest_web_user;
#[cfg(feature = "host-tests")]
mod hardening;
#[cfg(feature = "host-tests")]
mod images;
mod layers;
#[cfg(feature = "host-tests")]
mod node_agent;
mod node_cli;
mod package;
#[cfg(feature = "host-tests")]
mod remote;
#[cfg(feature = "host-tests")]
mod selftest;
#[cfg(feature = "host-tests")]
mod smoke;
mod support;
#[cfg(feature = "host-tests")]
mod system;
#[cfg(feature = "host-tests")]
mod test_driver;
#[cfg(feature = "host-tests")]
mod uefi;
#[cfg(feature = "host-tests")]
mod validate;
