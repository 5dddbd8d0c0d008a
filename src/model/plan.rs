/*!
Pure planning: from a VLAN and the configuration to every name, address, path and MAC of its
headnode. Nothing here touches the host, so all of it is testable without a hypervisor.
*/

use crate::model::config::{Addressing, Attachment, Config};
use crate::model::footprint::Footprint;
use crate::model::mac::Mac;
use crate::model::vlan::Vlan;
use std::fmt;
use std::path::PathBuf;

/// The libvirt domain type a headnode runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtType {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation (TCG).
    Qemu,
}

impl VirtType {
    /// The value of libvirt's `<domain type=...>`.
    pub fn as_str(self) -> &'static str {
        match self {
            VirtType::Kvm => "kvm",
            VirtType::Qemu => "qemu",
        }
    }
}

impl fmt::Display for VirtType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A NIC as it will be attached: its MAC and where it plugs in (names resolved for the VLAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The NIC's deterministic MAC.
    pub mac: Mac,
    /// The guest-side interface name the seed gives it.
    pub guest_name: &'static str,
    /// Where it plugs in, with `{vlan}` already substituted.
    pub attachment: Attachment,
}

/// Everything needed to create (or recognise) one VLAN's headnode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The VLAN this headnode serves.
    pub vlan: Vlan,
    /// libvirt domain name: `headnode-<vlan>`.
    pub domain_name: String,
    /// Guest hostname (same as the domain name).
    pub hostname: String,
    /// cloud-init instance id; stable per VLAN.
    pub instance_id: String,
    /// kvm or qemu.
    pub virt_type: VirtType,
    /// NIC 1 on the VLAN.
    pub private_nic: Nic,
    /// NIC 2 on the public network.
    pub public_nic: Nic,
    /// The host directory shared into the guest as `/etc/moc`.
    pub config_dir: PathBuf,
    /// `machines.txt` inside `config_dir`.
    pub machines_file: PathBuf,
    /// Storage pool holding this headnode's volumes.
    pub pool: String,
    /// The pool's directory.
    pub pool_dir: PathBuf,
    /// Name of the qcow2 overlay volume.
    pub disk_volume: String,
    /// Name of the NoCloud seed volume.
    pub seed_volume: String,
    /// The base image under the overlay (on the hypervisor: the configured path, or the
    /// pushed image it resolves to there).
    pub base_image: PathBuf,
    /// The base image's SHA-256, where known (recorded in the domain's metadata).
    pub base_sha256: Option<String>,
    /// Overlay size in GiB (grown to the base image's size if that is larger).
    pub disk_gib: u64,
    /// Serial console log on the hypervisor.
    pub serial_log: PathBuf,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// TCG translation cache in MiB (used only when `virt_type` is qemu).
    pub tcg_tb_cache_mib: u64,
    /// The guest's addresses.
    pub addressing: Addressing,
    /// SSH keys for the default user.
    pub ssh_authorized_keys: Vec<String>,
    /// Whether the guest's boot-default CGI checks DHCP leases.
    pub boot_default_requires_lease: bool,
}

impl Plan {
    /// Plan the headnode of `vlan` under `config`, to run as `virt_type`.
    pub fn new(config: &Config, vlan: Vlan, virt_type: VirtType) -> Plan {
        let f = Footprint::of(config, vlan);
        Plan {
            vlan,
            hostname: f.domain_name.clone(),
            instance_id: format!("mkheadnode-vlan{vlan}"),
            virt_type,
            private_nic: Nic {
                mac: f.private_mac,
                guest_name: "eth0",
                attachment: resolve(&config.vlan_attachment, vlan),
            },
            public_nic: Nic {
                mac: f.public_mac,
                guest_name: "eth1",
                attachment: resolve(&config.public_attachment, vlan),
            },
            machines_file: f.config_dir.join("machines.txt"),
            config_dir: f.config_dir,
            pool: f.pool,
            pool_dir: f.pool_dir,
            base_image: config.base_image.clone(),
            base_sha256: None,
            disk_gib: config.disk_gib,
            serial_log: config.log_dir.join(format!("{}-serial.log", f.domain_name)),
            disk_volume: f.disk_volume,
            seed_volume: f.seed_volume,
            memory_mib: config.memory_mib,
            vcpus: config.vcpus,
            tcg_tb_cache_mib: config.tcg_tb_cache_mib,
            addressing: config.addressing.clone(),
            ssh_authorized_keys: config.ssh_authorized_keys.clone(),
            boot_default_requires_lease: config.boot_default_requires_lease,
            domain_name: f.domain_name,
        }
    }

