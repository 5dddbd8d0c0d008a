/*!
Whether a domain that carries our metadata really is the headnode of the VLAN it is named
for. A copy of `headnode-42`'s XML defined as `headnode-43` carries VLAN 42's metadata, and
trusting it made `teardown 43 --purge` delete VLAN 42's disk, seed and config dir. So before
anything is deleted (or reported as ours), the metadata and the domain's own disks and share
are held against the [`Footprint`] the configuration gives that VLAN. Pure: the effects are the
callers'.
*/

use crate::model::footprint::Footprint;
use crate::render::domain_xml::{LiveFacts, Metadata};
use std::path::{Path, PathBuf};

/// What in `meta` and `facts` (the domain's live XML) is not `expected`'s: one phrase per
/// mismatch, empty when the domain is that VLAN's headnode.
pub fn mismatches(expected: &Footprint, meta: &Metadata, facts: &LiveFacts) -> Vec<String> {
    let mut out = Vec::new();
    if meta.vlan != expected.vlan {
        out.push(format!("its metadata says VLAN {}", meta.vlan));
    }
    if (meta.private_mac, meta.public_mac) != (expected.private_mac, expected.public_mac) {
        out.push(format!(
            "its metadata has the MACs {} and {}, not VLAN {}'s {} and {}",
            meta.private_mac,
            meta.public_mac,
            expected.vlan,
            expected.private_mac,
            expected.public_mac
        ));
    }
    if meta.pool != expected.pool {
        out.push(format!(
            "its metadata puts its volumes in pool `{}`, not in our pool `{}`",
            meta.pool, expected.pool
        ));
    }
    if (&meta.disk_volume, &meta.seed_volume) != (&expected.disk_volume, &expected.seed_volume) {
        out.push(format!(
            "its metadata names the volumes `{}` and `{}`, not `{}` and `{}`",
            meta.disk_volume, meta.seed_volume, expected.disk_volume, expected.seed_volume
        ));
    }
    if meta.config_dir != expected.config_dir {
        out.push(format!(
            "its metadata names the config dir {}, not {}",
            meta.config_dir.display(),
            expected.config_dir.display()
        ));
    }
    out.extend(live_mismatches(expected, facts));
    out
}

/// What in the domain's own devices is not `expected`'s: its disks must be the two planned
/// volumes' files and its one share the planned config dir.
fn live_mismatches(expected: &Footprint, facts: &LiveFacts) -> Vec<String> {
    let mut out = Vec::new();
    let mut disks: Vec<PathBuf> = facts.disk_sources.iter().map(PathBuf::from).collect();
    disks.sort();
    let mut planned = vec![expected.disk_path(), expected.seed_path()];
    planned.sort();
    if disks != planned {
        out.push(format!(
            "its disks are {}, not {}",
            list(&disks),
            list(&planned)
        ));
    }
    let shares: Vec<PathBuf> = facts
        .filesystems
        .iter()
        .map(|(_, source, _, _)| PathBuf::from(source))
        .collect();
    if shares != [expected.config_dir.clone()] {
        out.push(format!(
            "it shares {}, not {}",
            list(&shares),
            expected.config_dir.display()
        ));
    }
    out
}

fn list(paths: &[impl AsRef<Path>]) -> String {
    if paths.is_empty() {
        return "nothing".into();
    }
    paths
        .iter()
        .map(|p| p.as_ref().display().to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The sentence that refuses to touch `name`, given its [`mismatches`].
pub fn refusal(name: &str, problems: &[String]) -> String {
    format!(
        "domain {name} carries mkheadnode metadata but is not the headnode its name and the \
         configuration say: {}. It may be a copy of another headnode's XML, so mkheadnode \
         refuses to touch it or anything it names. If the configuration changed since it was \
         made (pool, pool_dir, config_root), run mkheadnode with the settings it was made with; \
         otherwise look at it (`virsh dumpxml {name}`) and remove it yourself \
         (`virsh undefine {name}`, without --remove-all-storage: its disks may be another \
         headnode's)",
        problems.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Config;
    use crate::model::plan::{Plan, VirtType};
    use crate::model::vlan::Vlan;
    use crate::render::domain_xml::{domain, live_facts, parse_metadata};

    /// The metadata and live facts of the domain XML planned for `vlan`, defined by the name
    /// of `as_vlan` (a copy renamed, as in the issue).
    fn copied(vlan: u16, config: &Config) -> (Metadata, LiveFacts) {
        let plan = Plan::new(config, Vlan::new(vlan).unwrap(), VirtType::Qemu);
        let xml = domain(&plan).unwrap();
        let start = xml.find("<mkheadnode:headnode").unwrap();
        let end = xml.find("</mkheadnode:headnode>").unwrap() + "</mkheadnode:headnode>".len();
        (
            parse_metadata(&xml[start..end]).unwrap(),
            live_facts(&xml).unwrap(),
        )
    }

    #[test]
    fn the_planned_domain_is_ours() {
        let config = Config::default();
        let (meta, facts) = copied(42, &config);
        let expected = Footprint::of(&config, Vlan::new(42).unwrap());
        assert_eq!(mismatches(&expected, &meta, &facts), Vec::<String>::new());
    }

    #[test]
    fn a_copy_of_another_vlans_domain_is_not() {
        let config = Config::default();
        let (meta, facts) = copied(42, &config);
        let expected = Footprint::of(&config, Vlan::new(43).unwrap());
        let found = mismatches(&expected, &meta, &facts).join("; ");
        for phrase in [
            "says VLAN 42",
            "headnode-42.qcow2",
            "/var/lib/headnode-config/42, not /var/lib/headnode-config/43",
            "its disks are",
            "it shares",
        ] {
            assert!(found.contains(phrase), "{phrase}: {found}");
        }
    }

    #[test]
    fn each_field_counts_on_its_own() {
        let config = Config::default();
        let vlan = Vlan::new(42).unwrap();
        let expected = Footprint::of(&config, vlan);
        let (meta, facts) = copied(42, &config);
        type Edit = Box<dyn Fn(&mut Metadata, &mut LiveFacts)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("pool", Box::new(|m, _| m.pool = "default".into())),
            ("volumes", Box::new(|m, _| m.seed_volume = "x.iso".into())),
            ("config dir", Box::new(|m, _| m.config_dir = "/etc".into())),
            ("MACs", Box::new(|m, _| m.public_mac = m.private_mac)),
            (
                "disks",
                Box::new(|_, f| f.disk_sources[0] = "/var/lib/other.qcow2".into()),
            ),
            ("shares", Box::new(|_, f| f.filesystems[0].1 = "/".into())),
        ];
        for (what, edit) in edits {
            let (mut m, mut f) = (meta.clone(), facts.clone());
            edit(&mut m, &mut f);
            let found = mismatches(&expected, &m, &f);
            assert_eq!(found.len(), 1, "{what}: {found:?}");
            assert!(found[0].contains(what), "{what}: {found:?}");
        }
        let text = refusal("headnode-42", &["its metadata says VLAN 7".into()]);
        assert!(text.contains("says VLAN 7") && text.contains("virsh undefine headnode-42"));
    }
}
