/*!
Choosing between kvm and qemu (TCG).

libvirt's capabilities say whether `/dev/kvm` is there, not whether a guest runs on it: under
nested virtualization a KVM guest can hang, or stop with "KVM internal error ... emulation
failure" (seen here: extlinux's protected-mode code, after the firmware ran fine). So in
`auto` mode, on a local hypervisor, mkheadnode checks two things:

1. a child process creates a KVM VM with one vCPU whose only instruction is `hlt`, and must see
   that `hlt` within two seconds (else it is killed);
2. a transient KVM domain boots the base image read-only, and its kernel must print on the
   serial console within [`BOOT_PROBE_TIMEOUT`]; a paused (internal error) or silent guest
   fails it.

The verdict is cached per host boot and base image, so only the first run pays for it.
*/

use crate::host::hypervisor::Hypervisor;
use crate::host::images::base_image_info;
use crate::model::config::VirtTypeChoice;
use crate::model::console::BOOT_SIGN;
use crate::model::plan::VirtType;
use crate::render::domain_xml;
use anyhow::{anyhow, bail, Context};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden argument that makes the mkheadnode binary run the probe itself.
pub const PROBE_ARG: &str = "__kvm-probe";

/// How long the `hlt` probe may take before KVM is judged unusable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the boot probe waits for the base image's kernel to speak.
pub const BOOT_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The chosen type and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// What headnodes will run as.
    pub virt_type: VirtType,
    /// A sentence for the operator.
    pub reason: String,
}

/// Decide from the operator's choice, libvirt's offer, and (lazily) the probe's verdict: the
/// evidence that KVM works, or why it does not.
pub fn decide(
    choice: VirtTypeChoice,
    libvirt_offers_kvm: bool,
    probe: impl FnOnce() -> anyhow::Result<String>,
) -> Choice {
    match choice {
        VirtTypeChoice::Kvm => Choice {
            virt_type: VirtType::Kvm,
            reason: "kvm, as configured".into(),
        },
        VirtTypeChoice::Qemu => Choice {
            virt_type: VirtType::Qemu,
            reason: "qemu (TCG), as configured".into(),
        },
        VirtTypeChoice::Auto if !libvirt_offers_kvm => Choice {
            virt_type: VirtType::Qemu,
            reason: "qemu (TCG): libvirt offers no kvm on this host (is /dev/kvm present and \
                     usable by qemu?); guests will be slow"
                .into(),
        },
        VirtTypeChoice::Auto => match probe() {
            Ok(evidence) => Choice {
                virt_type: VirtType::Kvm,
                reason: format!("kvm: {evidence}"),
            },
            Err(why) => Choice {
                virt_type: VirtType::Qemu,
                reason: format!(
                    "qemu (TCG): libvirt offers kvm but a test guest did not run on it ({why:#}); \
                     nested KVM often does this. Force it with --virt-type kvm if you know better"
                ),
            },
        },
    }
}

/// [`decide`] with the real probes for `hv`: on a local hypervisor the `hlt` probe (this very
/// binary re-run with [`PROBE_ARG`]) and the cached boot probe of `base_image`; on a remote one,
/// libvirt's word, since nothing here can be run there. With `may_boot` false (a dry run) no
/// test guest is started: only a cached verdict counts.
pub fn choose(
    choice: VirtTypeChoice,
    hv: &Hypervisor,
    base_image: &Path,
    cache_dir: &Path,
    may_boot: bool,
) -> Choice {
    decide(choice, hv.offers_kvm(), || {
        if !hv.is_local() {
            return Ok("the remote libvirt offers it (not probed from here)".into());
        }
        let exe = std::env::current_exe().context("cannot find my own binary")?;
        probe_in_child(&exe, PROBE_TIMEOUT)?;
        if may_boot {
            cached_boot_probe(hv, base_image, cache_dir)?;
        } else {
            cache_key(base_image)
                .and_then(|key| cached_verdict(&key, cache_dir))
                .unwrap_or_else(|| {
                    Err(anyhow!(
                        "not probed in a dry run: a real run boots the base image under KVM to \
                         decide"
                    ))
                })?;
        }
        Ok(format!(
            "the base image boots under KVM here ({BOOT_SIGN} on its console)"
        ))
    })
}

