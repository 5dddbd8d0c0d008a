/*!
State records on the host: one file per [`Intent`] in `<state_dir>/vlan-<N>/`, written durably
(a temporary file opened with `O_EXCL | O_NOFOLLOW`, fsynced, renamed into place, the directory
fsynced) before the thing it names is made or removed, so that it survives a kill -9 or a power
loss at any later moment. Only a directory that is root's alone is trusted: records in one that
others can write prove nothing.
*/

use crate::error::{failure, Kind};
use crate::host::nofollow;
use crate::model::intent::Intent;
use crate::model::vlan::Vlan;
use anyhow::Context;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The state records of one VLAN.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

/// A record read back: its file, and the record or why it is not one.
pub type ReadBack = (PathBuf, anyhow::Result<Intent>);

impl Records {
    /// The records of `vlan` under `state_dir`.
    pub fn of(state_dir: &Path, vlan: Vlan) -> Records {
        Records {
            dir: state_dir.join(format!("vlan-{vlan}")),
        }
    }

    /// The VLAN's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `intent` durably, replacing an earlier record of the same thing.
    pub fn write(&self, intent: &Intent) -> anyhow::Result<()> {
        self.ensure_dir()?;
        let name = intent.file_name();
        let (path, temp) = (self.dir.join(&name), self.dir.join(format!(".{name}.tmp")));
        remove_if_there(&temp)?;
        let mut file = nofollow::create_new(&temp, 0o600, "state record")?;
        file.write_all(intent.to_text().as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing state record {}", temp.display()))?;
        nofollow::refuse_link(&path, "state record")?;
        fs::rename(&temp, &path)
            .with_context(|| format!("putting state record {} in place", path.display()))?;
        sync_dir(&self.dir)
    }

    /// Every record of the VLAN (none if it has no state directory), unreadable ones with why.
    pub fn list(&self) -> anyhow::Result<Vec<ReadBack>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        self.check_dir()?;
        let mut out = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", self.dir.display()))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let parsed = read_record(&path);
            out.push((path, parsed));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Remove `intent`'s record, durably; the directory goes too once nothing is left in it.
    pub fn remove(&self, intent: &Intent) -> anyhow::Result<()> {
        let name = intent.file_name();
        remove_if_there(&self.dir.join(&name))?;
        remove_if_there(&self.dir.join(format!(".{name}.tmp")))?;
        if self.dir.exists() {
            sync_dir(&self.dir)?;
        }
        self.remove_dir_if_empty()
    }

    /// Remove the VLAN's state directory if nothing but a half-written record is left in it
    /// (a run killed while writing one).
    pub fn remove_dir_if_empty(&self) -> anyhow::Result<()> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let mut names = Vec::new();
        for entry in entries {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        if !names
            .iter()
            .all(|n| n.starts_with('.') && n.ends_with(".tmp"))
        {
            return Ok(());
        }
        for n in &names {
            remove_if_there(&self.dir.join(n))?;
        }
        fs::remove_dir(&self.dir)
            .with_context(|| format!("removing state dir {}", self.dir.display()))?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Make the VLAN's directory (mode 0700) if absent, and check that it is trusted.
    fn ensure_dir(&self) -> anyhow::Result<()> {
        if fs::symlink_metadata(&self.dir).is_err() {
            let parent = self.dir.parent().unwrap_or(Path::new("/"));
            fs::create_dir_all(parent)
                .with_context(|| format!("creating state dir {}", parent.display()))?;
            match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
                Ok(()) => sync_dir(parent)?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating state dir {}", self.dir.display()))
                }
            }
        }
        self.check_dir()
    }

    /// The directory must be a real directory, ours, and writable by nobody else.
    fn check_dir(&self) -> anyhow::Result<()> {
        nofollow::refuse_link(&self.dir, "state records")?;
        let meta = fs::symlink_metadata(&self.dir)
            .with_context(|| format!("reading state dir {}", self.dir.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(failure(
                Kind::Refused,
                format!(
                    "state dir {} is not a directory that only this user can write (owner {}, \
                     mode {:o}), so its records prove nothing: make it one \
                     (`chown {me} {0}; chmod 700 {0}`) or remove it",
                    self.dir.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
        Ok(())
    }
}

/// A record file read without following a link.
fn read_record(path: &Path) -> anyhow::Result<Intent> {
    let mut text = String::new();
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .with_context(|| format!("reading state record {}", path.display()))?;
    Intent::from_text(&text, &path.display().to_string())
}

fn remove_if_there(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Make a directory's entries durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Config;
    use crate::model::footprint::Footprint;
    use std::os::unix::fs::PermissionsExt;

    fn setup() -> (tempfile::TempDir, Records, Footprint) {
        let root = tempfile::tempdir().unwrap();
        let vlan = Vlan::new(42).unwrap();
        let records = Records::of(&root.path().join("state"), vlan);
        (root, records, Footprint::of(&Config::default(), vlan))
    }

    #[test]
    fn written_listed_and_removed() {
        let (_root, records, f) = setup();
        assert!(records.list().unwrap().is_empty());
        let (disk, dom) = (Intent::volume(&f, &f.disk_volume), Intent::domain(&f));
        records.write(&disk).unwrap();
        records.write(&dom).unwrap();
        records.write(&disk).unwrap();
        let listed: Vec<Intent> = records
            .list()
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.unwrap())
            .collect();
        assert_eq!(listed, vec![dom.clone(), disk.clone()]);
        let mode = fs::metadata(records.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        records.remove(&disk).unwrap();
        records.remove(&disk).unwrap();
        records.remove(&dom).unwrap();
        assert!(!records.dir().exists(), "an empty state dir is removed");
    }

    #[test]
    fn half_written_and_foreign_files_are_not_records() {
        let (_root, records, f) = setup();
        let disk = Intent::volume(&f, &f.disk_volume);
        records.write(&disk).unwrap();
        fs::write(records.dir().join(".domain.json.tmp"), "{\"kind\":").unwrap();
        fs::write(records.dir().join("junk.json"), "not json").unwrap();
        let listed = records.list().unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        let junk = listed
            .iter()
            .find(|(p, _)| p.ends_with("junk.json"))
            .unwrap();
        assert!(format!("{:#}", junk.1.as_ref().unwrap_err()).contains("junk.json"));
        fs::remove_file(records.dir().join("junk.json")).unwrap();
        records.remove(&disk).unwrap();
        assert!(!records.dir().exists(), "a stale temporary file is swept");
    }

    #[test]
    fn an_untrusted_dir_or_a_planted_link_is_refused() {
        let (root, records, f) = setup();
        let disk = Intent::volume(&f, &f.disk_volume);
        records.write(&disk).unwrap();
        fs::set_permissions(records.dir(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = records.list().unwrap_err();
        assert!(format!("{err:#}").contains("chmod 700"), "{err:#}");
        assert!(records.write(&disk).is_err());
        fs::set_permissions(records.dir(), fs::Permissions::from_mode(0o700)).unwrap();
        let elsewhere = root.path().join("elsewhere");
        let dom = Intent::domain(&f);
        std::os::unix::fs::symlink(&elsewhere, records.dir().join(".domain.json.tmp")).unwrap();
        records.write(&dom).unwrap();
        assert!(!elsewhere.exists(), "written through a link");
    }
}
