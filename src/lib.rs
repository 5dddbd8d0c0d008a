/*!
mkheadnode: give every VLAN of a bare-metal cloud its own PXE headnode, a libvirt VM that
boots, configures itself through cloud-init and installs the machines on its VLAN.

The crate is layered, one folder a layer, and a module only imports from its own layer or the
layers below it:

1. [`model`]: the pure model (VLANs, MACs, addresses, machines, the configuration, the plan);
2. [`render`]: the documents made from a plan (domain and volume XML, the cloud-init seed);
3. [`host`]: effects on the hypervisor host (libvirt, images, files, AppArmor, KVM probes);
4. [`ops`]: the operations that combine them (create, teardown, status, check, wait);
5. [`cli`]: the command line that runs them.

[`error`] holds the error categories every layer uses.
*/

#![warn(missing_docs)]

pub mod cli;
pub mod error;
pub mod host;
pub mod model;
pub mod ops;
pub mod render;
