/*!
State records: what a run is about to make or remove, written durably before it does, so that
whatever the moment it is interrupted at (Ctrl-C, SIGTERM, kill -9, power loss), the next run
can tell its leftovers from anybody else's.

A [`Intent::Volume`] record is written before a volume is created, and before the domain
that owns a volume is removed; an [`Intent::Domain`] record before a domain is defined. They
are removed once the domain owns the volumes (a create that finished) or once the things they
name are gone. A leftover is removed only if a record names it *and* the record matches the
[`Footprint`] the configuration gives its VLAN; anything else is left alone.
*/

use crate::error::{failure, Kind};
use crate::model::footprint::Footprint;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One state record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Intent {
    /// A volume mkheadnode is about to create, or whose domain it is about to remove.
    Volume {
        /// The VLAN whose headnode it is.
        vlan: u16,
        /// The storage pool.
        pool: String,
        /// The volume's name in the pool.
        volume: String,
        /// The volume's planned path on the hypervisor.
        path: PathBuf,
    },
    /// A domain mkheadnode is about to define.
    Domain {
        /// The VLAN whose headnode it is.
        vlan: u16,
        /// The domain's name.
        domain: String,
    },
}

impl Intent {
    /// The record of `footprint`'s volume `volume` (its disk or seed volume).
    pub fn volume(footprint: &Footprint, volume: &str) -> Intent {
        Intent::Volume {
            vlan: footprint.vlan.id(),
            pool: footprint.pool.clone(),
            volume: volume.to_string(),
            path: footprint.pool_dir.join(volume),
        }
    }

    /// The record of `footprint`'s domain.
    pub fn domain(footprint: &Footprint) -> Intent {
        Intent::Domain {
            vlan: footprint.vlan.id(),
            domain: footprint.domain_name.clone(),
        }
    }

    /// The record's file name in its VLAN's state directory: one file per thing.
    pub fn file_name(&self) -> String {
        match self {
            Intent::Volume { volume, .. } => format!("volume-{volume}.json"),
            Intent::Domain { .. } => "domain.json".into(),
        }
    }

    /// Whether the record names exactly what `footprint` plans: the VLAN, our pool, one of its
    /// two volumes at its planned path, or its domain. Only then is what it names ours.
    pub fn matches(&self, footprint: &Footprint) -> bool {
        match self {
            Intent::Volume {
                vlan,
                pool,
                volume,
                path,
            } => {
                *vlan == footprint.vlan.id()
                    && *pool == footprint.pool
                    && footprint.volume_path(volume).as_ref() == Some(path)
            }
            Intent::Domain { vlan, domain } => {
                *vlan == footprint.vlan.id() && *domain == footprint.domain_name
            }
        }
    }

    /// What the record names, for people.
    pub fn describe(&self) -> String {
        match self {
            Intent::Volume {
                pool, volume, path, ..
            } => format!("volume {volume} in pool {pool} ({})", path.display()),
            Intent::Domain { domain, .. } => format!("domain {domain}"),
        }
    }

    /// The record as written to its file.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// A record read back from `origin`; an error names it and says why it is not one.
    pub fn from_text(text: &str, origin: &str) -> anyhow::Result<Intent> {
        serde_json::from_str(text).map_err(|e| {
            failure(
                Kind::Other,
                format!("{origin} is not a mkheadnode state record ({e})"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Config;
    use crate::model::vlan::Vlan;

    fn footprint(vlan: u16) -> Footprint {
        Footprint::of(&Config::default(), Vlan::new(vlan).unwrap())
    }

    #[test]
    fn records_round_trip_through_their_text() {
        let f = footprint(42);
        for intent in [
            Intent::volume(&f, &f.disk_volume),
            Intent::volume(&f, &f.seed_volume),
            Intent::domain(&f),
        ] {
            let back = Intent::from_text(&intent.to_text(), "r.json").unwrap();
            assert_eq!(back, intent);
            assert!(back.matches(&f));
        }
        assert_eq!(
            Intent::volume(&f, &f.disk_volume).file_name(),
            "volume-headnode-42.qcow2.json"
        );
        assert_eq!(
            Intent::volume(&f, &f.seed_volume).describe(),
            "volume headnode-42-seed.iso in pool mkheadnode \
             (/var/lib/mkheadnode/images/headnode-42-seed.iso)"
        );
        assert_eq!(Intent::domain(&f).describe(), "domain headnode-42");
        let err = Intent::from_text("{\"kind\":\"volume\"}", "bad.json").unwrap_err();
        assert!(format!("{err:#}").contains("bad.json"), "{err:#}");
        let extra = r#"{"kind":"domain","vlan":42,"domain":"headnode-42","also":1}"#;
        assert!(
            Intent::from_text(extra, "x").is_err(),
            "unknown fields count"
        );
    }

    #[test]
    fn only_exactly_the_planned_things_match() {
        let f = footprint(42);
        let good = Intent::volume(&f, &f.disk_volume);
        assert!(good.matches(&f));
        assert!(!good.matches(&footprint(43)), "another VLAN's record");
        let Intent::Volume {
            vlan,
            pool,
            volume,
            path,
        } = good
        else {
            unreachable!()
        };
        let variants = [
            Intent::Volume {
                vlan: 43,
                pool: pool.clone(),
                volume: volume.clone(),
                path: path.clone(),
            },
            Intent::Volume {
                vlan,
                pool: "default".into(),
                volume: volume.clone(),
                path: path.clone(),
            },
            Intent::Volume {
                vlan,
                pool: pool.clone(),
                volume: "headnode-43.qcow2".into(),
                path: path.clone(),
            },
            Intent::Volume {
                vlan,
                pool: pool.clone(),
                volume: volume.clone(),
                path: "/var/lib/libvirt/images/precious.qcow2".into(),
            },
            Intent::Domain {
                vlan,
                domain: "headnode-43".into(),
            },
        ];
        for v in variants {
            assert!(!v.matches(&f), "{v:?}");
        }
    }
}
