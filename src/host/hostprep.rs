/*!
Host preparation outside libvirt: the per-VLAN config dir and its `machines.txt`, and the
per-VLAN lock that makes concurrent runs on one VLAN take turns.
*/

use crate::error::{failure, Kind};
use crate::host::atomic_file;
use crate::host::nofollow;
use crate::model::machines;
use crate::model::vlan::Vlan;
use anyhow::Context;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What [`ensure_config_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDirOutcome {
    /// The directory was created by this call.
    pub created_dir: bool,
    /// An empty `machines.txt` was created by this call.
    pub created_machines: bool,
    /// `machines.txt` was replaced by the validated `--machines` file.
    pub installed_machines: bool,
}

/// Make `dir` (mode 0755, readable by qemu's user) with a `machines.txt`. An existing
/// `machines.txt` is never overwritten unless `machines` (already validated, see
/// [`machines::load`]) is given, in which case it is installed atomically. A symbolic link in
/// place of the dir or of `machines.txt` is refused, never written through.
pub fn ensure_config_dir(
    dir: &Path,
    machines: Option<&[machines::Machine]>,
) -> anyhow::Result<ConfigDirOutcome> {
    let mut outcome = ConfigDirOutcome::default();
    nofollow::refuse_link(dir, "config dir")?;
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(failure(
                Kind::Refused,
                format!(
                    "{} is not a directory: move it away, then run mkheadnode again",
                    dir.display()
                ),
            ))
        }
        Err(_) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("creating config dir {}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
            outcome.created_dir = true;
        }
    }
    let file = dir.join("machines.txt");
    nofollow::refuse_link(&file, "machines file")?;
    if fs::symlink_metadata(&file).is_err() {
        let created = nofollow::create_new(&file, 0o644, "machines file")?;
        // The mode given at creation is filtered by the umask; this one is not.
        created.set_permissions(fs::Permissions::from_mode(0o644))?;
        outcome.created_machines = true;
    }
    if let Some(machines) = machines {
        atomic_file::replace(&file, machines::render(machines).as_bytes())
            .with_context(|| format!("installing machines file into {}", file.display()))?;
        outcome.installed_machines = true;
    }
    Ok(outcome)
}

/// The mode of `bmc.conf`: root writes it, qemu's group reads it (the headnode reads it through
/// the share), nobody else may (the link tool refuses a world-readable one).
pub const BMC_CONF_MODE: u32 = 0o640;

/// Install `contents` as `bmc.conf` in the config dir `dir` (made before), atomically, owned by
/// root and qemu's group `qemu_gid`, mode [`BMC_CONF_MODE`]. A link in its place is refused.
pub fn install_bmc_conf(dir: &Path, contents: &[u8], qemu_gid: u32) -> anyhow::Result<()> {
    let file = dir.join("bmc.conf");
    nofollow::refuse_link(&file, "BMC credentials")?;
    atomic_file::replace_as(&file, contents, BMC_CONF_MODE, (0, qemu_gid))
        .with_context(|| format!("installing BMC credentials as {}", file.display()))
}

/// An exclusive lock on one VLAN, released when dropped.
#[derive(Debug)]
pub struct VlanLock {
    _file: fs::File,
    /// The lock file.
    pub path: PathBuf,
}

/// Take the lock of `vlan` under `lock_dir`, waiting for another run on the same VLAN to finish.
pub fn lock_vlan(lock_dir: &Path, vlan: Vlan) -> anyhow::Result<VlanLock> {
    let path = lock_dir.join(format!("vlan-{vlan}.lock"));
    let file = lock_file(&path)?;
    Ok(VlanLock { _file: file, path })
}

/// Take an exclusive lock on the lock file `path` (made, with its directory, if absent; never
/// through a symbolic link), waiting for its holder. Released when the file is closed.
pub fn lock_file(path: &Path) -> anyhow::Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating lock dir {}", dir.display()))?;
    }
    let file = nofollow::open_lock(path)?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;

    #[test]
    fn creates_dir_and_empty_machines_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("42");
        let first = ensure_config_dir(&dir, None).unwrap();
        assert!(first.created_dir && first.created_machines);
        assert_eq!(fs::read_to_string(dir.join("machines.txt")).unwrap(), "");
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o755
        );
        fs::write(dir.join("machines.txt"), "aa:bb:cc:dd:ee:ff 10.0.0.1\n").unwrap();
        let again = ensure_config_dir(&dir, None).unwrap();
        assert_eq!(again, ConfigDirOutcome::default());
        assert_eq!(
            fs::read_to_string(dir.join("machines.txt")).unwrap(),
            "aa:bb:cc:dd:ee:ff 10.0.0.1\n"
        );
    }

    #[test]
    fn installs_validated_machines_over_an_existing_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("7");
        ensure_config_dir(&dir, None).unwrap();
        let machines = machines::parse("# rack\nAA-BB-CC-DD-EE-01 10.0.0.1\n", "in.txt").unwrap();
        let out = ensure_config_dir(&dir, Some(&machines)).unwrap();
        assert!(out.installed_machines);
        assert_eq!(
            fs::read_to_string(dir.join("machines.txt")).unwrap(),
            "aa:bb:cc:dd:ee:01 10.0.0.1\n"
        );
    }

    #[test]
    fn links_planted_in_the_config_dir_are_not_written_through() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("42");
        fs::create_dir(&dir).unwrap();
        let precious = root.path().join("shadow");
        fs::write(&precious, "root:x:0:0\n").unwrap();
        std::os::unix::fs::symlink(&precious, dir.join("machines.txt")).unwrap();
        let machines = machines::parse("aa:bb:cc:dd:ee:01 10.0.0.1\n", "in.txt").unwrap();
        for given in [None, Some(&machines[..])] {
            let err = ensure_config_dir(&dir, given).unwrap_err();
            assert_eq!(kind_of(&err), Kind::Refused, "{err:#}");
            assert!(format!("{err:#}").contains("machines.txt"), "{err:#}");
        }
        assert_eq!(fs::read_to_string(&precious).unwrap(), "root:x:0:0\n");
        // A dangling link must not make us create its target either.
        let elsewhere = root.path().join("elsewhere");
        fs::remove_file(dir.join("machines.txt")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("machines.txt")).unwrap();
        assert!(ensure_config_dir(&dir, None).is_err());
        assert!(!elsewhere.exists(), "created through a dangling link");
        // Nor may the config dir itself be a link.
        let linked = root.path().join("43");
        std::os::unix::fs::symlink(root.path().join("real"), &linked).unwrap();
        assert!(ensure_config_dir(&linked, None).is_err());
        assert!(!root.path().join("real").exists());
    }

    #[test]
    fn a_link_at_the_lock_path_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        fs::write(&target, "keep\n").unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("vlan-5.lock")).unwrap();
        let err = lock_vlan(root.path(), Vlan::new(5).unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
    }

    #[test]
    fn the_lock_is_exclusive() {
        let root = tempfile::tempdir().unwrap();
        let vlan = Vlan::new(5).unwrap();
        let held = lock_vlan(root.path(), vlan).unwrap();
        let other = fs::OpenOptions::new().write(true).open(&held.path).unwrap();
        assert!(
            other.try_lock().is_err(),
            "a second lock on the same VLAN succeeded"
        );
        drop(held);
        assert!(other.try_lock().is_ok());
    }
}
