/*!
`teardown`: stop and remove one VLAN's headnode and its volumes, under that VLAN's lock; the
config dir stays unless purged. Only a headnode whose metadata and devices are its VLAN's
(see [`crate::ops::ownership`]) is removed, and then only what the configuration plans for that
VLAN: its two volumes in our pool, and with `--purge` its config dir under `config_root` (on
another machine through the config dir's storage pool, see [`crate::host::config_pool`]).

Before the domain goes, state records name its volumes, so that a teardown killed half way
leaves nothing the next create or teardown cannot remove. Without a domain, a teardown removes
what an interrupted run's records name (see [`crate::ops::leftovers`]). A signal does not stop
a teardown half way: it finishes the VLAN it is on, and starts no other.
*/

use crate::error::{failure, Kind};
use crate::host::config_pool;
use crate::host::hostprep;
use crate::host::records::Records;
use crate::model::footprint::Footprint;
use crate::model::intent::Intent;
use crate::model::vlan::Vlan;
use crate::ops::checkpoint;
use crate::ops::session::{owned_domain, Session};
use anyhow::Context;

impl Session {
    /// Stop and remove the headnode of `vlan` with its volumes; with `purge`, its config dir too.
    pub fn teardown(&self, vlan: Vlan, purge: bool) -> anyhow::Result<()> {
        checkpoint::not_interrupted(vlan)?;
        let _lock = hostprep::lock_vlan(&self.config.lock_dir, vlan)?;
        self.teardown_locked(vlan, purge)
    }

    pub(super) fn teardown_locked(&self, vlan: Vlan, purge: bool) -> anyhow::Result<()> {
        let v = Some(vlan);
        let ours = self.footprint(vlan);
        let records = Records::of(&self.config.state_dir, vlan);
        let existing = owned_domain(&self.hv, &self.config, vlan)?;
        let mut left = self.matching_records(vlan, &records, &ours)?;
        match existing {
            Some((dom, _)) => {
                for volume in [&ours.disk_volume, &ours.seed_volume] {
                    let intent = Intent::volume(&ours, volume);
                    records.write(&intent)?;
                    if !left.contains(&intent) {
                        left.push(intent);
                    }
                }
                checkpoint::passed(vlan, "teardown-records");
                self.hv.destroy_and_undefine(&dom)?;
                self.out
                    .step(v, format!("removed domain {}", ours.domain_name));
                checkpoint::passed(vlan, "undefine");
            }
            None if left.is_empty() => {
                return Err(failure(
                    Kind::NotFound,
                    format!(
                        "there is no headnode for VLAN {vlan} (no domain {})",
                        ours.domain_name
                    ),
                ));
            }
            None => self.out.step(
                v,
                format!(
                    "no domain {}; removing what an interrupted run left",
                    ours.domain_name
                ),
            ),
        }
        self.clear_leftovers(vlan, &records, &left)?;
        records.remove_dir_if_empty()?;
        self.purge_or_keep(&ours, purge)
    }

    /// With `purge`, remove the config dir; else say it stays.
    fn purge_or_keep(&self, ours: &Footprint, purge: bool) -> anyhow::Result<()> {
        let (v, dir) = (Some(ours.vlan), &ours.config_dir);
        if purge && !self.hv.is_local() {
            if config_pool::purge(&self.hv, ours)? {
                self.out
                    .step(v, format!("removed config dir {}", dir.display()));
            }
        } else if purge && dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("removing config dir {}", dir.display()))?;
            self.out
                .step(v, format!("removed config dir {}", dir.display()));
        } else if !purge {
            self.out
                .detail(v, format!("kept config dir {}", dir.display()));
        }
        Ok(())
    }
}
