/*!
Undoing a create in progress: each volume and the domain is registered here, with its state
record, before it is made; if the create fails or is interrupted, they are removed in reverse
order on drop, each with its record. One that cannot be removed keeps its record, so that the
next create or teardown removes it.
*/

use crate::host::hypervisor::Hypervisor;
use crate::host::records::Records;
use crate::model::intent::Intent;
use crate::model::vlan::Vlan;
use crate::ops::report::Reporter;
use std::path::PathBuf;

/// Undo steps for a create in progress, run in reverse on drop unless disarmed.
pub struct Undo<'a> {
    hv: &'a Hypervisor,
    out: Reporter,
    vlan: Vlan,
    records: &'a Records,
    steps: Vec<(Step, Intent)>,
}

enum Step {
    Volume {
        pool: String,
        name: String,
        path: PathBuf,
    },
    Domain {
        name: String,
    },
}

impl<'a> Undo<'a> {
    /// Nothing to undo yet, for `vlan`, whose records are `records`.
    pub fn new(hv: &'a Hypervisor, out: Reporter, vlan: Vlan, records: &'a Records) -> Undo<'a> {
        Undo {
            hv,
            out,
            vlan,
            records,
            steps: Vec::new(),
        }
    }

    /// The thing `intent` names is about to be made: record that durably, and remove it (and
    /// the record) on rollback.
    pub fn record(&mut self, intent: &Intent) -> anyhow::Result<()> {
        self.records.write(intent)?;
        let step = match intent {
            Intent::Volume {
                pool, volume, path, ..
            } => Step::Volume {
                pool: pool.clone(),
                name: volume.clone(),
                path: path.clone(),
            },
            Intent::Domain { domain, .. } => Step::Domain {
                name: domain.clone(),
            },
        };
        self.steps.push((step, intent.clone()));
        Ok(())
    }

    /// The create succeeded: keep everything.
    pub fn disarm(mut self) {
        self.steps.clear();
    }

    /// Remove what `step` made; whether there was something to remove.
    fn remove(&self, step: &Step) -> anyhow::Result<bool> {
        match step {
            Step::Volume { pool, name, path } => self.hv.delete_volume_at(pool, name, path),
            Step::Domain { name } => match self.hv.find_domain(name)? {
                Some(d) => self.hv.destroy_and_undefine(&d).map(|()| true),
                None => Ok(false),
            },
        }
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        while let Some((step, intent)) = self.steps.pop() {
            let what = match &step {
                Step::Volume { pool, name, .. } => format!("volume {name} in pool {pool}"),
                Step::Domain { name } => format!("domain {name}"),
            };
            let v = Some(self.vlan);
            match self
                .remove(&step)
                .and_then(|removed| self.records.remove(&intent).map(|()| removed))
            {
                Ok(true) => self.out.step(v, format!("rolled back: removed {what}")),
                Ok(false) => self
                    .out
                    .detail(v, format!("rolled back: {what} had not been made")),
                Err(e) => self.out.error(
                    v,
                    &e.context(format!(
                        "rolling back: could not remove {what}; its state record stays, so \
                         `mkheadnode teardown {}` (or the next create) removes it",
                        self.vlan
                    )),
                ),
            }
        }
    }
}
