/*!
libvirt XML: the domain, pool and volume documents we emit (rendered from `xml-templates/`),
and reading back the parts of libvirt's XML that we own (our `<metadata>` element) or report.
*/

use crate::model::config::Attachment;
use crate::model::mac::Mac;
use crate::model::plan::{Nic, Plan, VirtType};
use crate::model::vlan::Vlan;
use crate::render::template::{render, Vars};
use anyhow::{anyhow, Context as _};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The XML namespace of our `<metadata>` element; its presence marks a domain as ours.
pub const METADATA_NS: &str = "urn:x-mkheadnode:headnode:1";

const DOMAIN: &str = include_str!("../../xml-templates/domain.xml");
const IFACE_NETWORK: &str = include_str!("../../xml-templates/interface-network.xml");
const IFACE_BRIDGE: &str = include_str!("../../xml-templates/interface-bridge.xml");
const IFACE_OVS: &str = include_str!("../../xml-templates/interface-ovs.xml");
const POOL: &str = include_str!("../../xml-templates/pool.xml");
const OVERLAY_VOLUME: &str = include_str!("../../xml-templates/overlay-volume.xml");
const SEED_VOLUME: &str = include_str!("../../xml-templates/seed-volume.xml");
const TCG_FEATURES: &str = include_str!("../../xml-templates/tcg-features.xml");
const KVM_PROBE: &str = include_str!("../../xml-templates/kvm-probe.xml");

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("path {} is not valid UTF-8", p.display()))
}

/// The domain XML of a planned headnode.
pub fn domain(plan: &Plan) -> anyhow::Result<String> {
    let ctx = Vars::new()
        .value("virt_type", plan.virt_type)
        .value("name", &plan.domain_name)
        .value("title", format!("PXE headnode for VLAN {}", plan.vlan))
        .value("vlan", plan.vlan)
        .value("version", env!("CARGO_PKG_VERSION"))
        .value("private_mac", plan.private_nic.mac)
        .value("public_mac", plan.public_nic.mac)
        .value("pool", &plan.pool)
        .value("disk_volume", &plan.disk_volume)
        .value("seed_volume", &plan.seed_volume)
        .value("config_dir", path_str(&plan.config_dir)?)
        .value("base_image", path_str(&plan.base_image)?)
        .value(
            "base_sha256",
            plan.base_sha256.as_deref().unwrap_or_default(),
        )
        .value("memory_mib", plan.memory_mib)
        .value("vcpus", plan.vcpus)
        .value("disk_path", path_str(&plan.disk_path())?)
        .value("seed_path", path_str(&plan.seed_path())?)
        .value("serial_log", path_str(&plan.serial_log)?)
        .slot(
            "private-interface",
            interface(&plan.private_nic, plan.vlan)?,
        )
        .slot("public-interface", interface(&plan.public_nic, plan.vlan)?)
        .slot("tcg-features", tcg_features(plan)?);
    render(DOMAIN, "domain.xml", &ctx)
}

/// The `<tcg>` features of a headnode that runs under TCG; none under KVM.
fn tcg_features(plan: &Plan) -> anyhow::Result<String> {
    match plan.virt_type {
        VirtType::Qemu => render(
            TCG_FEATURES,
            "tcg-features.xml",
            &Vars::new().value("tb_cache_mib", plan.tcg_tb_cache_mib),
        ),
        VirtType::Kvm => Ok(String::new()),
    }
}

fn interface(nic: &Nic, vlan: Vlan) -> anyhow::Result<String> {
    let ctx = Vars::new().value("mac", nic.mac);
    match &nic.attachment {
        Attachment::Network { name } => render(
            IFACE_NETWORK,
            "interface-network.xml",
            &ctx.value("source", name),
        ),
        Attachment::Bridge { name } => render(
            IFACE_BRIDGE,
            "interface-bridge.xml",
            &ctx.value("source", name),
        ),
        Attachment::Ovs { name } => render(
            IFACE_OVS,
            "interface-ovs.xml",
            &ctx.value("source", name).value("vlan", vlan),
        ),
    }
}

