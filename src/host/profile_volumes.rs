/*!
Install profiles in a config dir on another machine, through libvirt alone (on this machine
[`crate::host::profile_store`] works on the files directly).

libvirt's `dir` pools are flat: a volume is a file or a folder right in the pool's directory.
A profile is a tree, so each of its folders is reached through a transient pool of ours at
that folder (`mkheadnode-tmp-…`, started with `WITH_BUILD`, which makes the folder with mode
0755, and stopped when done; libvirtd forgets it when it restarts). Files are raw volumes
created with `O_EXCL` and mode 0644, filled by a stream on a connection of their own.

libvirt cannot rename, so a profile is added as a new generation (`model::profile_layout`):
its tree first, then its marker (holding the list of what was uploaded, for whoever looks),
the one write that makes the new copy count. The copies it replaced are removed after,
markers first. An add that fails or
is interrupted leaves a generation without a marker, which never counts and which the next
`profile add` or `remove` of that name removes.

What cannot be checked through libvirt: libvirt lists a symbolic link as what it points to,
and a pool at a path follows the links on it. The config dir is root's alone (mode 0755) and
read-only to the headnode, and only the entries the layout names (generations of a profile
in a config dir of ours) are ever walked, so only root on the hypervisor could plant one there.
*/

use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::model::footprint::Footprint;
use crate::model::profile::Contents;
use crate::model::profile_layout::{self, generation_dir, ready_marker, Holding, PROFILES_DIR};
use crate::render::domain_xml;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use virt::storage_pool::StoragePool;
use virt::sys;

/// The start of the names of our transient pools.
const TEMP_POOL_PREFIX: &str = "mkheadnode-tmp-";
/// The mode of a profile's folders and files.
const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;
/// How deep a tree is walked (a profile's folders nest 32 deep at most).
const MAX_DEPTH: usize = 34;

/// A folder on the hypervisor, reached through a transient pool of ours, stopped on drop.
struct Folder<'h> {
    hv: &'h Hypervisor,
    pool: StoragePool,
    dir: PathBuf,
}

impl<'h> Folder<'h> {
    /// Reach `dir`, making it (and the folders above it) if it is not there. A pool of ours
    /// left at it by an interrupted run is stopped, and the folder reached again; someone
    /// else's is refused.
    fn open(hv: &'h Hypervisor, dir: &Path) -> anyhow::Result<Folder<'h>> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{TEMP_POOL_PREFIX}{}-{nonce:x}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let pool = match hv.start_transient_pool(&name, dir, DIR_MODE) {
            Ok(pool) => pool,
            // Only then are the pools at `dir` looked for (reading every pool's XML, each a
            // round trip to the hypervisor): libvirt allows one pool per folder.
            Err(refused) => {
                let there = hv.active_pools_at(dir)?;
                if there.is_empty() {
                    return Err(refused);
                }
                for other in there {
                    stop_leftover(hv, &other, dir)?;
                }
                hv.start_transient_pool(&name, dir, DIR_MODE)?
            }
        };
        Ok(Folder {
            hv,
            pool,
            dir: dir.to_path_buf(),
        })
    }

    /// Its entries: name and whether a folder.
    fn entries(&self) -> anyhow::Result<Vec<(String, bool)>> {
        self.pool
            .refresh(0)
            .with_context(|| format!("reading {}", self.dir.display()))?;
        let vols = self
            .pool
            .list_all_volumes(0)
            .with_context(|| format!("listing {}", self.dir.display()))?;
        vols.iter()
            .map(|v| {
                let name = v.name().context("reading a volume's name")?;
                let info = v.info().with_context(|| format!("reading {name}"))?;
                Ok((name, info.kind == sys::VIR_STORAGE_VOL_DIR))
            })
            .collect()
    }

