/*!
`list` and `status`: what our headnodes look like to libvirt, as rows of a table or JSON. A
domain with our metadata that is not the headnode its name says (see
[`crate::ops::ownership`]) is listed with the problem, and the table says it in a last column.
*/

use crate::error::{failure, Kind};
use crate::host::hypervisor::{domain_gone, state_word, Hypervisor};
use crate::model::config::Config;
use crate::model::footprint::{vlan_of_domain_name, Footprint};
use crate::model::image::short;
use crate::model::vlan::Vlan;
use crate::ops::ownership;
use crate::ops::session::{headnode_domain, Session};
use crate::render::domain_xml::{self, Metadata};
use crate::render::table::aligned;
use serde::Serialize;
use virt::domain::Domain;

impl Session {
    /// Status of every domain that carries our metadata, each checked against its name's VLAN.
    /// One removed meanwhile by another process is left out.
    pub fn list(&self) -> anyhow::Result<Vec<Status>> {
        let mut out = Vec::new();
        let current = self.current_image_sha()?;
        for (d, m) in self.hv.headnodes()? {
            match status_of(&self.hv, &self.config, &d, &m, current.as_deref()) {
                Ok(status) => out.push(status),
                Err(e) if domain_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Status of the headnode of `vlan`; [`Status::problem`] says if it is not that VLAN's.
    pub fn status(&self, vlan: Vlan) -> anyhow::Result<Status> {
        match headnode_domain(&self.hv, &self.config, vlan)? {
            Some((d, m, _)) => {
                let current = self.current_image_sha()?;
                status_of(&self.hv, &self.config, &d, &m, current.as_deref())
            }
            None => Err(failure(
                Kind::NotFound,
                format!("there is no headnode for VLAN {vlan}"),
            )),
        }
    }
}

/// One headnode as `list` and `status` report it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// The host of the fleet it is on (`[[hosts]]` in the configuration); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The VLAN.
    pub vlan: u16,
    /// Domain name.
    pub domain: String,
    /// libvirt state.
    pub state: String,
    /// kvm or qemu.
    pub virt_type: String,
    /// MAC of NIC 1 (VLAN, guest eth0).
    pub private_mac: String,
    /// MAC of NIC 2 (public, guest eth1).
    pub public_mac: String,
    /// Config dir shared as /etc/moc.
    pub config_dir: String,
    /// Overlay disk path.
    pub disk: String,
    /// Whether libvirt starts it with the host.
    pub autostart: bool,
    /// The SHA-256 of the base image it was made from, where it was known.
    pub base_sha256: Option<String>,
    /// Whether that is the image a create would use on its host now: `false` for a headnode
    /// on an outdated image (`rebuild` moves it to the current one), `null` where either is
    /// not known.
    pub image_current: Option<bool>,
    /// Why this domain, though it carries our metadata, is not the headnode its name says
    /// (mkheadnode then refuses to touch it); `null` when it is.
    pub problem: Option<String>,
}

/// One headnode's status; `current` is the checksum of the base image a create would use on
/// its host now, where known.
fn status_of(
    hv: &Hypervisor,
    config: &Config,
    dom: &Domain,
    meta: &Metadata,
    current: Option<&str>,
) -> anyhow::Result<Status> {
    let facts = domain_xml::live_facts(&hv.xml(dom)?)?;
    let name = dom.name()?;
    let problem = match vlan_of_domain_name(&name) {
        None => Some(format!(
            "its name is not headnode-<VLAN>, yet its metadata says VLAN {}",
            meta.vlan
        )),
        Some(vlan) => {
            let problems = ownership::mismatches(&Footprint::of(config, vlan), meta, &facts);
            (!problems.is_empty()).then(|| problems.join("; "))
        }
    };
    Ok(Status {
        host: None,
        vlan: meta.vlan.id(),
        problem,
        domain: name,
        state: state_word(dom),
        virt_type: facts.virt_type,
        private_mac: meta.private_mac.to_string(),
        public_mac: meta.public_mac.to_string(),
        config_dir: meta.config_dir.display().to_string(),
        disk: facts.disk_sources.first().cloned().unwrap_or_default(),
        autostart: dom.autostart().unwrap_or(false),
        image_current: meta
            .base_sha256
            .as_deref()
            .zip(current)
            .map(|(made, now)| made == now),
        base_sha256: meta.base_sha256.clone(),
    })
}

/// Render statuses as an aligned table.
pub fn table(rows: &[Status]) -> String {
    let mut out = plain_table(rows);
    for row in rows {
        if let Some(problem) = &row.problem {
            out.push_str(&format!(
                "NOT OURS AS NAMED: {}: {problem}; mkheadnode will not touch it\n",
                row.domain
            ));
        }
        if row.image_current == Some(false) {
            out.push_str(&format!(
                "OUTDATED IMAGE: {} was made from base image {}, not from the current one: \
                 `mkheadnode rebuild {}` makes it anew from that\n",
                row.domain,
                short(row.base_sha256.as_deref().unwrap_or_default()),
                row.vlan
            ));
        }
    }
    out
}

/// The aligned columns of [`table`], with a HOST column first if any row has a host.
fn plain_table(rows: &[Status]) -> String {
    let hosts = rows.iter().any(|r| r.host.is_some());
    let header = [
        "HOST",
        "VLAN",
        "DOMAIN",
        "STATE",
        "VIRT",
        "PRIVATE MAC",
        "PUBLIC MAC",
        "CONFIG DIR",
        "DISK",
        "IMAGE",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|s| {
            [
                s.host.clone().unwrap_or_default(),
                s.vlan.to_string(),
                s.domain.clone(),
                s.state.clone(),
                s.virt_type.clone(),
                s.private_mac.clone(),
                s.public_mac.clone(),
                s.config_dir.clone(),
                s.disk.clone(),
                image_cell(s),
            ]
        })
        .collect();
    aligned(&header, &cells, !hosts)
}

/// The IMAGE cell: the base image's checksum, `(outdated)` after it where it is not the
/// current one, `-` where it is not known.
fn image_cell(s: &Status) -> String {
    match (s.base_sha256.as_deref(), s.image_current) {
        (None, _) => "-".into(),
        (Some(sha), Some(false)) => format!("{} (outdated)", short(sha)),
        (Some(sha), _) => short(sha).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let row = Status {
            host: None,
            vlan: 42,
            domain: "headnode-42".into(),
            state: "running".into(),
            virt_type: "qemu".into(),
            private_mac: "52:54:00:4d:00:2a".into(),
            public_mac: "52:54:00:4d:10:2a".into(),
            config_dir: "/var/lib/headnode-config/42".into(),
            disk: "/d.qcow2".into(),
            autostart: true,
            problem: None,
            base_sha256: None,
            image_current: None,
        };
        let t = table(std::slice::from_ref(&row));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("DOMAIN"), lines[1].find("headnode-42"));
        assert_eq!(lines[0].find("DISK"), lines[1].find("/d.qcow2"));
        let flagged = Status {
            problem: Some("its metadata says VLAN 41".into()),
            ..row
        };
        let t = table(&[flagged]);
        assert!(
            t.lines()
                .nth(2)
                .unwrap()
                .contains("headnode-42: its metadata says VLAN 41"),
            "{t}"
        );
    }

    #[test]
    fn a_headnode_on_an_outdated_image_is_flagged_with_the_command_that_moves_it() {
        let sha = "3f2a9c1d0b7e5a44aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let row = Status {
            host: None,
            vlan: 4080,
            domain: "headnode-4080".into(),
            state: "running".into(),
            virt_type: "qemu".into(),
            private_mac: String::new(),
            public_mac: String::new(),
            config_dir: String::new(),
            disk: "/d.qcow2".into(),
            autostart: true,
            problem: None,
            base_sha256: Some(sha.into()),
            image_current: Some(false),
        };
        let t = table(std::slice::from_ref(&row));
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].ends_with("/d.qcow2  3f2a9c1d0b7e (outdated)"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("OUTDATED IMAGE: headnode-4080")
                && lines[2].contains("`mkheadnode rebuild 4080`"),
            "{t}"
        );
        let current = Status {
            image_current: Some(true),
            ..row.clone()
        };
        let t = table(&[current]);
        assert!(t.lines().nth(1).unwrap().ends_with("  3f2a9c1d0b7e"), "{t}");
        assert_eq!(t.lines().count(), 2, "{t}");
        let unknown = Status {
            base_sha256: None,
            image_current: None,
            ..row
        };
        assert!(table(&[unknown]).lines().nth(1).unwrap().ends_with("  -"));
    }

    #[test]
    fn a_fleet_table_has_a_host_column() {
        let row = |host: &str, vlan: u16| Status {
            host: Some(host.into()),
            vlan,
            domain: format!("headnode-{vlan}"),
            state: "running".into(),
            virt_type: "qemu".into(),
            private_mac: String::new(),
            public_mac: String::new(),
            config_dir: String::new(),
            disk: String::new(),
            autostart: true,
            problem: None,
            base_sha256: None,
            image_current: None,
        };
        let t = table(&[row("hv1", 7), row("hypervisor-2", 300)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("HOST          VLAN  DOMAIN"), "{t}");
        assert!(
            lines[2].starts_with("hypervisor-2  300   headnode-300"),
            "{t}"
        );
        assert!(!table(&[Status {
            host: None,
            ..row("x", 7)
        }])
        .contains("HOST"));
    }
}