    /// Path of the overlay disk on the hypervisor.
    pub fn disk_path(&self) -> PathBuf {
        self.pool_dir.join(&self.disk_volume)
    }

    /// Path of the seed image on the hypervisor.
    pub fn seed_path(&self) -> PathBuf {
        self.pool_dir.join(&self.seed_volume)
    }
}

fn resolve(attachment: &Attachment, vlan: Vlan) -> Attachment {
    let sub = |s: &str| s.replace("{vlan}", &vlan.to_string());
    match attachment {
        Attachment::Network { name } => Attachment::Network { name: sub(name) },
        Attachment::Bridge { name } => Attachment::Bridge { name: sub(name) },
        Attachment::Ovs { name } => Attachment::Ovs { name: sub(name) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::footprint::{headnode_mac, vlan_of_domain_name, Role};
    use std::collections::HashSet;

    fn vlan(n: u16) -> Vlan {
        Vlan::new(n).unwrap()
    }

    #[test]
    fn names_and_paths_follow_the_vlan() {
        let p = Plan::new(&Config::default(), vlan(42), VirtType::Qemu);
        assert_eq!(p.domain_name, "headnode-42");
        assert_eq!(p.config_dir, PathBuf::from("/var/lib/headnode-config/42"));
        assert_eq!(
            p.machines_file,
            PathBuf::from("/var/lib/headnode-config/42/machines.txt")
        );
        assert_eq!(
            p.disk_path(),
            PathBuf::from("/var/lib/mkheadnode/images/headnode-42.qcow2")
        );
        assert_eq!(
            p.seed_path(),
            PathBuf::from("/var/lib/mkheadnode/images/headnode-42-seed.iso")
        );
        assert_eq!(
            p.private_nic.attachment,
            Attachment::Network {
                name: "vlan42".into()
            }
        );
        assert_eq!(
            p.public_nic.attachment,
            Attachment::Network {
                name: "default".into()
            }
        );
        assert_eq!(
            (p.private_nic.guest_name, p.public_nic.guest_name),
            ("eth0", "eth1")
        );
        assert_eq!(vlan_of_domain_name("headnode-42"), Some(vlan(42)));
        assert_eq!(vlan_of_domain_name("headnode-042"), None);
        assert_eq!(vlan_of_domain_name("other-42"), None);
    }

    #[test]
    fn macs_are_deterministic_and_unique() {
        assert_eq!(
            headnode_mac(vlan(42), Role::Private).to_string(),
            "52:54:00:4d:00:2a"
        );
        assert_eq!(
            headnode_mac(vlan(4094), Role::Public).to_string(),
            "52:54:00:4d:1f:fe"
        );
        let mut seen = HashSet::new();
        for id in Vlan::MIN..=Vlan::MAX {
            for role in [Role::Private, Role::Public] {
                assert!(
                    seen.insert(headnode_mac(vlan(id), role)),
                    "duplicate MAC for VLAN {id}"
                );
            }
        }
    }

    #[test]
    fn attachment_patterns_are_resolved() {
        let config = Config {
            vlan_attachment: Attachment::Bridge {
                name: "br-vlan{vlan}".into(),
            },
            ..Config::default()
        };
        let p = Plan::new(&config, vlan(7), VirtType::Kvm);
        assert_eq!(
            p.private_nic.attachment,
            Attachment::Bridge {
                name: "br-vlan7".into()
            }
        );
    }
}