/// What the boot probe's verdict is cached under: this host boot and this base image.
fn cache_key(base_image: &Path) -> Option<String> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let meta = std::fs::metadata(base_image).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!(
        "{} {} {} {mtime}",
        boot_id.trim(),
        base_image.display(),
        meta.len()
    ))
}

/// The boot probe verdict cached under `key` (see [`cache_key`]), if there is one.
fn cached_verdict(key: &str, cache_dir: &Path) -> Option<anyhow::Result<()>> {
    let cache = cache_dir.join("kvm-boot-probe");
    let text = std::fs::read_to_string(&cache).ok()?;
    let mut lines = text.lines();
    if lines.next() != Some(key) {
        return None;
    }
    Some(match lines.next() {
        Some("ok") => Ok(()),
        _ => Err(anyhow!(
            "{} (cached in {})",
            lines.collect::<Vec<_>>().join(" "),
            cache.display()
        )),
    })
}

fn cached_boot_probe(hv: &Hypervisor, base_image: &Path, cache_dir: &Path) -> anyhow::Result<()> {
    let key = cache_key(base_image)
        .ok_or_else(|| anyhow!("base image {} is not readable", base_image.display()))?;
    if let Some(verdict) = cached_verdict(&key, cache_dir) {
        return verdict;
    }
    let verdict = boot_probe(hv, base_image, cache_dir, BOOT_PROBE_TIMEOUT);
    let _ = std::fs::create_dir_all(cache_dir);
    let body = match &verdict {
        Ok(()) => format!("{key}\nok\n"),
        Err(why) => format!("{key}\nfailed\n{why:#}\n"),
    };
    let _ = std::fs::write(cache_dir.join("kvm-boot-probe"), body);
    verdict
}

/// Boot `base_image` read-only in a transient KVM domain until its kernel speaks.
pub fn boot_probe(
    hv: &Hypervisor,
    base_image: &Path,
    work_dir: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    use virt::domain::DomainState;
    use virt::enumutil::Enum;
    let (_, format) = base_image_info(hv, base_image)?;
    let name = format!("mkheadnode-kvm-probe-{}", std::process::id());
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let log = work_dir.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    let xml = domain_xml::kvm_probe(&name, base_image, &format, &log)?;
    let dom = hv.start_transient(&name, &xml)?;
    let start = Instant::now();
    let verdict = loop {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains(BOOT_SIGN)) {
            break Ok(());
        }
        match dom.state().map(|(s, _)| s) {
            Ok(Enum::Known(DomainState::Paused)) => {
                break Err(anyhow!(
                    "qemu paused the test guest (KVM internal error; see /var/log/libvirt/qemu/{name}.log)"
                ))
            }
            Ok(Enum::Known(DomainState::Running)) | Ok(Enum::Known(DomainState::Blocked)) => {}
            other => break Err(anyhow!("the test guest stopped ({other:?})")),
        }
        if start.elapsed() >= timeout {
            break Err(anyhow!(
                "the test guest's kernel said nothing within {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = dom.destroy();
    let _ = std::fs::remove_file(&log);
    verdict
}

/// Run the probe in a child process of `exe` (the mkheadnode binary), killing it on timeout.
pub fn probe_in_child(exe: &Path, timeout: Duration) -> anyhow::Result<()> {
    let mut child = Command::new(exe)
        .arg(PROBE_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not start the probe")?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(_)) => {
                let mut msg = String::new();
                if let Some(mut err) = child.stderr.take() {
                    use std::io::Read;
                    let _ = err.read_to_string(&mut msg);
                }
                bail!("{}", msg.trim());
            }
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the vCPU did not reach `hlt` within {} s",
                    timeout.as_secs()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e).context("waiting for the probe"),
        }
    }
}

