/*!
Base images: how big a headnode's overlay must be and what format its backing file has, read
from the image's header (qcow2) or size (raw), or from libvirt when the file is not ours to read.
*/

use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use anyhow::Context;
use std::io::Read;
use std::path::Path;

/// The magic number that opens a qcow2 file.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// Size in bytes and format of the base image.
pub fn base_image_info(hv: &Hypervisor, path: &Path) -> anyhow::Result<(u64, String)> {
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            hv.volume_by_path(path).ok_or_else(|| {
                failure(
                    Kind::NotFound,
                    format!(
                        "base image {} does not exist: build one (`make image`) or point \
                         base_image / --base-image at a cloud image",
                        path.display()
                    ),
                )
            })
        }
        Err(e) => Err(e).with_context(|| format!("reading base image {}", path.display())),
    }
}
