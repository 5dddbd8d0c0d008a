/*!
Atomic file replacement: a file on the host is either its old self or its new self, never half
written, and keeps its mode and owner.
*/

use crate::host::nofollow;
use anyhow::Context;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Replace `path` with `contents` through a temporary file in the same directory (fsynced,
/// then renamed over it), keeping the original's mode and owner. Refuses a file that its
/// permission bits make read-only, so a write-protected file is never silently replaced, and a
/// symbolic link, whose target is not ours to judge.
pub fn replace(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    nofollow::refuse_link(path, "file")?;
    let meta = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o222 == 0 {
        anyhow::bail!(
            "{} is read-only (mode {:o})",
            path.display(),
            meta.permissions().mode() & 0o7777
        );
    }
    replace_as(
        path,
        contents,
        meta.permissions().mode() & 0o7777,
        (meta.uid(), meta.gid()),
    )
}

/// Put `contents` at `path` (replacing what is there, or not) through a temporary file in the
/// same directory that gets `mode` and `owner` (uid, gid) before it is fsynced and renamed into
/// place. A symbolic link at `path` is refused; one planted after that check is replaced by the
/// rename, never written through.
pub fn replace_as(
    path: &Path,
    contents: &[u8],
    mode: u32,
    (uid, gid): (u32, u32),
) -> anyhow::Result<()> {
    nofollow::refuse_link(path, "file")?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".mkheadnode-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)?;
    let file = tmp.as_file();
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::fchown(file, Some(uid), Some(gid))
        .with_context(|| format!("setting the owner of {}", path.display()))?;
    file.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}
