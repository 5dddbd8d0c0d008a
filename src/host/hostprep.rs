/*!
Host preparation outside libvirt: the per-VLAN config dir and its `machines.txt`, and the
per-VLAN lock that makes concurrent runs on one VLAN take turns.
*/

use crate::host::atomic_file;
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
/// [`machines::load`]) is given, in which case it is installed atomically.
pub fn ensure_config_dir(
    dir: &Path,
    machines: Option<&[machines::Machine]>,
) -> anyhow::Result<ConfigDirOutcome> {
    let mut outcome = ConfigDirOutcome::default();
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating config dir {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        outcome.created_dir = true;
    }
    let file = dir.join("machines.txt");
    if !file.exists() {
        fs::write(&file, "").with_context(|| format!("creating {}", file.display()))?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
        outcome.created_machines = true;
    }
    if let Some(machines) = machines {
        atomic_file::replace(&file, machines::render(machines).as_bytes())
            .with_context(|| format!("installing machines file into {}", file.display()))?;
        outcome.installed_machines = true;
    }
    Ok(outcome)
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
    fs::create_dir_all(lock_dir)
        .with_context(|| format!("creating lock dir {}", lock_dir.display()))?;
    let path = lock_dir.join(format!("vlan-{vlan}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(VlanLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

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