/// The probe itself, run inside the child: one vCPU in real mode executing `hlt` at 0x1000.
pub fn run_probe() -> anyhow::Result<()> {
    use kvm_bindings::kvm_userspace_memory_region;
    use kvm_ioctls::{Kvm, VcpuExit};

    const GUEST_ADDR: u64 = 0x1000;
    const MEM_SIZE: usize = 0x1000;
    let kvm = Kvm::new().context("opening /dev/kvm")?;
    let vm = kvm.create_vm().context("creating a KVM VM")?;
    // SAFETY: a fresh anonymous private mapping, checked for failure, never unmapped before exit.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            MEM_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        bail!("mmap failed");
    }
    // SAFETY: `mem` points to MEM_SIZE writable bytes.
    unsafe { *(mem as *mut u8) = 0xf4 }; // hlt
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: GUEST_ADDR,
        memory_size: MEM_SIZE as u64,
        userspace_addr: mem as u64,
        flags: 0,
    };
    // SAFETY: the region maps memory that stays valid for the life of the VM.
    unsafe { vm.set_user_memory_region(region) }.context("mapping guest memory")?;
    let mut vcpu = vm.create_vcpu(0).context("creating a vCPU")?;
    let mut sregs = vcpu.get_sregs()?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)?;
    let mut regs = vcpu.get_regs()?;
    regs.rip = GUEST_ADDR;
    regs.rflags = 2;
    vcpu.set_regs(&regs)?;
    match vcpu.run().context("running the vCPU")? {
        VcpuExit::Hlt => Ok(()),
        other => bail!("the vCPU stopped with {other:?} instead of hlt"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_choices_skip_the_probe() {
        let never = || -> anyhow::Result<String> { panic!("probe must not run") };
        assert_eq!(
            decide(VirtTypeChoice::Kvm, false, never).virt_type,
            VirtType::Kvm
        );
        assert_eq!(
            decide(VirtTypeChoice::Qemu, true, never).virt_type,
            VirtType::Qemu
        );
    }

    #[test]
    fn auto_needs_libvirt_and_the_probe() {
        let never = || -> anyhow::Result<String> { panic!("probe must not run") };
        let c = decide(VirtTypeChoice::Auto, false, never);
        assert_eq!(c.virt_type, VirtType::Qemu);
        assert!(c.reason.contains("offers no kvm"));
        let c = decide(VirtTypeChoice::Auto, true, || Ok("it booted".into()));
        assert_eq!(
            (c.virt_type, c.reason.as_str()),
            (VirtType::Kvm, "kvm: it booted")
        );
        let c = decide(VirtTypeChoice::Auto, true, || Err(anyhow!("hung")));
        assert_eq!(c.virt_type, VirtType::Qemu);
        assert!(c.reason.contains("hung"), "{}", c.reason);
    }

    #[test]
    fn the_boot_probe_verdict_is_cached_per_boot_and_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("base.qcow2");
        std::fs::write(&image, b"not really an image").unwrap();
        let key = cache_key(&image).unwrap();
        std::fs::write(
            dir.path().join("kvm-boot-probe"),
            format!("{key}\nfailed\nit paused\n"),
        )
        .unwrap();
        // A cached verdict is used without touching libvirt (the test driver could not boot it).
        let hv = Hypervisor::connect("test:///default").unwrap();
        let err = format!(
            "{:#}",
            cached_boot_probe(&hv, &image, dir.path()).unwrap_err()
        );
        assert!(err.contains("it paused") && err.contains("cached"), "{err}");
        std::fs::write(dir.path().join("kvm-boot-probe"), format!("{key}\nok\n")).unwrap();
        assert!(cached_boot_probe(&hv, &image, dir.path()).is_ok());
        // A changed image invalidates it.
        std::fs::write(&image, b"another image, another size").unwrap();
        assert_ne!(cache_key(&image).unwrap(), key);
    }

    #[test]
    fn a_hanging_child_is_killed_at_the_timeout() {
        // `sleep` ignores the probe argument's meaning but not its lifetime: it must be killed.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hang");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let start = Instant::now();
        let err = format!(
            "{:#}",
            probe_in_child(&script, Duration::from_millis(300)).unwrap_err()
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(err.contains("did not reach"), "{err}");
    }
}
