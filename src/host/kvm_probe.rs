/*!
The KVM probes: whether a guest really runs under KVM on this host, as opposed to libvirt
merely offering it (see [`crate::host::virt_type`] for why that differs and how the verdicts
are used).

1. [`probe_in_child`]: a child process (this binary, re-run with [`PROBE_ARG`], which runs
   [`run_probe`]) creates a KVM VM with one vCPU whose only instruction is `hlt`, and must see
   that `hlt` within [`PROBE_TIMEOUT`] (else it is killed);
2. [`boot_probe`]: a transient KVM domain boots the base image read-only, and its kernel must
   print on the serial console within [`BOOT_PROBE_TIMEOUT`]; a paused (internal error) or
   silent guest fails it.
*/

use crate::host::hypervisor::Hypervisor;
use crate::host::images::base_image_info;
use crate::model::console::BOOT_SIGN;
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
