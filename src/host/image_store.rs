/*!
Pushed base images on a hypervisor, through libvirt alone: the dir pool `<pool>-images` at
`image_dir`, its image volumes and their records (see [`crate::model::image`]), uploads that
resume at an offset, and checksums of what a volume holds, read back through a stream. Every
stream has a connection of its own ([`Hypervisor::upload_at`]).

Checksums are SHA-256 from the `sha2` crate (RustCrypto): a maintained, widely used and
audited implementation that uses the CPU's SHA instructions where there are some.
*/

use crate::host::hypervisor::Hypervisor;
use crate::host::nofollow;
use crate::model::config::Config;
use crate::model::image::{is_sha256, parse_record, split_volume, ImageId, Pushed, RECORD_SUFFIX};
use crate::render::domain_xml;
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

/// The mode of the image pool's directory: qemu's user reads the images in it.
const IMAGE_DIR_MODE: u32 = 0o755;

/// A record is one line: anything longer is no record.
const RECORD_LIMIT: u64 = 4096;

/// How much of a file is hashed at a time.
const HASH_PIECE: usize = 1 << 20;

/// The SHA-256 of `source` as 64 lowercase hex digits, with how many bytes it had; `read` is
/// told the count so far after each piece.
pub fn sha256_of(
    source: &mut dyn Read,
    read: &mut dyn FnMut(u64),
) -> anyhow::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_PIECE];
    let mut total = 0u64;
    loop {
        let n = source.read(&mut buf).context("reading")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        read(total);
    }
    Ok((hex(&hasher.finalize()), total))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 and size of the file at `path` on this machine; `read` as in [`sha256_of`].
/// The result is kept in `cache_dir` (root's: the lock dir) for as long as the file stays the
/// same inode with the same size, modification and change times, so that `list` and `create`
/// do not read a large image again each time.
pub fn sha256_of_file(
    path: &Path,
    cache_dir: &Path,
    read: &mut dyn FnMut(u64),
) -> anyhow::Result<(String, u64)> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let stamp = format!(
        "{} {} {} {}.{} {}.{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let cache = cache_dir.join(format!("sha256-{:016x}", fnv(path)));
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some((seen, sha)) = text.trim_end().rsplit_once(' ') {
            if seen == stamp && is_sha256(sha) {
                return Ok((sha.to_string(), meta.len()));
            }
        }
    }
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (sha, size) =
        sha256_of(&mut file, read).with_context(|| format!("hashing {}", path.display()))?;
    // A cache that cannot be written costs only time.
    if std::fs::create_dir_all(cache_dir).is_ok() {
        nofollow::write(
            &cache,
            format!("{stamp} {sha}\n").as_bytes(),
            0o600,
            "checksum cache",
        )
        .ok();
    }
    Ok((sha, size))
}

/// A 64-bit FNV-1a hash of a path, to name its cache file.
fn fnv(path: &Path) -> u64 {
    path.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// A volume of the image pool that is no complete image: an upload in progress or cut short,
/// or one whose record is missing or broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// The volume's name.
    pub volume: String,
    /// The file name it is an image of.
    pub name: String,
    /// How many bytes it holds.
    pub have: u64,
}

/// What the image pool of a host holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Complete images (a record vouches for each).
    pub complete: Vec<Pushed>,
    /// Image volumes without a valid record.
    pub partial: Vec<Partial>,
}

/// The image pool of one hypervisor.
pub struct ImageStore<'a> {
    hv: &'a Hypervisor,
    pool: StoragePool,
    name: String,
}

