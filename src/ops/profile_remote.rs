/*!
`profile add`, `list` and `remove` on a hypervisor reached over libvirt's remote protocol: the
profile's tree is uploaded through libvirt as a new generation and made to count by its marker
(`host::profile_volumes`, `model::profile_layout`), then published in the running headnode
through its guest agent, as on the hypervisor itself.
*/

use crate::error::{failure, Kind};
use crate::host::config_pool;
use crate::host::profile_store::Stored;
use crate::host::profile_volumes::{self, Shelf};
use crate::model::profile_layout::{generation_dir, ready_marker};
use crate::model::vlan::Vlan;
use crate::ops::profile::{load_source, ProfileRow, Publication, Source};
use crate::ops::session::Session;
use crate::render::seed::RESERVED_NAMES;

/// Milliseconds since the epoch: where a new generation starts.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Session {
    /// [`Session::profile_add`] over libvirt: the config dir is made if there is none yet
    /// (as create makes it), the profile uploaded as a new generation, checked against its
    /// source again, marked, and the copies it replaced removed.
    pub(super) fn profile_add_remote(
        &self,
        vlan: Vlan,
        source: &Source,
        progress: &mut dyn FnMut(u64, u64),
    ) -> anyhow::Result<(bool, Publication)> {
        let found = self.headnode(vlan)?;
        let ours = self.footprint(vlan);
        config_pool::ensure(&self.hv, &ours, None)?;
        let mut shelf = Shelf::make(&self.hv, &ours, RESERVED_NAMES)?;
        let name = &source.name;
        let before = shelf.holdings.get(name).cloned().unwrap_or_default();
        let generation = before.next_generation(now_ms());
        let total = source.contents.bytes();
        let uploaded = shelf
            .upload_tree(
                name,
                generation,
                &source.dir,
                &source.contents,
                &mut |done| {
                    progress(done, total);
                },
            )
            .and_then(|()| unchanged(source))
            .and_then(|()| shelf.mark_ready(name, generation, &source.contents));
        if let Err(e) = uploaded {
            // Without its marker the copy never counted; it goes now, or with the next run.
            let _ = shelf.remove(&[
                ready_marker(name, generation),
                generation_dir(name, generation),
            ]);
            return Err(e);
        }
        shelf.reread()?;
        let after = shelf.holdings.get(name).cloned().unwrap_or_default();
        shelf.remove(&after.leftovers(name))?;
        Ok((before.current().is_some(), self.publish(vlan, found)?))
    }

    /// [`Session::profile_remove`] over libvirt: every copy of the profile (markers first),
    /// and what unfinished uploads of it left.
    pub(super) fn profile_remove_remote(
        &self,
        vlan: Vlan,
        name: &str,
    ) -> anyhow::Result<Publication> {
        let found = self.headnode(vlan)?;
        let ours = self.footprint(vlan);
        let shelf = Shelf::open(&self.hv, &ours, RESERVED_NAMES)?;
        let holding = shelf.as_ref().and_then(|s| s.holdings.get(name).cloned());
        let counted = match (&shelf, holding) {
            (Some(shelf), Some(holding)) => {
                shelf.remove(&holding.entries(name))?;
                holding.current().is_some()
            }
            _ => false,
        };
        if !counted {
            return Err(failure(
                Kind::NotFound,
                format!(
                    "no profile {name} in {}",
                    ours.config_dir.join("profiles").display()
                ),
            ));
        }
        self.publish(vlan, found)
    }

    /// [`Session::profile_list`] over libvirt.
    pub(super) fn profile_list_remote(&self, vlan: Vlan) -> anyhow::Result<Vec<ProfileRow>> {
        let ours = self.footprint(vlan);
        let Some(shelf) = Shelf::open(&self.hv, &ours, RESERVED_NAMES)? else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        for name in shelf.holdings.keys() {
            if let Some(contents) = shelf.contents(name)? {
                rows.push(ProfileRow::of(
                    vlan,
                    Stored {
                        name: name.clone(),
                        contents,
                    },
                ));
            }
        }
        Ok(rows)
    }

    /// The VLANs with a config pool of ours on the hypervisor.
    pub(super) fn config_pool_vlans(&self) -> anyhow::Result<Vec<Vlan>> {
        let prefix = format!("{}-config-", self.config.pool);
        Ok(self
            .hv
            .pool_names()?
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix)?.parse::<Vlan>().ok())
            .collect())
    }
}

/// Whether `source` still holds what was read of it before the upload.
fn unchanged(source: &Source) -> anyhow::Result<()> {
    if load_source(&source.name, &source.dir)?.contents != source.contents {
        return Err(profile_volumes::changed(&source.dir));
    }
    Ok(())
}
