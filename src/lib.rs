/*!
mkheadnode: give every VLAN of a bare-metal cloud its own PXE headnode, a libvirt VM that
boots, configures itself through cloud-init and installs the machines on its VLAN.

The crate is split one concept per module. Pure planning ([`vlan`], [`config`], [`plan`],
[`domain_xml`], [`seed`], [`machines`]) is separate from effects on the host ([`apparmor`],
[`hostprep`], [`hypervisor`], [`virt_type`]) and the operations that combine them ([`ops`]).
*/

#![warn(missing_docs)]

pub mod addresses;
pub mod app;
pub mod apparmor;
pub mod atomic_file;
pub mod check;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain_xml;
pub mod error;
pub mod hostprep;
pub mod hypervisor;
pub mod images;
pub mod mac;
pub mod machines;
pub mod ops;
pub mod plan;
pub mod report;
pub mod seed;
pub mod template;
pub mod virt_type;
pub mod vlan;
pub mod wait;