/// The XML of our directory storage pool.
pub fn pool(name: &str, dir: &Path, mode: u32) -> anyhow::Result<String> {
    let ctx = Vars::new()
        .value("name", name)
        .value("path", path_str(dir)?)
        .value("mode", format!("{mode:04o}"));
    render(POOL, "pool.xml", &ctx)
}

/// The XML of a qcow2 overlay volume on `backing` (of format `backing_format`).
pub fn overlay_volume(
    name: &str,
    capacity: u64,
    backing: &Path,
    backing_format: &str,
) -> anyhow::Result<String> {
    let ctx = Vars::new()
        .value("name", name)
        .value("capacity", capacity)
        .value("backing_path", path_str(backing)?)
        .value("backing_format", backing_format);
    render(OVERLAY_VOLUME, "overlay-volume.xml", &ctx)
}

/// The XML of a raw volume (a plain file in a dir pool, owned by root, mode 0644) that will
/// receive the seed image or a config file.
pub fn raw_volume(name: &str, capacity: u64) -> anyhow::Result<String> {
    raw_volume_as(name, capacity, 0o644, 0)
}

/// The XML of a raw volume owned by root and group `gid`, with `mode`.
pub fn raw_volume_as(name: &str, capacity: u64, mode: u32, gid: u32) -> anyhow::Result<String> {
    let ctx = Vars::new()
        .value("name", name)
        .value("capacity", capacity)
        .value("mode", format!("{mode:04o}"))
        .value("group", gid);
    render(SEED_VOLUME, "seed-volume.xml", &ctx)
}

/// A transient KVM domain that boots `image` read-only with its console logged to `serial_log`.
pub fn kvm_probe(
    name: &str,
    image: &Path,
    format: &str,
    serial_log: &Path,
) -> anyhow::Result<String> {
    let ctx = Vars::new()
        .value("name", name)
        .value("image", path_str(image)?)
        .value("format", format)
        .value("serial_log", path_str(serial_log)?);
    render(KVM_PROBE, "kvm-probe.xml", &ctx)
}

/// What our `<metadata>` element records about a headnode and mkheadnode reads back. (It also
/// records the mkheadnode version that made the domain, for people; nothing reads that.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The VLAN.
    pub vlan: Vlan,
    /// MAC of NIC 1 (VLAN side).
    pub private_mac: Mac,
    /// MAC of NIC 2 (public side).
    pub public_mac: Mac,
    /// Pool that holds its volumes.
    pub pool: String,
    /// Its overlay volume's name.
    pub disk_volume: String,
    /// Its seed volume's name.
    pub seed_volume: String,
    /// Its config dir on the host.
    pub config_dir: PathBuf,
    /// The base image it was made from (absent in headnodes made before it was recorded).
    pub base_image: Option<PathBuf>,
    /// That image's SHA-256, where it was known.
    pub base_sha256: Option<String>,
}