    /// Create file `name` in it with `len` bytes from `from`.
    fn put(
        &self,
        name: &str,
        len: u64,
        from: &mut dyn std::io::Read,
        sent: &mut dyn FnMut(u64),
    ) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        let xml = domain_xml::raw_volume_as(name, len, FILE_MODE, 0)?;
        let vol = self
            .hv
            .create_volume(&self.pool, name, &xml)
            .with_context(|| format!("creating {}", path.display()))?;
        if len > 0 {
            self.hv
                .upload_from(&vol, from, len, sent)
                .with_context(|| format!("uploading {}", path.display()))?;
        }
        Ok(())
    }

    /// Add what it holds to `contents`, its paths under `rel`.
    fn read_into(&self, rel: &str, contents: &mut Contents, depth: usize) -> anyhow::Result<()> {
        if depth >= MAX_DEPTH {
            return Err(too_deep(&self.dir));
        }
        for (name, is_dir) in self.entries()? {
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if is_dir {
                contents.dirs.insert(path.clone());
                Folder::open(self.hv, &self.dir.join(&name))?.read_into(
                    &path,
                    contents,
                    depth + 1,
                )?;
            } else {
                let vol = self
                    .hv
                    .find_volume(&self.pool, &name)?
                    .with_context(|| format!("{} went away", self.dir.join(&name).display()))?;
                let size = vol
                    .info()
                    .with_context(|| format!("reading {name}"))?
                    .capacity;
                contents.files.insert(path, size);
            }
        }
        Ok(())
    }

    /// Delete its entry `name` (a file, or an empty folder); a missing one is not an error.
    fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.pool.refresh(0).ok();
        if let Some(vol) = self.hv.find_volume(&self.pool, name)? {
            vol.delete(0)
                .with_context(|| format!("removing {}", self.dir.join(name).display()))?;
        }
        Ok(())
    }

    /// Delete its entry `name` with everything in it.
    fn delete_tree(&self, name: &str, depth: usize) -> anyhow::Result<()> {
        let is_dir = self.entries()?.iter().any(|(n, d)| n == name && *d);
        if is_dir {
            if depth >= MAX_DEPTH {
                return Err(too_deep(&self.dir.join(name)));
            }
            let inner = Folder::open(self.hv, &self.dir.join(name))?;
            for (entry, _) in inner.entries()? {
                inner.delete_tree(&entry, depth + 1)?;
            }
        }
        self.delete(name)
    }
}

/// Stop the pool `name` at `dir` if it is one of our transient pools (left by an interrupted
/// run); refuse someone else's.
fn stop_leftover(hv: &Hypervisor, name: &str, dir: &Path) -> anyhow::Result<()> {
    let Some(pool) = hv
        .find_pool(name)?
        .filter(|_| name.starts_with(TEMP_POOL_PREFIX))
    else {
        return Err(failure(
            Kind::Refused,
            format!(
                "storage pool {name} is at {}: libvirt allows one pool per folder. Stop it \
                 (`virsh pool-destroy {name}`) if it is not needed",
                dir.display()
            ),
        ));
    };
    pool.destroy()
        .with_context(|| format!("stopping the leftover pool {name}"))
}

/// The error for folders nested deeper than a profile's may be.
fn too_deep(dir: &Path) -> anyhow::Error {
    failure(
        Kind::Refused,
        format!("{}: folders nest too deep", dir.display()),
    )
}

impl Drop for Folder<'_> {
    fn drop(&mut self) {
        let _ = self.pool.destroy();
    }
}

/// The error for a source (a file or a folder) that changed while it was uploaded.
pub fn changed(path: &Path) -> anyhow::Error {
    failure(
        Kind::Usage,
        format!(
            "{} changed while it was uploaded: run `profile add` again once it is complete",
            path.display()
        ),
    )
}

/// The `profiles/` folder of a config dir on another machine, and what it holds.
pub struct Shelf<'h> {
    folder: Folder<'h>,
    /// The profiles there, by name (see `model::profile_layout`).
    pub holdings: BTreeMap<String, Holding>,
    reserved: &'h [&'h str],
}

