//! What the early set-up does to the guest: finding and mounting the seed, waiting for eth0,
//! writing files, running commands.

use crate::seed::{is_mac, Decline, Read};
use std::ffi::CString;
use std::fs;
use std::io::{self, Read as _, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The volume label of a NoCloud seed.
const LABEL: &str = "cidata";
/// How long the kernel may take to name the private NIC eth0.
const NIC_WAIT: Duration = Duration::from_secs(30);
/// How often its name is looked for meanwhile.
const NIC_POLL: Duration = Duration::from_millis(50);

/// A disk or CD-ROM that may carry the seed: vdX, sdX or srN.
pub fn is_block_device(name: &str) -> bool {
    // (Not split by byte index: a name is not trusted to have ASCII there.)
    let rest = |prefix: &str| name.strip_prefix(prefix).filter(|r| !r.is_empty());
    if let Some(letters) = rest("vd").or_else(|| rest("sd")) {
        return letters.bytes().all(|b| b.is_ascii_lowercase());
    }
    rest("sr").is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The volume identifier of an ISO9660 image on `dev`, or None.
fn iso_label(dev: &Path) -> Option<String> {
    let mut pvd = [0u8; 2048];
    let mut file = fs::File::open(dev).ok()?;
    file.seek(SeekFrom::Start(16 * 2048)).ok()?;
    file.read_exact(&mut pvd).ok()?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return None;
    }
    Some(String::from_utf8_lossy(&pvd[40..72]).trim().to_string())
}

/// The block device that holds the seed.
pub fn find_seed() -> Read<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/block")
        .map_err(|e| Decline(format!("no block devices to look at ({e})")))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_block_device(name))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| format!("/dev/{name}"))
        .find(|dev| iso_label(Path::new(dev)).is_some_and(|l| l.eq_ignore_ascii_case(LABEL)))
        .ok_or_else(|| Decline(format!("no ISO9660 volume labelled {LABEL}")))
}

fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a nul byte"))
}

/// Mount the ISO9660 seed on `dir`, read-only, without devices, set-uid or execution (the
/// mount(2) call itself: a `mount` process is a few tenths of a second under emulation).
pub fn mount_seed(dev: &str, dir: &str) -> io::Result<()> {
    let (source, target) = (c_string(dev)?, c_string(dir)?);
    let flags = libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID | libc::MS_NOEXEC;
    // SAFETY: every pointer is a nul-terminated string that outlives the call; no data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            c"iso9660".as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmount what [`mount_seed`] mounted.
pub fn unmount(dir: &str) -> io::Result<()> {
    let target = c_string(dir)?;
    // SAFETY: a nul-terminated string that outlives the call.
    if unsafe { libc::umount(target.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A seed file's text.
pub fn load(path: &str) -> Read<String> {
    let name = Path::new(path)
        .file_name()
        .map_or(path.into(), |n| n.to_string_lossy());
    fs::read_to_string(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Decline(format!("the seed has no {name}")),
        _ => Decline(format!("{name} cannot be read ({e})")),
    })
}

/// Run a command and wait for it: whether it succeeded.
pub fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Load the modules that are not loaded yet (udev and systemd-modules-load load them all at
/// boot, but maybe not yet): a modprobe is a process, a few tenths of a second under TCG.
pub fn modprobe(modules: &[&str]) {
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| !Path::new(&format!("/sys/module/{m}")).is_dir())
        .collect();
    if !missing.is_empty() {
        let mut args = vec!["-q", "-a"];
        args.extend(missing);
        // A module that does not load shows later, as the NIC or the share that is missing.
        run("modprobe", &args);
    }
}

/// Wait for the kernel to name a NIC eth0; it must carry eth0's MAC.
pub fn wait_for_eth0(mac: &str) -> Read<()> {
    modprobe(&["virtio_net"]);
    let deadline = Instant::now() + NIC_WAIT;
    while Instant::now() < deadline {
        match fs::read_to_string("/sys/class/net/eth0/address") {
            Ok(found) => {
                let found = found.trim().to_ascii_lowercase();
                if found != mac || !is_mac(&found) {
                    return Err(Decline(format!(
                        "eth0 has MAC {found}, not {mac}: cloud-init renames the NICs"
                    )));
                }
                return Ok(());
            }
            Err(_) => sleep(NIC_POLL),
        }
    }
    Err(Decline(format!("no eth0 after {} s", NIC_WAIT.as_secs())))
}

/// Whether `path` is a plain file with this mode and content already.
fn same(path: &Path, mode: u32, content: &str) -> bool {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() && meta.mode() & 0o7777 == mode => {
            fs::read(path).is_ok_and(|bytes| bytes == content.as_bytes())
        }
        _ => false,
    }
}

/// Write a file as cloud-init's write_files would, but atomically (a temp file, renamed). A
/// file that is there already as it would be written is left alone: the image carries the
/// seed's unit files that are the same on every headnode, and systemd, which read them at
/// boot, would otherwise see them changed and have to be reloaded (seconds under emulation).
pub fn write(path: &str, mode: u32, content: &str) -> io::Result<()> {
    let path = Path::new(path);
    if same(path, mode, content) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".mkheadnode-early");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.write_all(content.as_bytes())?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    drop(file);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_devices_are_disks_and_cdroms() {
        for good in ["vda", "vdab", "sdb", "sr0", "sr12"] {
            assert!(is_block_device(good), "{good}");
        }
        for bad in [
            "vda1", "sda1", "sr", "vd", "loop0", "nvme0n1", "srx", "v", "", "aé", "vé",
        ] {
            assert!(!is_block_device(bad), "{bad}");
        }
    }

    /// A file already there as the seed has it is left alone (so that systemd, which read it
    /// at boot, needs no reload); one that differs in content or mode is written.
    #[test]
    fn a_file_already_there_as_the_seed_has_it_is_left_alone() {
        let dir =
            std::env::temp_dir().join(format!("mkheadnode-early-test-{}", std::process::id()));
        let path = dir.join("deeper/unit.conf");
        let text = path.to_str().unwrap();
        let stamp = || {
            let meta = fs::metadata(&path).unwrap();
            (
                meta.ino(),
                meta.mtime_nsec(),
                meta.mode() & 0o7777,
                fs::read_to_string(&path).unwrap(),
            )
        };
        write(text, 0o644, "[Service]\n").unwrap();
        let first = stamp();
        assert_eq!((first.2, first.3.as_str()), (0o644, "[Service]\n"));
        write(text, 0o644, "[Service]\n").unwrap();
        assert_eq!(stamp(), first, "rewritten");
        write(text, 0o755, "[Service]\n").unwrap();
        assert_eq!(stamp().2, 0o755);
        write(text, 0o755, "[Unit]\n").unwrap();
        assert_eq!(stamp().3, "[Unit]\n");
        // A link where the temporary file goes is not followed.
        let tmp = dir.join("deeper/unit.conf.mkheadnode-early");
        let victim = dir.join("victim");
        fs::write(&victim, "kept\n").unwrap();
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        assert!(write(text, 0o644, "[Install]\n").is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "kept\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
