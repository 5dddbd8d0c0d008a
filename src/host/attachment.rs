/*!
Whether a NIC's attachment is there to plug into: a libvirt network that is defined and active,
or a bridge (Linux or Open vSwitch) that the host's kernel knows.
*/

use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::model::config::Attachment;
use std::path::Path;

/// Check `attachment`, the `side` (`vlan` or `public`) of a headnode, with its names resolved
/// for the VLAN. Returns what was found; an error of kind `NotFound` says how to fix it.
///
/// A bridge is looked for in `/sys/class/net` only on a local hypervisor: the kernel of another
/// machine is not visible from here.
pub fn check(hv: &Hypervisor, attachment: &Attachment, side: &str) -> anyhow::Result<String> {
    match attachment {
        Attachment::Network { name } => match hv.network_active(name)? {
            Some(true) => Ok(format!("libvirt network {name} is active")),
            Some(false) => Err(failure(
                Kind::NotFound,
                format!(
                    "{side} network `{name}` is defined but not active: start it with \
                     `virsh net-start {name}`"
                ),
            )),
            None => Err(failure(
                Kind::NotFound,
                format!(
                    "{side} network `{name}` does not exist in libvirt: define it \
                     (`virsh net-define`) or change {side}_attachment"
                ),
            )),
        },
        Attachment::Bridge { name } | Attachment::Ovs { name } => {
            if !hv.is_local() {
                return Ok(format!(
                    "bridge {name} is on another machine (not checked from here)"
                ));
            }
            if Path::new("/sys/class/net").join(name).exists() {
                Ok(format!("bridge {name} exists"))
            } else {
                Err(failure(
                    Kind::NotFound,
                    format!(
                        "{side} bridge `{name}` does not exist on this host: create it or \
                         change {side}_attachment"
                    ),
                ))
            }
        }
    }
}
