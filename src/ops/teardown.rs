/*!
`teardown`: stop and remove one VLAN's headnode and its volumes, under that VLAN's lock; the
config dir stays unless purged. Only a headnode whose metadata and devices are its VLAN's
(see [`crate::ops::ownership`]) is removed, and then only what the configuration plans for that
VLAN: its two volumes in our pool, and with `--purge` its config dir under `config_root`.
*/

use crate::error::{failure, Kind};
use crate::host::hostprep;
use crate::model::footprint::{domain_name, Footprint};
use crate::model::vlan::Vlan;
use crate::ops::session::{owned_domain, Session};
use anyhow::Context;

impl Session {
    /// Stop and remove the headnode of `vlan` with its volumes; with `purge`, its config dir too.
    pub fn teardown(&self, vlan: Vlan, purge: bool) -> anyhow::Result<()> {
        let _lock = hostprep::lock_vlan(&self.config.lock_dir, vlan)?;
        self.teardown_locked(vlan, purge)
    }

    pub(super) fn teardown_locked(&self, vlan: Vlan, purge: bool) -> anyhow::Result<()> {
        let v = Some(vlan);
        let Some((dom, _)) = owned_domain(&self.hv, &self.config, vlan)? else {
            return Err(failure(
                Kind::NotFound,
                format!(
                    "there is no headnode for VLAN {vlan} (no domain {})",
                    domain_name(vlan)
                ),
            ));
        };
        // The metadata matched the footprint; delete what the footprint names.
        let ours = Footprint::of(&self.config, vlan);
        self.hv.destroy_and_undefine(&dom)?;
        self.out
            .step(v, format!("removed domain {}", ours.domain_name));
        for name in [&ours.disk_volume, &ours.seed_volume] {
            if self.hv.delete_volume(&ours.pool, name)? {
                self.out.step(v, format!("deleted volume {name}"));
            }
        }
        if purge && ours.config_dir.exists() {
            std::fs::remove_dir_all(&ours.config_dir)
                .with_context(|| format!("removing config dir {}", ours.config_dir.display()))?;
            self.out.step(
                v,
                format!("removed config dir {}", ours.config_dir.display()),
            );
        } else if !purge {
            self.out
                .detail(v, format!("kept config dir {}", ours.config_dir.display()));
        }
        Ok(())
    }
}
