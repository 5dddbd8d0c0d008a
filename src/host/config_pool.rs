/*!
The config dir of a headnode on another machine, made and filled through libvirt alone: the
directory is a storage pool of type `dir` (building it makes the directory, owned by root with
mode 0755), and `machines.txt` and `bmc.conf` are raw volumes of that pool, which in a dir pool
are the files themselves (made with their owner and mode by libvirt). On this machine [`crate::host::hostprep`] writes the files directly instead.

The protections of the local path, and what stands for them here:

- A symbolic link in place of `machines.txt` or `bmc.conf` is never written through. A file is only ever
  written right after libvirt created it, and libvirt creates a dir pool's volume with
  `O_CREAT | O_EXCL`, which fails on anything already at that path, a link (even a dangling
  one) included. Replacing `machines.txt` deletes the old volume first, and deleting a volume
  of a dir pool unlinks that name: a link there goes, its target stays untouched. (Unlike the
  local path, which refuses such a link with exit status 6, libvirt cannot tell us a link from
  a file, so a link in place of one of them is replaced when `--machines` or `--bmc-conf` is
  given, and left alone otherwise.)
- The config dir is made by libvirt with its owner and mode, and removed (`teardown --purge`)
  only through the pool planned for the VLAN, only if that pool is at the planned directory,
  and only as far as its own plain entries go: the directory is removed only once empty, and
  nothing of its own is ever followed. Its `profiles/` folder is emptied first
  (`host::profile_volumes`, which says what libvirt cannot check there).
  What libvirt does not list as a volume (a dangling link) stays, and so does the directory,
  with an error saying so.
*/

use crate::host::hostprep::{ConfigDirOutcome, BMC_CONF_MODE};
use crate::host::hypervisor::Hypervisor;
use crate::host::profile_volumes;
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
    let content = match machines {
        Some(list) => machines::render(list),
        None if hv.find_volume(&pool, MACHINES)?.is_some() => return Ok(outcome),
        None => String::new(),
    };
    put(hv, ours, MACHINES, content.as_bytes(), 0o644, 0)?;
    if content.is_empty() {
        outcome.created_machines = true;
    } else {
        outcome.installed_machines = true;
    }
    Ok(outcome)
}

/// Install `contents` as `bmc.conf` in the config dir of `ours` (made before), owned by root
/// and qemu's group `qemu_gid`, mode [`BMC_CONF_MODE`].
pub fn install_bmc_conf(
    hv: &Hypervisor,
    ours: &Footprint,
    contents: &[u8],
    qemu_gid: u32,
) -> anyhow::Result<()> {
    put(hv, ours, "bmc.conf", contents, BMC_CONF_MODE, qemu_gid)
}

/// Make `name` in the config dir of `ours` anew with `contents`, `mode`, root and `gid`: the
/// old volume of that name (if any) is deleted, a new one created (with `O_EXCL`, see the module
/// docs) and filled.
fn put(
    hv: &Hypervisor,
    ours: &Footprint,
    name: &str,
    contents: &[u8],
    mode: u32,
    gid: u32,
) -> anyhow::Result<()> {
    let dir = ours.config_dir.display();
    let pool = hv
        .started_pool_at(&ours.config_pool, &ours.config_dir, &what(ours))?
        .with_context(|| format!("storage pool {} went away", ours.config_pool))?;
    if let Some(old) = hv.find_volume(&pool, name)? {
        old.delete(0)
            .with_context(|| format!("removing the old {name} from {dir}"))?;
    }
    let xml = domain_xml::raw_volume_as(name, contents.len() as u64, mode, gid)?;
    let vol = hv.create_volume(&pool, name, &xml)?;
    if !contents.is_empty() {
        hv.write_volume(&vol, contents)
            .with_context(|| format!("uploading {name} into {dir}"))?;
    }
    Ok(())
}

/// Remove the config dir of `ours` through its pool (defined for the purpose if an earlier
/// run on the hypervisor itself made the directory without one); whether there was one.
pub fn purge(hv: &Hypervisor, ours: &Footprint) -> anyhow::Result<bool> {
    let (name, dir) = (&ours.config_pool, &ours.config_dir);
    if hv.started_pool_at(name, dir, &what(ours))?.is_none() {
        hv.ensure_pool(name, dir, CONFIG_DIR_MODE)?;
    }
    profile_volumes::clear(hv, ours)
        .with_context(|| format!("purging the profiles in {}", dir.display()))?;
    hv.delete_pool_at(name, dir, &what(ours)).with_context(|| {
        format!(
            "purging {}: libvirt removes the files and folders in it, not what it does not \
             list as volumes (a dangling link); look at what is left there",
            dir.display()
        )
    })
}
