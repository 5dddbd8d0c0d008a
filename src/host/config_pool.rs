/*!
The config dir of a headnode on another machine, made and filled through libvirt alone: the
directory is a storage pool of type `dir` (building it makes the directory, owned by root with
mode 0755), and `machines.txt` is a raw volume of that pool, which in a dir pool is the file
itself. On this machine [`crate::host::hostprep`] writes the files directly instead.

The protections of the local path, and what stands for them here:

- A symbolic link in place of `machines.txt` is never written through. A file is only ever
  written right after libvirt created it, and libvirt creates a dir pool's volume with
  `O_CREAT | O_EXCL`, which fails on anything already at that path, a link (even a dangling
  one) included. Replacing `machines.txt` deletes the old volume first, and deleting a volume
  of a dir pool unlinks that name: a link there goes, its target stays untouched. (Unlike the
  local path, which refuses such a link with exit status 6, libvirt cannot tell us a link from
  a file, so a link in place of `machines.txt` is replaced when `--machines` is given, and left
  alone otherwise.)
- The config dir is made by libvirt with its owner and mode, and removed (`teardown --purge`)
  only through the pool planned for the VLAN, only if that pool is at the planned directory,
  and only as far as its own plain entries go: the directory is removed only once empty, and
  nothing is ever followed.
*/

use crate::host::hostprep::ConfigDirOutcome;
use crate::host::hypervisor::Hypervisor;
use crate::model::footprint::{Footprint, CONFIG_DIR_MODE};
use crate::model::machines::{self, Machine};
use crate::render::domain_xml;
use anyhow::Context as _;

/// The name of the machines file, a volume of the config pool.
const MACHINES: &str = "machines.txt";

/// What a pool that is a VLAN's config dir is, for errors.
fn what(ours: &Footprint) -> String {
    format!("the config dir of VLAN {}", ours.vlan)
}

/// Make the config dir of `ours` as its pool, with a `machines.txt` (empty if there is none);
/// `machines` (already validated) replaces it.
pub fn ensure(
    hv: &Hypervisor,
    ours: &Footprint,
    machines: Option<&[Machine]>,
) -> anyhow::Result<ConfigDirOutcome> {
    let (name, dir) = (&ours.config_pool, &ours.config_dir);
    let (_, defined) = hv.ensure_pool(name, dir, CONFIG_DIR_MODE)?;
    let pool = hv
        .started_pool_at(name, dir, &what(ours))?
        .with_context(|| format!("storage pool {name} went away"))?;
    // Files made on the hypervisor since the pool started are volumes only after a refresh.
    pool.refresh(0)
        .with_context(|| format!("refreshing storage pool {name}"))?;
    let mut outcome = ConfigDirOutcome {
        created_dir: defined,
        ..ConfigDirOutcome::default()
    };
    let existing = hv.find_volume(&pool, MACHINES)?;
    let content = match machines {
        Some(list) => machines::render(list),
        None if existing.is_some() => return Ok(outcome),
        None => String::new(),
    };
    if let Some(old) = existing {
        old.delete(0)
            .with_context(|| format!("removing the old {MACHINES} from {}", dir.display()))?;
    }
    let xml = domain_xml::raw_volume(MACHINES, content.len() as u64)?;
    let vol = hv.create_volume(&pool, MACHINES, &xml)?;
    if content.is_empty() {
        outcome.created_machines = true;
    } else {
        hv.write_volume(&vol, content.as_bytes())
            .with_context(|| format!("uploading {MACHINES} into {}", dir.display()))?;
        outcome.installed_machines = true;
    }
    Ok(outcome)
}

/// Remove the config dir of `ours` through its pool (defined for the purpose if an earlier
/// run on the hypervisor itself made the directory without one); whether there was one.
pub fn purge(hv: &Hypervisor, ours: &Footprint) -> anyhow::Result<bool> {
    let (name, dir) = (&ours.config_pool, &ours.config_dir);
    if hv.started_pool_at(name, dir, &what(ours))?.is_none() {
        hv.ensure_pool(name, dir, CONFIG_DIR_MODE)?;
    }
    hv.delete_pool_at(name, dir, &what(ours)).with_context(|| {
        format!(
            "purging {} (a profile in it? `mkheadnode profile remove` on the hypervisor \
             removes those)",
            dir.display()
        )
    })
}
