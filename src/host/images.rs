/*!
Base images: how big a headnode's overlay must be and what format its backing file has, read
from the image's header (qcow2) or size (raw), or from libvirt when the file is not ours to read.
*/

use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use anyhow::Context;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The magic number that opens a qcow2 file.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// The base image a create uses on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// Its path on the host: the overlay's backing file.
    pub path: PathBuf,
    /// Its (virtual) size in bytes.
    pub size: u64,
    /// `qcow2` or `raw`.
    pub format: String,
    /// Its SHA-256, where known (a pushed image, or this machine's own file).
    pub sha256: Option<String>,
}

/// Size in bytes and format of the base image (on the hypervisor, wherever that is).
pub fn base_image_info(hv: &Hypervisor, path: &Path) -> anyhow::Result<(u64, String)> {
    if !hv.is_local() {
        // A file of the same name here says nothing about the hypervisor's.
        return hv
            .base_volume(path)?
            .ok_or_else(|| missing_base(path, hv.uri()));
    }
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut header = [0u8; 32];
            let len = f.metadata()?.len();
            if f.read_exact(&mut header).is_ok() && header[0..4] == *QCOW2_MAGIC {
                // The virtual size: a big-endian u64 at offset 24 of the qcow2 header.
                let mut size = [0u8; 8];
                size.copy_from_slice(&header[24..32]);
                Ok((u64::from_be_bytes(size), "qcow2".into()))
            } else {
                Ok((len, "raw".into()))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => hv
            .volume_by_path(path)
            .ok_or_else(|| missing_base(path, hv.uri())),
        Err(e) => Err(e).with_context(|| format!("reading base image {}", path.display())),
    }
}

/// The error for a base image that is not there.
fn missing_base(path: &Path, uri: &str) -> anyhow::Error {
    failure(
        Kind::NotFound,
        format!(
            "base image {} does not exist on {uri}: build one there (`make image`) or point \
             base_image / --base-image at a cloud image there",
            path.display()
        ),
    )
}
