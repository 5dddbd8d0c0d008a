/*!
A headnode's footprint on the host, as the configuration puts it for its VLAN: the domain's
name, its MACs, its two volumes in our pool and their paths, and its config dir. This is what
mkheadnode may make, and the only things it may delete, for that VLAN: whatever a domain's
metadata or a state record says is checked against it first.
*/

use crate::model::config::Config;
use crate::model::mac::Mac;
use crate::model::vlan::Vlan;
use std::path::PathBuf;

/// The mode of our images pool's directory: qemu's user may pass through, not list it.
pub const POOL_MODE: u32 = 0o711;

/// The mode of a config dir: qemu's user reads it (the 9p share).
pub const CONFIG_DIR_MODE: u32 = 0o755;

/// Which of the headnode's two NICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// NIC 1, guest `eth0`, on the VLAN.
    Private,
    /// NIC 2, guest `eth1`, on the public network.
    Public,
}

/// What a VLAN's headnode holds on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// The VLAN.
    pub vlan: Vlan,
    /// libvirt domain name: `headnode-<vlan>`.
    pub domain_name: String,
    /// MAC of NIC 1 (VLAN side).
    pub private_mac: Mac,
    /// MAC of NIC 2 (public side).
    pub public_mac: Mac,
    /// Our storage pool.
    pub pool: String,
    /// The pool's directory.
    pub pool_dir: PathBuf,
    /// Name of the qcow2 overlay volume.
    pub disk_volume: String,
    /// Name of the NoCloud seed volume.
    pub seed_volume: String,
    /// The config dir shared into the guest: `<config_root>/<vlan>`.
    pub config_dir: PathBuf,
    /// The storage pool (type dir) that is the config dir where the hypervisor is another
    /// machine: `<pool>-config-<vlan>`.
    pub config_pool: String,
}

impl Footprint {
    /// The footprint of `vlan`'s headnode under `config`.
    pub fn of(config: &Config, vlan: Vlan) -> Footprint {
        let name = domain_name(vlan);
        Footprint {
            vlan,
            private_mac: headnode_mac(vlan, Role::Private),
            public_mac: headnode_mac(vlan, Role::Public),
            pool: config.pool.clone(),
            pool_dir: config.pool_dir.clone(),
            disk_volume: format!("{name}.qcow2"),
            seed_volume: format!("{name}-seed.iso"),
            config_dir: config.config_root.join(vlan.to_string()),
            config_pool: format!("{}-config-{vlan}", config.pool),
            domain_name: name,
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

    /// The planned path of `volume` if it is one of this headnode's two volumes.
    pub fn volume_path(&self, volume: &str) -> Option<PathBuf> {
        (volume == self.disk_volume || volume == self.seed_volume)
            .then(|| self.pool_dir.join(volume))
    }
}

/// The domain name of a VLAN's headnode.
pub fn domain_name(vlan: Vlan) -> String {
    format!("headnode-{vlan}")
}

/// The VLAN a domain name belongs to, if it has our naming pattern.
pub fn vlan_of_domain_name(name: &str) -> Option<Vlan> {
    name.strip_prefix("headnode-")?.parse().ok()
}

/// A deterministic, locally administered-looking MAC in QEMU's 52:54:00 range:
/// `52:54:00:4d:<role nibble><vlan high nibble>:<vlan low byte>`. VLAN IDs are unique across a
/// cloud, so these are too, and a rebuild gets the same ones.
pub fn headnode_mac(vlan: Vlan, role: Role) -> Mac {
    let id = vlan.id();
    let role_bits: u8 = match role {
        Role::Private => 0x00,
        Role::Public => 0x10,
    };
    Mac([
        0x52,
        0x54,
        0x00,
        0x4d,
        role_bits | (id >> 8) as u8,
        (id & 0xff) as u8,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_of_the_vlan_and_no_others() {
        let f = Footprint::of(&Config::default(), Vlan::new(42).unwrap());
        assert_eq!(
            f.volume_path("headnode-42.qcow2"),
            Some(PathBuf::from(
                "/var/lib/mkheadnode/images/headnode-42.qcow2"
            ))
        );
        assert_eq!(f.volume_path("headnode-42-seed.iso"), Some(f.seed_path()));
        assert_eq!(f.volume_path("headnode-42.qcow2"), Some(f.disk_path()));
        for other in ["headnode-43.qcow2", "../headnode-42.qcow2", "x", ""] {
            assert_eq!(f.volume_path(other), None, "{other}");
        }
    }
}
