/*!
A fleet of hypervisors in the configuration: `[[hosts]]` entries, each with a name, a libvirt URI
and the VLANs it serves, and the placement of a run's VLANs on them.

```toml
[[hosts]]
name = "hv1"
uri = "qemu+ssh://root@hv1/system"
vlans = "100-199"
[[hosts]]
name = "hv2"
uri = "qemu+ssh://root@hv2/system"
vlans = "200-299,350"
```

A VLAN claimed by two hosts is a configuration error naming both; so is a name used twice.
*/

use crate::error::{failure, Kind};
use crate::model::text::control_problem;
use crate::model::vlan::{self, Vlan};
use serde::{Deserialize, Serialize};

/// One hypervisor of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// What the operator calls it (`--host NAME`, the HOST column): letters, digits, `.`, `_`,
    /// `-`.
    pub name: String,
    /// Its libvirt URI, e.g. `qemu+ssh://root@hv1/system`.
    pub uri: String,
    /// The VLANs it serves, as on the command line: `100-199,250`.
    pub vlans: String,
}

impl Host {
    /// The VLANs it serves (checked by [`validate`]).
    pub fn served(&self) -> Vec<Vlan> {
        vlan::parse_list(&self.vlans).unwrap_or_default()
    }
}

/// Check every host on its own, then that no name and no VLAN is claimed twice.
pub fn validate(hosts: &[Host]) -> anyhow::Result<()> {
    let mut owner: Vec<Option<&str>> = vec![None; usize::from(Vlan::MAX) + 1];
    for (i, host) in hosts.iter().enumerate() {
        let name = &host.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(bad(format!(
                "hosts[{i}].name = {name:?}: use letters, digits, '.', '_' and '-'"
            )));
        }
        if hosts[..i].iter().any(|h| &h.name == name) {
            return Err(bad(format!("two hosts are named {name:?}")));
        }
        if let Some(problem) = control_problem(&host.uri) {
            return Err(bad(format!("hosts[{i}].uri ({name}) {problem}")));
        }
        if !host.uri.contains("://") {
            return Err(bad(format!(
                "hosts[{i}].uri = {:?} ({name}) is not a libvirt URI (e.g. \
                 qemu+ssh://root@{name}/system)",
                host.uri
            )));
        }
        let served = vlan::parse_list(&host.vlans)
            .map_err(|e| bad(format!("hosts[{i}].vlans ({name}): {e:#}")))?;
        for v in served {
            let slot = &mut owner[usize::from(v.id())];
            match slot {
                Some(other) if *other != name.as_str() => {
                    return Err(bad(format!(
                        "VLAN {v} is claimed by two hosts, {other} and {name}: give it to one"
                    )))
                }
                _ => *slot = Some(name),
            }
        }
    }
    Ok(())
}

/// The hosts `only` names (all if it names none); an unknown name is an error.
pub fn selected<'a>(hosts: &'a [Host], only: &[String]) -> anyhow::Result<Vec<&'a Host>> {
    if let Some(unknown) = only.iter().find(|n| !hosts.iter().any(|h| &&h.name == n)) {
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        return Err(bad(format!(
            "--host {unknown}: no such host in the configuration (hosts: {})",
            names.join(", ")
        )));
    }
    Ok(hosts
        .iter()
        .filter(|h| only.is_empty() || only.contains(&h.name))
        .collect())
}

/// Each of `hosts` with the VLANs of `vlans` it serves, in order, leaving out hosts with none. A
/// VLAN that none of them serves is an error naming it (and every other such VLAN).
pub fn place<'a>(hosts: &[&'a Host], vlans: &[Vlan]) -> anyhow::Result<Vec<(&'a Host, Vec<Vlan>)>> {
    let mut placed: Vec<(&Host, Vec<Vlan>)> = hosts.iter().map(|h| (*h, Vec::new())).collect();
    let served: Vec<Vec<Vlan>> = hosts.iter().map(|h| h.served()).collect();
    let mut homeless = Vec::new();
    for &v in vlans {
        match served.iter().position(|s| s.contains(&v)) {
            Some(i) => placed[i].1.push(v),
            None => homeless.push(v.to_string()),
        }
    }
    if !homeless.is_empty() {
        return Err(bad(format!(
            "no host (of those selected) serves VLAN {}: add it to a host's vlans",
            homeless.join(", ")
        )));
    }
    placed.retain(|(_, v)| !v.is_empty());
    Ok(placed)
}

fn bad(message: String) -> anyhow::Error {
    failure(Kind::Usage, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, vlans: &str) -> Host {
        Host {
            name: name.into(),
            uri: format!("qemu+ssh://root@{name}/system"),
            vlans: vlans.into(),
        }
    }

    #[test]
    fn a_vlan_claimed_twice_names_both_hosts() {
        let err = validate(&[host("hv1", "100-199"), host("hv2", "150,300")]).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "VLAN 150 is claimed by two hosts, hv1 and hv2: give it to one"
        );
        validate(&[host("hv1", "100-199"), host("hv2", "200-299")]).unwrap();
        assert!(validate(&[host("hv1", "1"), host("hv1", "2")]).is_err());
        assert!(validate(&[host("hv 1", "1")]).is_err());
        assert!(validate(&[host("hv1", "0-3")]).is_err());
    }

    #[test]
    fn vlans_go_to_their_hosts_and_homeless_ones_are_named() {
        let hosts = [host("hv1", "100-199"), host("hv2", "200-299")];
        let all = selected(&hosts, &[]).unwrap();
        let vlans = vlan::parse_list("150,250,199").unwrap();
        let placed = place(&all, &vlans).unwrap();
        let names: Vec<(&str, Vec<u16>)> = placed
            .iter()
            .map(|(h, v)| (h.name.as_str(), v.iter().map(|v| v.id()).collect()))
            .collect();
        assert_eq!(names, vec![("hv1", vec![150, 199]), ("hv2", vec![250])]);
        let err = place(&all, &vlan::parse_list("150,300,301").unwrap()).unwrap_err();
        assert!(format!("{err}").contains("VLAN 300, 301"), "{err}");
        let only = selected(&hosts, &["hv2".into()]).unwrap();
        assert!(place(&only, &vlan::parse_list("150").unwrap()).is_err());
        assert!(selected(&hosts, &["hv9".into()]).is_err());
    }
}