impl<'h> Shelf<'h> {
    /// The `profiles/` folder of the config dir of `ours`, read through its config pool;
    /// `Ok(None)` if there is none (no config dir, or none with profiles). `reserved` are
    /// names no profile may have.
    pub fn open(
        hv: &'h Hypervisor,
        ours: &Footprint,
        reserved: &'h [&'h str],
    ) -> anyhow::Result<Option<Shelf<'h>>> {
        let what = format!("the config dir of VLAN {}", ours.vlan);
        let Some(pool) = hv.started_pool_at(&ours.config_pool, &ours.config_dir, &what)? else {
            return Ok(None);
        };
        pool.refresh(0)
            .with_context(|| format!("reading {}", ours.config_dir.display()))?;
        let has_profiles = match hv.find_volume(&pool, PROFILES_DIR)? {
            Some(vol) => vol.info()?.kind == sys::VIR_STORAGE_VOL_DIR,
            None => false,
        };
        if !has_profiles {
            return Ok(None);
        }
        Self::make(hv, ours, reserved).map(Some)
    }

    /// The `profiles/` folder of the config dir of `ours` (which exists), made if need be.
    pub fn make(
        hv: &'h Hypervisor,
        ours: &Footprint,
        reserved: &'h [&'h str],
    ) -> anyhow::Result<Shelf<'h>> {
        let folder = Folder::open(hv, &ours.config_dir.join(PROFILES_DIR))?;
        let mut shelf = Shelf {
            folder,
            holdings: BTreeMap::new(),
            reserved,
        };
        shelf.reread()?;
        Ok(shelf)
    }

    /// Read what it holds again.
    pub fn reread(&mut self) -> anyhow::Result<()> {
        let entries = self.folder.entries()?;
        self.holdings =
            profile_layout::holdings(entries.iter().map(|(n, d)| (n.as_str(), *d)), self.reserved);
        Ok(())
    }

    /// What the copy of profile `name` that counts holds (read through libvirt: every file
    /// with its size, every folder); `Ok(None)` if no copy counts.
    pub fn contents(&self, name: &str) -> anyhow::Result<Option<Contents>> {
        let Some(dir) = self.holdings.get(name).and_then(|h| h.current_dir(name)) else {
            return Ok(None);
        };
        let mut contents = Contents::default();
        Folder::open(self.folder.hv, &self.folder.dir.join(dir))?.read_into(
            "",
            &mut contents,
            0,
        )?;
        Ok(Some(contents))
    }

    /// Upload the profile in `source` (holding `contents`) as generation `generation` of
    /// `name`, without its marker: its folders and files. `sent` gets the bytes sent so far.
    pub fn upload_tree(
        &self,
        name: &str,
        generation: u64,
        source: &Path,
        contents: &Contents,
        sent: &mut dyn FnMut(u64),
    ) -> anyhow::Result<()> {
        let top = self.folder.dir.join(generation_dir(name, generation));
        let mut by_folder: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        by_folder.insert("", Vec::new());
        for dir in &contents.dirs {
            by_folder.insert(dir, Vec::new());
        }
        for (file, size) in &contents.files {
            let (dir, base) = file.rsplit_once('/').unwrap_or(("", file));
            by_folder.entry(dir).or_default().push((base, *size));
        }
        let mut done = 0u64;
        for (dir, files) in &by_folder {
            let folder = Folder::open(self.folder.hv, &top.join(dir))?;
            for (base, size) in files {
                let local = source.join(dir).join(base);
                let mut file = std::fs::File::open(&local)
                    .with_context(|| format!("opening {}", local.display()))?;
                let now = file
                    .metadata()
                    .with_context(|| format!("reading {}", local.display()))?
                    .len();
                if now != *size {
                    return Err(changed(&local));
                }
                let before = done;
                folder.put(base, *size, &mut file, &mut |n| sent(before + n))?;
                done += size;
            }
        }
        Ok(())
    }

    /// Make generation `generation` of `name` (uploaded, holding `contents`) count: write its
    /// marker, which lists what it holds.
    pub fn mark_ready(
        &self,
        name: &str,
        generation: u64,
        contents: &Contents,
    ) -> anyhow::Result<()> {
        let manifest = profile_layout::render_manifest(contents);
        self.folder.put(
            &ready_marker(name, generation),
            manifest.len() as u64,
            &mut manifest.as_bytes(),
            &mut |_| {},
        )
    }

    /// Remove the entries `names` of it (files, or folders with everything in them), in order.
    pub fn remove(&self, names: &[String]) -> anyhow::Result<()> {
        for name in names {
            self.folder.delete_tree(name, 0)?;
        }
        Ok(())
    }
}

/// Empty the `profiles/` folder of the config dir of `ours` through libvirt, for `teardown
/// --purge`: everything in it goes, as on the hypervisor itself. Whether there was one.
pub fn clear(hv: &Hypervisor, ours: &Footprint) -> anyhow::Result<bool> {
    let Some(shelf) = Shelf::open(hv, ours, &[])? else {
        return Ok(false);
    };
    let names: Vec<String> = shelf
        .folder
        .entries()?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    shelf.remove(&names)?;
    Ok(true)
}
