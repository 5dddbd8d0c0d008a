/*!
Opening files on the host without following symbolic links.

mkheadnode runs as root and writes into directories that others may be able to plant a link in
(config dirs, the lock dir, the state dir). A link planted where one of our files goes must not
redirect the write: every such file is opened with `O_NOFOLLOW`, and a new one with `O_EXCL`
too, so that a dangling link does not make us create its target either.
*/

use crate::error::{failure, Kind};
use anyhow::Context;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The error for a symbolic link found where one of our files or directories goes.
pub fn link_refused(path: &Path, what: &str) -> anyhow::Error {
    failure(
        Kind::Refused,
        format!(
            "{} is a symbolic link where mkheadnode keeps its {what}: refusing to follow it. \
             Check who made it, remove it (`rm {}`), then run mkheadnode again",
            path.display(),
            path.display()
        ),
    )
}

/// The error of an open that failed, turned into [`link_refused`] where a link was in the way.
fn open_error(err: std::io::Error, path: &Path, what: &str) -> anyhow::Error {
    if err.raw_os_error() == Some(libc::ELOOP) || is_link(path) {
        link_refused(path, what)
    } else {
        anyhow::Error::new(err).context(format!("opening {what} {}", path.display()))
    }
}

/// Whether `path` itself (not what it points to) is a symbolic link.
pub fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Refuse `path` if it is a symbolic link; `what` says what it should have been.
pub fn refuse_link(path: &Path, what: &str) -> anyhow::Result<()> {
    if is_link(path) {
        return Err(link_refused(path, what));
    }
    Ok(())
}

/// Create `path` as a new file with `mode` (`O_CREAT | O_EXCL | O_NOFOLLOW`): it fails if
/// anything, a link included, is already there.
pub fn create_new(path: &Path, mode: u32, what: &str) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.kind() == ErrorKind::AlreadyExists && is_link(path) {
                link_refused(path, what)
            } else {
                open_error(e, path, what)
            }
        })
}

/// Open (creating it if absent, mode 0600) a lock file, never through a link.
pub fn open_lock(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| open_error(e, path, "lock file"))
}

/// Write `contents` to `path` (created with `mode` or truncated), never through a link.
pub fn write(path: &Path, contents: &[u8], mode: u32, what: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| open_error(e, path, what))?;
    file.write_all(contents)
        .with_context(|| format!("writing {what} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "precious\n").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        let dangling = dir.path().join("dangling");
        let nowhere = dir.path().join("created-through-the-link");
        symlink(&nowhere, &dangling).unwrap();
        for path in [&link, &dangling] {
            let errors = [
                create_new(path, 0o644, "test file").unwrap_err(),
                open_lock(path).unwrap_err(),
                write(path, b"x", 0o644, "test file").unwrap_err(),
                refuse_link(path, "test file").unwrap_err(),
            ];
            for err in errors {
                assert_eq!(kind_of(&err), Kind::Refused, "{err:#}");
                let msg = format!("{err:#}");
                assert!(
                    msg.contains("symbolic link") && msg.contains("rm "),
                    "{msg}"
                );
            }
        }
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
        assert!(!nowhere.exists(), "a dangling link's target was created");
    }

    #[test]
    fn plain_files_are_created_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        create_new(&path, 0o640, "test file").unwrap();
        assert!(create_new(&path, 0o640, "test file").is_err(), "O_EXCL");
        write(&path, b"one", 0o640, "test file").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one");
        open_lock(&dir.path().join("l.lock")).unwrap();
        open_lock(&dir.path().join("l.lock")).unwrap();
    }
}
