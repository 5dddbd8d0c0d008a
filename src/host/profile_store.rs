/*!
Install profiles in a config dir on the host: `<config dir>/profiles/<name>/`, shared read-only
into the headnode, which publishes them into its TFTP root.

A profile is replaced atomically: the new one is copied beside the old as a hidden staging dir
(`.<name>.staging`, which the headnode never publishes), and then the two are swapped in one
`renameat2(RENAME_EXCHANGE)`, so the headnode sees the old profile or the new one, never a
mixture; the old one is deleted after. A failure before the swap removes the staging dir and
leaves the old profile as it was. Removing renames the profile aside first, for the same reason.
*/

use crate::error::{failure, Kind};
use crate::model::profile::{Contents, BIOS_CONFIG, MAX_CONFIG_BYTES, UEFI_CONFIG};
use crate::model::profile_layout::{self, Holding, PROFILES_DIR};
use anyhow::Context as _;
use fs_extra::dir::{copy_with_progress, CopyOptions, TransitProcessResult};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The folder of profiles in a config dir.
pub fn profiles_dir(config_dir: &Path) -> PathBuf {
    config_dir.join(PROFILES_DIR)
}

/// How deep a profile's folders may nest.
const MAX_DEPTH: usize = 32;

/// Read what a profile directory holds: its files and folders, and the text of its `*.cfg`
/// files. A link, a device or a name that is not UTF-8 is refused (an error of kind `Usage`
/// naming it): profiles are copied as plain files and folders.
pub fn read_contents(dir: &Path) -> anyhow::Result<Contents> {
    let meta = fs::metadata(dir).map_err(|e| {
        failure(
            Kind::NotFound,
            format!("cannot read profile directory {}: {e}", dir.display()),
        )
    })?;
    if !meta.is_dir() {
        return Err(failure(
            Kind::Usage,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mut contents = Contents::default();
    walk(dir, "", &mut contents, 0)?;
    Ok(contents)
}

fn refuse(path: &Path, why: &str) -> anyhow::Error {
    failure(Kind::Usage, format!("{}: {why}", path.display()))
}

fn walk(dir: &Path, rel: &str, contents: &mut Contents, depth: usize) -> anyhow::Result<()> {
    if depth > MAX_DEPTH {
        return Err(refuse(dir, "folders nest too deep for a profile"));
    }
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(refuse(&path, "the name is not UTF-8; rename it"));
        };
        let rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_symlink() {
            return Err(refuse(
                &path,
                "a symbolic link: profiles are copied as plain files; copy the profile with \
                 the links resolved (`cp -rL`) and add that",
            ));
        } else if kind.is_dir() {
            contents.dirs.insert(rel.clone());
            walk(&path, &rel, contents, depth + 1)?;
        } else if kind.is_file() {
            let size = entry
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            if name.ends_with(".cfg") {
                contents.configs.insert(rel.clone(), read_config(&path)?);
            }
            contents.files.insert(rel, size);
        } else {
            return Err(refuse(&path, "neither a file nor a folder"));
        }
    }
    Ok(())
}

fn read_config(path: &Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(refuse(
            path,
            "larger than 4 MiB: too large for a config file (every *.cfg is read for \
             placeholders)",
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A profile as `profile list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its name.
    pub name: String,
    /// What it holds.
    pub contents: Contents,
}

impl Stored {
    /// The loaders its boot configs serve: `BIOS`, `UEFI`.
    pub fn loaders(&self) -> Vec<&'static str> {
        [(BIOS_CONFIG, "BIOS"), (UEFI_CONFIG, "UEFI")]
            .into_iter()
            .filter(|(file, _)| self.contents.files.contains_key(*file))
            .map(|(_, loader)| loader)
            .collect()
    }
}

/// What `profiles` (a config dir's `profiles/`) holds, by profile (see
/// `model::profile_layout`); nothing if it does not exist. `reserved` are names no profile may
/// have. A link is never a profile's folder.
pub fn holdings(profiles: &Path, reserved: &[&str]) -> anyhow::Result<BTreeMap<String, Holding>> {
    let entries = match fs::read_dir(profiles) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", profiles.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", profiles.display()))?;
        if let Some(name) = entry.file_name().to_str() {
            found.push((
                name.to_string(),
                entry.file_type().is_ok_and(|t| t.is_dir()),
            ));
        }
    }
    Ok(profile_layout::holdings(
        found.iter().map(|(n, d)| (n.as_str(), *d)),
        reserved,
    ))
}

/// The profiles in `profiles`, by name: what the copy of each that counts holds.
pub fn list(profiles: &Path, reserved: &[&str]) -> anyhow::Result<Vec<Stored>> {
    let mut out = Vec::new();
    for (name, holding) in holdings(profiles, reserved)? {
        if let Some(dir) = holding.current_dir(&name) {
            let contents = read_contents(&profiles.join(dir))?;
            out.push(Stored { name, contents });
        }
    }
    Ok(out)
}

/// Remove the generations of profile `name` (copies made through libvirt from another
/// machine, `model::profile_layout`) from `profiles`: the markers first, so that each stops
/// counting before its folder goes. Returns whether there were any.
pub fn drop_generations(profiles: &Path, name: &str, reserved: &[&str]) -> anyhow::Result<bool> {
    let Some(holding) = holdings(profiles, reserved)?.remove(name) else {
        return Ok(false);
    };
    let entries: Vec<String> = holding
        .entries(name)
        .into_iter()
        .filter(|e| e != name)
        .collect();
    for entry in &entries {
        let path = profiles.join(entry);
        let dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let removed = if dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(!entries.is_empty())
}

fn c_path(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", path.display()))
}

/// `renameat2(from, to, flags)` on paths relative to the current directory.
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> anyhow::Result<()> {
    let (a, b) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are valid NUL-terminated strings that outlive the call; AT_FDCWD makes the
    // kernel read them as ordinary paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
            .with_context(|| format!("renaming {} and {}", from.display(), to.display()))
    }
}

/// Flush the file system that holds `path` to disk.
fn sync_fs(path: &Path) -> anyhow::Result<()> {
    let dir = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("flushing {} to disk", path.display()));
    }
    Ok(())
}

/// A profile copied beside the one it will replace; removed on drop unless committed.
pub struct Staged {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// Remove `path` whatever it is (a link itself, not what it points to); absent is fine.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Make `dir` (mode 0755) unless it is there; a link there is refused.
fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(failure(
                Kind::Refused,
                format!(
                    "{} is not a directory; refusing to write through it",
                    dir.display()
                ),
            ))
        }
        Err(_) => {}
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// Give every folder below `dir` mode 0755 and every file 0644: qemu's user reads the share.
fn open_up(dir: &Path) -> anyhow::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            open_up(&entry.path())?;
        } else if kind.is_file() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644))
                .with_context(|| format!("setting the mode of {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Copy profile `src` into `profiles` as the staging dir of `name`, calling `progress` with the
/// bytes copied and the total as it goes. A staging dir left by an earlier run that was killed
/// is removed first.
pub fn stage(
    src: &Path,
    profiles: &Path,
    name: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<Staged> {
    ensure_dir(profiles)?;
    let staged = Staged {
        staging: profiles.join(format!(".{name}.staging")),
        target: profiles.join(name),
        committed: false,
    };
    remove_any(&staged.staging)
        .with_context(|| format!("removing {}", staged.staging.display()))?;
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&staged.staging)
        .with_context(|| format!("creating {}", staged.staging.display()))?;
    let options = CopyOptions {
        content_only: true,
        ..CopyOptions::new()
    };
    copy_with_progress(src, &staged.staging, &options, |p| {
        progress(p.copied_bytes, p.total_bytes);
        TransitProcessResult::ContinueOrAbort
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
    .with_context(|| format!("copying {} to {}", src.display(), staged.staging.display()))?;
    open_up(&staged.staging)?;
    Ok(staged)
}

impl Staged {
    /// The staging dir.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Put the staged profile in place, flushed to disk first: swapped with the old one in one
    /// step, which is then deleted, or renamed into place if there was none. Returns whether
    /// an old one was replaced.
    pub fn commit(mut self) -> anyhow::Result<bool> {
        sync_fs(&self.staging)?;
        let replaced = match fs::symlink_metadata(&self.target) {
            Ok(m) if m.is_dir() => {
                renameat2(&self.staging, &self.target, libc::RENAME_EXCHANGE)?;
                true
            }
            Ok(_) => {
                return Err(failure(
                    Kind::Refused,
                    format!(
                        "{} is not a directory; remove it yourself if it should go",
                        self.target.display()
                    ),
                ))
            }
            Err(_) => {
                renameat2(&self.staging, &self.target, libc::RENAME_NOREPLACE)?;
                false
            }
        };
        self.committed = true;
        if replaced {
            fs::remove_dir_all(&self.staging).with_context(|| {
                format!(
                    "deleting the replaced profile, now at {}",
                    self.staging.display()
                )
            })?;
        }
        Ok(replaced)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_any(&self.staging);
        }
    }
}

/// Remove profile `name` from `profiles`: renamed aside (so the headnode never sees half of
/// it), then deleted. Returns whether there was one.
pub fn remove(profiles: &Path, name: &str) -> anyhow::Result<bool> {
    let target = profiles.join(name);
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(failure(
                Kind::Refused,
                format!(
                    "{} is not a profile directory; left alone",
                    target.display()
                ),
            ))
        }
        Err(_) => return Ok(false),
    }
    let aside = profiles.join(format!(".{name}.removing"));
    remove_any(&aside).with_context(|| format!("removing {}", aside.display()))?;
    renameat2(&target, &aside, libc::RENAME_NOREPLACE)?;
    fs::remove_dir_all(&aside).with_context(|| format!("deleting {}", aside.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;
    use std::os::unix::fs::symlink;

    fn profile(root: &Path, files: &[(&str, &str)]) -> PathBuf {
        let dir = root.join("src");
        for (rel, text) in files {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn contents_are_read_and_links_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = profile(
            tmp.path(),
            &[("pxelinux.cfg", "KERNEL p/k\n"), ("sub/k", "kk")],
        );
        let c = read_contents(&src).unwrap();
        assert_eq!(c.files.get("sub/k"), Some(&2));
        assert!(c.dirs.contains("sub"));
        assert_eq!(c.configs.get("pxelinux.cfg").unwrap(), "KERNEL p/k\n");
        assert_eq!(c.bytes(), 13);
        symlink("/etc/passwd", src.join("sub/passwd")).unwrap();
        let err = read_contents(&src).unwrap_err();
        assert_eq!(kind_of(&err), Kind::Usage);
        assert!(
            format!("{err:#}").contains("sub/passwd: a symbolic link"),
            "{err:#}"
        );
        let err = read_contents(&tmp.path().join("absent")).unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
    }

    #[test]
    fn staging_then_commit_replaces_atomically_and_drop_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let profiles = tmp.path().join("cfg/profiles");
        let src = profile(
            tmp.path(),
            &[("grub.cfg", "new"), ("d/initrd", "0123456789")],
        );
        let mut seen = (0, 0);
        let staged = stage(&src, &profiles, "p", &mut |c, t| seen = (c, t)).unwrap();
        assert!(seen.0 >= 13 && seen.0 <= seen.1, "{seen:?}");
        assert!(!profiles.join("p").exists());
        assert!(!staged.commit().unwrap(), "nothing was replaced");
        assert_eq!(
            fs::read_to_string(profiles.join("p/grub.cfg")).unwrap(),
            "new"
        );
        let mode = fs::metadata(profiles.join("p/d/initrd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);

        // A second version replaces the first whole; a staged copy that is dropped leaves the
        // profile as it was and no staging dir.
        fs::write(src.join("grub.cfg"), "newer").unwrap();
        fs::remove_file(src.join("d/initrd")).unwrap();
        let staged = stage(&src, &profiles, "p", &mut |_, _| {}).unwrap();
        let staging = staged.path().to_path_buf();
        assert!(staging
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with('.'));
        drop(staged);
        assert!(!staging.exists());
        assert_eq!(
            fs::read_to_string(profiles.join("p/grub.cfg")).unwrap(),
            "new"
        );
        assert!(stage(&src, &profiles, "p", &mut |_, _| {})
            .unwrap()
            .commit()
            .unwrap());
        assert_eq!(
            fs::read_to_string(profiles.join("p/grub.cfg")).unwrap(),
            "newer"
        );
        assert!(!profiles.join("p/d/initrd").exists(), "old files linger");
        let names: Vec<String> = fs::read_dir(&profiles)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["p".to_string()]);
        let listed = list(&profiles, &[]).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].loaders(), vec!["UEFI"]);

        assert!(remove(&profiles, "p").unwrap());
        assert!(!remove(&profiles, "p").unwrap());
        assert_eq!(fs::read_dir(&profiles).unwrap().count(), 0);
    }

    #[test]
    fn generations_count_over_the_plain_folder_once_marked_and_drop_markers_first() {
        let tmp = tempfile::tempdir().unwrap();
        let profiles = tmp.path().join("profiles");
        let tree = |dir: &str, files: &[(&str, &str)]| {
            for (rel, text) in files {
                let path = profiles.join(dir).join(rel);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, text).unwrap();
            }
        };
        tree("p", &[("pxelinux.cfg", "plain")]);
        tree("p@7", &[("grub.cfg", "seven"), ("sub/k", "kk")]);
        tree("p@9", &[("grub.cfg", "nine")]);
        tree("q@3", &[("grub.cfg", "three")]);
        fs::write(profiles.join("p@7.ready"), "").unwrap();
        let listed = list(&profiles, &[]).unwrap();
        // p is generation 7 (9 has no marker); q has no copy that counts.
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].name, "p");
        assert_eq!(listed[0].loaders(), ["UEFI"]);
        assert_eq!(listed[0].contents.files.len(), 2);

        assert!(drop_generations(&profiles, "p", &[]).unwrap());
        let mut left: Vec<String> = fs::read_dir(&profiles)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["p", "q@3"]);
        assert_eq!(list(&profiles, &[]).unwrap()[0].loaders(), ["BIOS"]);
        assert!(!drop_generations(&profiles, "p", &[]).unwrap());
        // A link named like a marker is unlinked, never followed.
        let outside = tmp.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        symlink(&outside, profiles.join("q@3.ready")).unwrap();
        assert!(drop_generations(&profiles, "q", &[]).unwrap());
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        assert!(!profiles.join("q@3").exists());
    }

    #[test]
    fn a_failed_copy_leaves_no_staging_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let profiles = tmp.path().join("profiles");
        let err = stage(&tmp.path().join("absent"), &profiles, "p", &mut |_, _| {});
        assert!(err.is_err());
        assert_eq!(fs::read_dir(&profiles).unwrap().count(), 0);
    }
}
