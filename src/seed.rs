/*!
The cloud-init NoCloud seed: `user-data`, `meta-data` and `network-config` rendered from
`cloud-init/`, packed into an ISO9660 image (Rock Ridge + Joliet) labelled `cidata`.

The image is written by `hadris-iso` (pure Rust, pinned): no genisoimage or xorriso is needed on
the hypervisor, and the bytes can be uploaded into a libvirt volume over any connection.
*/

use crate::plan::Plan;
use crate::template::{render_text, Vars};
use anyhow::Context as _;
use hadris_iso::read::PathSeparator;
use hadris_iso::write::options::{CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};
use std::io::Cursor;
use std::sync::Arc;

const USER_DATA: &str = include_str!("../cloud-init/user-data.yaml");
const META_DATA: &str = include_str!("../cloud-init/meta-data.yaml");
const NETWORK_CONFIG: &str = include_str!("../cloud-init/network-config.yaml");

/// The volume label NoCloud looks for.
pub const VOLUME_LABEL: &str = "cidata";

/// The three seed files, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFiles {
    /// `user-data` (a `#cloud-config` document).
    pub user_data: String,
    /// `meta-data`.
    pub meta_data: String,
    /// `network-config` (version 2).
    pub network_config: String,
}

impl SeedFiles {
    /// The files as (name, contents) pairs, in a fixed order.
    pub fn entries(&self) -> [(&'static str, &str); 3] {
        [
            ("user-data", &self.user_data),
            ("meta-data", &self.meta_data),
            ("network-config", &self.network_config),
        ]
    }
}

/// The line the guest prints on its console when cloud-init has finished.
pub fn ready_marker(plan: &Plan) -> String {
    format!("mkheadnode: {} ready", plan.hostname)
}

/// A value as a YAML scalar or flow sequence: JSON is a subset of YAML, so a JSON-encoded value
/// can never change the structure of the document it is put in.
fn yaml<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain values always serialize")
}

/// Render the seed files of a planned headnode.
pub fn files(plan: &Plan) -> anyhow::Result<SeedFiles> {
    let a = &plan.addressing;
    let user = Vars::new()
        .value("hostname", yaml(&plan.hostname))
        .value("ssh_authorized_keys", yaml(&plan.ssh_authorized_keys))
        .value(
            "final_message",
            yaml(&format!("{} after $UPTIME s", ready_marker(plan))),
        );
    let meta = Vars::new()
        .value("instance_id", yaml(&plan.instance_id))
        .value("hostname", yaml(&plan.hostname));
    let net = Vars::new()
        .value("private_mac", yaml(&plan.private_nic.mac.to_string()))
        .value("public_mac", yaml(&plan.public_nic.mac.to_string()))
        .value(
            "private_cidr",
            yaml(&format!("{}/{}", a.private_address, a.private_prefix)),
        )
        .value(
            "management_cidr",
            yaml(&format!("{}/{}", a.management_address, a.management_prefix)),
        );
    Ok(SeedFiles {
        user_data: render_text(USER_DATA, "user-data.yaml", &user)?,
        meta_data: render_text(META_DATA, "meta-data.yaml", &meta)?,
        network_config: render_text(NETWORK_CONFIG, "network-config.yaml", &net)?,
    })
}

/// Pack the seed files into an ISO9660 image labelled `cidata`.
pub fn iso(files: &SeedFiles) -> anyhow::Result<Vec<u8>> {
    let input = InputFiles {
        path_separator: PathSeparator::ForwardSlash,
        files: files
            .entries()
            .iter()
            .map(|(name, text)| IsoFile::File {
                name: Arc::new(name.to_string()),
                contents: text.as_bytes().to_vec(),
            })
            .collect(),
    };
    let options = IsoFormatOptions {
        volume_name: VOLUME_LABEL.to_string(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: Some("MKHEADNODE".to_string()),
        sector_size: 2048,
        features: CreationFeatures::extensions(),
        path_separator: PathSeparator::ForwardSlash,
        strict_charset: false,
    };
    let mut out = Cursor::new(Vec::new());
    IsoImageWriter::create(&mut out, input, options)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("writing the cloud-init seed image")?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plan::VirtType;
    use crate::vlan::Vlan;

    fn plan_with_keys(keys: Vec<String>) -> Plan {
        let config = Config {
            ssh_authorized_keys: keys,
            ..Config::default()
        };
        Plan::new(&config, Vlan::new(42).unwrap(), VirtType::Qemu)
    }

    #[test]
    fn files_carry_the_plan() {
        let f = files(&plan_with_keys(vec!["ssh-ed25519 AAAAC3 op@desk".into()])).unwrap();
        assert!(f.user_data.starts_with("#cloud-config\n"));
        assert!(f.user_data.contains("hostname: \"headnode-42\""));
        assert!(f
            .user_data
            .contains("ssh_authorized_keys: [\"ssh-ed25519 AAAAC3 op@desk\"]"));
        assert!(f
            .user_data
            .contains("mkheadnode: headnode-42 ready after $UPTIME s"));
        assert!(f.meta_data.contains("instance-id: \"mkheadnode-vlan42\""));
        assert!(f
            .network_config
            .contains("macaddress: \"52:54:00:4d:00:2a\""));
        assert!(f
            .network_config
            .contains("macaddress: \"52:54:00:4d:10:2a\""));
        assert!(f
            .network_config
            .contains("addresses: [\"192.168.10.254/24\", \"10.0.0.254/24\"]"));
    }

    #[test]
    fn hostile_values_cannot_add_yaml_keys() {
        let f = files(&plan_with_keys(vec![
            "ssh-rsa AAAA x\"]\nruncmd: [reboot]".into()
        ]))
        .unwrap();
        assert!(!f.user_data.contains("\nruncmd:"), "{}", f.user_data);
    }

    #[test]
    fn iso_is_an_iso9660_image_labelled_cidata() {
        let image = iso(&files(&plan_with_keys(vec![])).unwrap()).unwrap();
        assert_eq!(image.len() % 2048, 0);
        // Primary volume descriptor at sector 16: type 1, "CD001", volume id at offset 40.
        let pvd = &image[16 * 2048..17 * 2048];
        assert_eq!(&pvd[0..6], b"\x01CD001");
        assert_eq!(
            String::from_utf8_lossy(&pvd[40..72]).trim_end(),
            VOLUME_LABEL
        );
    }
}