/// Leaf elements of an XML document by local name (namespace prefixes ignored).
fn leaves(xml: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut reader = Reader::from_str(xml);
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    loop {
        match reader.read_event()? {
            Event::Start(e) => current = Some(e.local_name().as_ref().to_string()),
            Event::Text(t) => {
                if let Some(name) = &current {
                    let text = t.trim();
                    if !text.is_empty() {
                        out.entry(name.clone())
                            .or_insert_with(String::new)
                            .push_str(text);
                    }
                }
            }
            Event::GeneralRef(r) => {
                if let (Some(name), Ok(Some(ch))) = (&current, r.resolve_char_ref()) {
                    out.entry(name.clone()).or_insert_with(String::new).push(ch);
                } else if let Some(name) = &current {
                    let s = match r.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    };
                    out.entry(name.clone())
                        .or_insert_with(String::new)
                        .push_str(s);
                }
            }
            Event::End(_) => current = None,
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// Parse our metadata element as libvirt returns it from `virDomainGetMetadata`.
pub fn parse_metadata(xml: &str) -> anyhow::Result<Metadata> {
    let map = leaves(xml).context("reading mkheadnode metadata")?;
    let get = |k: &str| {
        map.get(k)
            .cloned()
            .ok_or_else(|| anyhow!("mkheadnode metadata has no <{k}>"))
    };
    Ok(Metadata {
        vlan: get("vlan")?.parse()?,
        private_mac: get("private-mac")?.parse()?,
        public_mac: get("public-mac")?.parse()?,
        pool: get("pool")?,
        disk_volume: get("disk-volume")?,
        seed_volume: get("seed-volume")?,
        config_dir: PathBuf::from(get("config-dir")?),
        base_image: map.get("base-image").map(PathBuf::from),
        base_sha256: map.get("base-sha256").cloned(),
    })
}

/// The few facts about a live domain that `status` reports and tests check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveFacts {
    /// `<domain type=...>`.
    pub virt_type: String,
    /// Every `<interface>`: (MAC, network or bridge it is attached to).
    pub interfaces: Vec<(String, String)>,
    /// Every `<filesystem>`: (accessmode, source dir, target, read-only).
    pub filesystems: Vec<(String, String, String, bool)>,
    /// Every disk's source file.
    pub disk_sources: Vec<String>,
}

/// Read [`LiveFacts`] from a domain's XML.
pub fn live_facts(xml: &str) -> anyhow::Result<LiveFacts> {
    let mut reader = Reader::from_str(xml);
    let mut facts = LiveFacts::default();
    let mut stack: Vec<String> = Vec::new();
    loop {
        let event = reader.read_event()?;
        let (e, empty) = match &event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                stack.pop();
                continue;
            }
            Event::Eof => return Ok(facts),
            _ => continue,
        };
        let name = e.name().as_ref().to_string();
        let mut attrs = BTreeMap::new();
        for a in e.attributes() {
            let a = a?;
            attrs.insert(
                a.key.as_ref().to_string(),
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                    .into_owned(),
            );
        }
        let parent = stack.last().map(String::as_str);
        let attr = |k: &str| attrs.get(k).cloned().unwrap_or_default();
        match (parent, name.as_str()) {
            (None, "domain") => facts.virt_type = attr("type"),
            (Some("devices"), "interface") => facts.interfaces.push((String::new(), String::new())),
            (Some("interface"), "mac") => {
                if let Some(i) = facts.interfaces.last_mut() {
                    i.0 = attr("address");
                }
            }
            (Some("interface"), "source") => {
                if let Some(i) = facts.interfaces.last_mut() {
                    i.1 = attrs
                        .get("network")
                        .or(attrs.get("bridge"))
                        .cloned()
                        .unwrap_or_default();
                }
            }
            (Some("devices"), "filesystem") => {
                facts
                    .filesystems
                    .push((attr("accessmode"), String::new(), String::new(), false))
            }
            (Some("filesystem"), "source") => {
                if let Some(f) = facts.filesystems.last_mut() {
                    f.1 = attr("dir");
                }
            }
            (Some("filesystem"), "target") => {
                if let Some(f) = facts.filesystems.last_mut() {
                    f.2 = attr("dir");
                }
            }
            (Some("filesystem"), "readonly") => {
                if let Some(f) = facts.filesystems.last_mut() {
                    f.3 = true;
                }
            }
            (Some("disk"), "source") => facts.disk_sources.push(attr("file")),
            _ => {}
        }
        if !empty {
            stack.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Config;
    use crate::model::plan::VirtType;

    fn plan() -> Plan {
        Plan::new(&Config::default(), Vlan::new(42).unwrap(), VirtType::Qemu)
    }

    #[test]
    fn domain_has_what_the_recipe_asks_for() {
        let xml = domain(&plan()).unwrap();
        let facts = live_facts(&xml).unwrap();
        assert_eq!(facts.virt_type, "qemu");
        assert_eq!(
            facts.interfaces,
            vec![
                ("52:54:00:4d:00:2a".to_string(), "vlan42".to_string()),
                ("52:54:00:4d:10:2a".to_string(), "default".to_string())
            ]
        );
        assert_eq!(
            facts.filesystems,
            vec![(
                "mapped".into(),
                "/var/lib/headnode-config/42".into(),
                "/etc/moc".into(),
                true
            )]
        );
        assert_eq!(
            facts.disk_sources,
            vec![
                "/var/lib/mkheadnode/images/headnode-42.qcow2".to_string(),
                "/var/lib/mkheadnode/images/headnode-42-seed.iso".to_string()
            ]
        );
        assert!(xml.contains("<name>headnode-42</name>"));
        assert!(xml.contains(r#"<memory unit="MiB">512</memory>"#));
        assert!(xml.contains("org.qemu.guest_agent.0"));
        assert!(xml.contains("headnode-42-serial.log"));
    }

    #[test]
    fn only_a_tcg_headnode_gets_a_sized_translation_cache() {
        let config = Config {
            tcg_tb_cache_mib: 96,
            ..Config::default()
        };
        let vlan = Vlan::new(42).unwrap();
        let tcg = domain(&Plan::new(&config, vlan, VirtType::Qemu)).unwrap();
        assert!(
            tcg.contains(r#"<tb-cache unit="MiB">96</tb-cache>"#),
            "{tcg}"
        );
        let kvm = domain(&Plan::new(&config, vlan, VirtType::Kvm)).unwrap();
        assert!(!kvm.contains("<tcg>"), "{kvm}");
        assert!(kvm.contains(r#"freePageReporting="on""#), "{kvm}");
    }

    #[test]
    fn metadata_round_trips() {
        let xml = domain(&plan()).unwrap();
        let start = xml.find("<mkheadnode:headnode").unwrap();
        let end = xml.find("</mkheadnode:headnode>").unwrap() + "</mkheadnode:headnode>".len();
        let meta = parse_metadata(&xml[start..end]).unwrap();
        assert_eq!(meta.vlan, Vlan::new(42).unwrap());
        assert_eq!(meta.private_mac, plan().private_nic.mac);
        assert_eq!(meta.disk_volume, "headnode-42.qcow2");
        assert_eq!(
            meta.config_dir,
            PathBuf::from("/var/lib/headnode-config/42")
        );
        assert_eq!(
            (meta.base_image, meta.base_sha256),
            (Some(plan().base_image), None),
            "an unknown checksum is no checksum"
        );
        let mut pushed = plan();
        pushed.base_image = PathBuf::from("/var/lib/mkheadnode/pushed/b.0123456789abcdef.qcow2");
        pushed.base_sha256 = Some(format!("0123456789abcdef{}", "0".repeat(48)));
        let xml = domain(&pushed).unwrap();
        let start = xml.find("<mkheadnode:headnode").unwrap();
        let end = xml.find("</mkheadnode:headnode>").unwrap() + "</mkheadnode:headnode>".len();
        let meta = parse_metadata(&xml[start..end]).unwrap();
        assert_eq!(meta.base_image, Some(pushed.base_image));
        assert_eq!(meta.base_sha256, pushed.base_sha256);
        // libvirt hands the element back with a default namespace instead of our prefix.
        let unprefixed = format!(
            "<headnode xmlns=\"{METADATA_NS}\"><vlan>9</vlan><version>0.1.0</version><private-mac>52:54:00:4d:00:09</private-mac><public-mac>52:54:00:4d:10:09</public-mac><pool>p</pool><disk-volume>d</disk-volume><seed-volume>s</seed-volume><config-dir>/c&amp;d</config-dir></headnode>"
        );
        let meta = parse_metadata(&unprefixed).unwrap();
        assert_eq!(meta.vlan.id(), 9);
        assert_eq!(meta.config_dir, PathBuf::from("/c&d"));
        // The version is for people: metadata without it is still ours.
        let unversioned = unprefixed.replace("<version>0.1.0</version>", "");
        assert_eq!(parse_metadata(&unversioned).unwrap(), meta);
        assert!(parse_metadata("<headnode><vlan>9</vlan></headnode>").is_err());
    }

    #[test]
    fn metadata_reads_back_every_escaped_character() {
        let config = Config {
            pool: "p&<>\"'q".into(),
            ..Config::default()
        };
        let xml = domain(&Plan::new(&config, Vlan::new(42).unwrap(), VirtType::Qemu)).unwrap();
        let start = xml.find("<mkheadnode:headnode").unwrap();
        let end = xml.find("</mkheadnode:headnode>").unwrap() + "</mkheadnode:headnode>".len();
        assert_eq!(parse_metadata(&xml[start..end]).unwrap().pool, "p&<>\"'q");
        let by_number = "<headnode><vlan>4&#x30;</vlan><private-mac>52:54:00:4d:00:28</private-mac><public-mac>52:54:00:4d:10:28</public-mac><pool>&#65;</pool><disk-volume>d</disk-volume><seed-volume>s</seed-volume><config-dir>/c</config-dir></headnode>";
        let meta = parse_metadata(by_number).unwrap();
        assert_eq!((meta.vlan.id(), meta.pool.as_str()), (40, "A"));
    }

    #[test]
    fn text_between_elements_belongs_to_no_leaf() {
        let map = leaves("<h><a>1</a>stray<b>2</b> </h>").unwrap();
        assert_eq!(map.get("a").map(String::as_str), Some("1"));
        assert_eq!(map.get("b").map(String::as_str), Some("2"));
        assert_eq!(map.len(), 2, "{map:?}");
    }

    #[test]
    fn the_kvm_probe_boots_the_image_read_only_with_its_console_logged() {
        let xml = kvm_probe(
            "mkheadnode-kvm-probe",
            Path::new("/base/img.qcow2"),
            "qcow2",
            Path::new("/run/mkheadnode/probe.log"),
        )
        .unwrap();
        assert!(xml.starts_with(r#"<domain type="kvm">"#), "{xml}");
        for want in [
            "<name>mkheadnode-kvm-probe</name>",
            r#"<driver name="qemu" type="qcow2"/>"#,
            r#"<source file="/base/img.qcow2"/>"#,
            "<readonly/>",
            r#"<source path="/run/mkheadnode/probe.log"/>"#,
        ] {
            assert!(xml.contains(want), "no {want} in {xml}");
        }
    }

    #[test]
    fn bridge_and_ovs_attachments() {
        let config = Config {
            vlan_attachment: Attachment::Ovs {
                name: "br-trunk".into(),
            },
            public_attachment: Attachment::Bridge {
                name: "br-public".into(),
            },
            ..Config::default()
        };
        let xml = domain(&Plan::new(&config, Vlan::new(300).unwrap(), VirtType::Kvm)).unwrap();
        assert!(xml.contains(r#"<domain type="kvm">"#));
        assert!(xml.contains(r#"<virtualport type="openvswitch"/>"#));
        assert!(xml.contains(r#"<tag id="300"/>"#));
        let facts = live_facts(&xml).unwrap();
        assert_eq!(facts.interfaces[0].1, "br-trunk");
        assert_eq!(facts.interfaces[1].1, "br-public");
    }

    #[test]
    fn volume_documents() {
        let xml = overlay_volume(
            "headnode-1.qcow2",
            10 << 30,
            Path::new("/base/img.qcow2"),
            "qcow2",
        )
        .unwrap();
        assert!(xml.contains("<path>/base/img.qcow2</path>") && xml.contains(">10737418240<"));
        assert!(raw_volume("s.iso", 65536).unwrap().contains(">65536<"));
        assert!(pool("mkheadnode", Path::new("/var/lib/x"), 0o711)
            .unwrap()
            .contains("<path>/var/lib/x</path>"));
    }
}