impl<'a> ImageStore<'a> {
    /// The image pool of `config` on `hv`, made (and started) if needed.
    pub fn ensure(hv: &'a Hypervisor, config: &Config) -> anyhow::Result<ImageStore<'a>> {
        let name = config.image_pool();
        let (pool, _) = hv.ensure_pool(&name, &config.image_dir, IMAGE_DIR_MODE)?;
        Ok(ImageStore { hv, pool, name })
    }

    /// The image pool of `config` on `hv` if there is one (started if it was not): nothing is
    /// made.
    pub fn existing(hv: &'a Hypervisor, config: &Config) -> anyhow::Result<Option<ImageStore<'a>>> {
        let name = config.image_pool();
        let pool = hv.started_pool_at(&name, &config.image_dir, "the pool of pushed images")?;
        Ok(pool.map(|pool| ImageStore { hv, pool, name }))
    }

    /// Every image volume of the pool: complete ones with their records, the rest as partial.
    pub fn list(&self) -> anyhow::Result<Listing> {
        // Files written since the pool started are volumes only after a refresh (which libvirt
        // refuses while an upload runs: the listing is then as of the last refresh).
        self.pool.refresh(0).ok();
        let vols = self
            .pool
            .list_all_volumes(0)
            .with_context(|| format!("listing the volumes of pool {}", self.name))?;
        let names: Vec<String> = vols.iter().filter_map(|v| v.name().ok()).collect();
        let mut out = Listing::default();
        for (vol, volume) in vols.iter().zip(&names) {
            let Some((name, _)) = split_volume(volume) else {
                continue;
            };
            let have = physical_size(vol)?;
            let record = format!("{volume}{RECORD_SUFFIX}");
            let vouched = match names.contains(&record) {
                true => self.read_record(volume)?,
                false => None,
            };
            match vouched {
                Some((id, recorded_at)) => out.complete.push(Pushed {
                    id,
                    path: PathBuf::from(vol.path().context("reading a volume's path")?),
                    size: have,
                    recorded_at,
                }),
                None => out.partial.push(Partial {
                    volume: volume.clone(),
                    name,
                    have,
                }),
            }
        }
        Ok(out)
    }

    /// The image that the record of `volume` vouches for, and when the record was written;
    /// `None` if it is not a record of that volume (a torn or foreign one).
    fn read_record(&self, volume: &str) -> anyhow::Result<Option<(ImageId, u64)>> {
        let Some(vol) = self.volume(&format!("{volume}{RECORD_SUFFIX}"))? else {
            return Ok(None);
        };
        if physical_size(&vol)? > RECORD_LIMIT {
            return Ok(None);
        }
        let text = self.hv.download(&vol, RECORD_LIMIT)?;
        let id = parse_record(volume, &String::from_utf8_lossy(&text));
        Ok(id.map(|id| (id, modified(&vol))))
    }

    /// The named volume of the pool, if there is one.
    pub fn volume(&self, name: &str) -> anyhow::Result<Option<StorageVol>> {
        self.hv.find_volume(&self.pool, name)
    }

    /// A new, empty volume for the image `id` (root's, mode 0644: qemu reads it).
    pub fn create(&self, id: &ImageId) -> anyhow::Result<StorageVol> {
        let volume = id.volume();
        let xml = domain_xml::raw_volume(&volume, 0)?;
        self.hv.create_volume(&self.pool, &volume, &xml)
    }

    /// Delete the named volume of the pool if it is there.
    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        if let Some(vol) = self.volume(name)? {
            vol.delete(0)
                .with_context(|| format!("deleting volume {name} of pool {}", self.name))?;
        }
        Ok(())
    }

    /// How many bytes `vol` holds (its file's size, not a qcow2 image's virtual size).
    pub fn bytes(&self, vol: &StorageVol) -> anyhow::Result<u64> {
        physical_size(vol)
    }

    /// The SHA-256 of the first `len` bytes of `vol`, read back through libvirt; `read` as in
    /// [`sha256_of`].
    pub fn sha256_of_volume(
        &self,
        vol: &StorageVol,
        len: u64,
        read: &mut dyn FnMut(u64),
    ) -> anyhow::Result<(String, u64)> {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        self.hv.download_to(vol, len, &mut |piece| {
            hasher.update(piece);
            total += piece.len() as u64;
            read(total);
            Ok(())
        })?;
        Ok((hex(&hasher.finalize()), total))
    }

    /// Write the record of `id` (replacing a broken one): from now on the image is complete.
    pub fn write_record(&self, id: &ImageId) -> anyhow::Result<()> {
        let name = id.record_volume();
        self.delete(&name)?;
        let text = id.record_text();
        let xml = domain_xml::raw_volume(&name, text.len() as u64)?;
        let vol = self.hv.create_volume(&self.pool, &name, &xml)?;
        self.hv
            .write_volume(&vol, text.as_bytes())
            .with_context(|| format!("writing the record {name}"))
    }

    /// The connection this store works through.
    pub fn hypervisor(&self) -> &Hypervisor {
        self.hv
    }
}

/// The size of `vol`'s file, as libvirt reads it.
fn physical_size(vol: &StorageVol) -> anyhow::Result<u64> {
    vol.info_flags(sys::VIR_STORAGE_VOL_GET_PHYSICAL)
        .map(|i| i.allocation)
        .context("reading a volume's size")
}

/// When `vol`'s file was last modified (seconds since the epoch), 0 if libvirt does not say.
fn modified(vol: &StorageVol) -> u64 {
    let xml = vol.xml_desc(0).unwrap_or_default();
    xml.split("<mtime>")
        .nth(1)
        .and_then(|t| t.split(['.', '<']).next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_inputs() {
        let mut counted = Vec::new();
        let (sha, len) = sha256_of(&mut &b"abc"[..], &mut |n| counted.push(n)).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!((len, counted), (3, vec![3]));
        let (sha, len) = sha256_of(&mut &b""[..], &mut |_| {}).unwrap();
        assert_eq!(
            (sha.as_str(), len),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                0
            )
        );
    }

    #[test]
    fn a_file_changed_in_place_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        std::fs::write(&path, b"abc").unwrap();
        let cache = dir.path().join("cache");
        let mut reads = 0;
        let (first, _) = sha256_of_file(&path, &cache, &mut |_| reads += 1).unwrap();
        let (again, _) = sha256_of_file(&path, &cache, &mut |_| reads += 1).unwrap();
        assert_eq!((first.as_str(), reads), (again.as_str(), 1), "hashed once");
        std::fs::write(&path, b"abcd").unwrap();
        let (second, size) = sha256_of_file(&path, &cache, &mut |_| reads += 1).unwrap();
        assert_ne!(first, second);
        assert_eq!((size, reads), (4, 2));
    }
}
