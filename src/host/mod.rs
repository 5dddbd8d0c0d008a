/*!
Effects on the hypervisor host: the libvirt connection, the networks and bridges NICs plug
into, base images, files written atomically, AppArmor, the per-VLAN config dir (as files here, as a storage pool on another machine) and lock, and
the KVM probes.
*/

pub mod agent;
pub mod apparmor;
pub mod atomic_file;
pub mod attachment;
pub mod config_pool;
pub mod console;
pub mod hostprep;
pub mod hypervisor;
pub mod image_store;
pub mod images;
pub mod interrupt;
pub mod kvm_probe;
pub mod lab;
pub mod nofollow;
pub mod profile_store;
pub mod profile_volumes;
pub mod records;
pub mod virt_type;
