/*!
What an interrupted run left: the things its state records name (see
[`crate::model::intent`]). Only a record that matches the VLAN's [`Footprint`] counts; a volume
it names is removed only where the record and the plan put it. A record that does not match, or
cannot be read, is said and left alone with whatever it names.
*/

use crate::host::records::Records;
use crate::model::footprint::Footprint;
use crate::model::intent::Intent;
use crate::model::vlan::Vlan;
use crate::ops::checkpoint;
use crate::ops::session::Session;

impl Session {
    /// The records of `vlan` that match `footprint`; the others are said and left alone.
    pub(super) fn matching_records(
        &self,
        vlan: Vlan,
        records: &Records,
        footprint: &Footprint,
    ) -> anyhow::Result<Vec<Intent>> {
        let mut out = Vec::new();
        for (file, read) in records.list()? {
            match read {
                Ok(intent) if intent.matches(footprint) => out.push(intent),
                Ok(intent) => self.out.step(
                    Some(vlan),
                    format!(
                        "note: state record {} names {}, which the configuration does not \
                         plan for VLAN {vlan} (did pool, pool_dir or config_root change?): left \
                         alone with it; run mkheadnode with the settings it was made with",
                        file.display(),
                        intent.describe()
                    ),
                ),
                Err(why) => self.out.step(
                    Some(vlan),
                    format!("note: {why:#}: left alone; remove it once you have looked at it"),
                ),
            }
        }
        Ok(out)
    }

    /// Remove what `intents`, records of `vlan` that match its footprint (see
    /// [`Session::matching_records`]), name (volumes; a domain record only says one was to be
    /// defined), then the records; returns how many volumes went.
    pub(super) fn clear_leftovers(
        &self,
        vlan: Vlan,
        records: &Records,
        intents: &[Intent],
    ) -> anyhow::Result<usize> {
        let mut removed = 0;
        for intent in intents {
            if let Intent::Volume {
                pool, volume, path, ..
            } = intent
            {
                if self.hv.delete_volume_at(pool, volume, path)? {
                    self.out
                        .step(Some(vlan), format!("deleted volume {volume}"));
                    removed += 1;
                    checkpoint::passed(vlan, "volume-deleted");
                }
            }
            records.remove(intent)?;
        }
        Ok(removed)
    }
}
