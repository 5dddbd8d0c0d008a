/*!
`teardown`: stop and remove one VLAN's headnode and its volumes, under that VLAN's lock; the
config dir stays unless purged.
*/

use crate::error::{failure, Kind};
use crate::host::hostprep;
use crate::model::plan::domain_name;
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
        let Some((dom, meta)) = owned_domain(&self.hv, vlan)? else {
            return Err(failure(
                Kind::NotFound,
                format!(
                    "there is no headnode for VLAN {vlan} (no domain {})",
                    domain_name(vlan)
                ),
            ));
        };
        self.hv.destroy_and_undefine(&dom)?;
        self.out
            .step(v, format!("removed domain {}", domain_name(vlan)));
        for name in [&meta.disk_volume, &meta.seed_volume] {
            if self.hv.delete_volume(&meta.pool, name)? {
                self.out.step(v, format!("deleted volume {name}"));
            }
        }
        if purge && meta.config_dir.exists() {
            std::fs::remove_dir_all(&meta.config_dir)
                .with_context(|| format!("removing config dir {}", meta.config_dir.display()))?;
            self.out.step(
                v,
                format!("removed config dir {}", meta.config_dir.display()),
            );
        } else if !purge {
            self.out
                .detail(v, format!("kept config dir {}", meta.config_dir.display()));
        }
        Ok(())
    }
}
