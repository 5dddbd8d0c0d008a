/*!
Choosing between kvm and qemu (TCG).

libvirt's capabilities say whether `/dev/kvm` is there, not whether a guest runs on it: under
nested virtualization a KVM guest can hang forever. So in `auto` mode mkheadnode also runs a
probe: a child process creates a KVM VM with one vCPU whose only instruction is `hlt`, and must
see that `hlt` within two seconds, else the child is killed and qemu (TCG) is used.
*/

use crate::config::VirtTypeChoice;
use crate::plan::VirtType;
use anyhow::{bail, Context};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden argument that makes the mkheadnode binary run the probe itself.
pub const PROBE_ARG: &str = "__kvm-probe";

/// How long the probe may take before KVM is judged unusable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The chosen type and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// What headnodes will run as.
    pub virt_type: VirtType,
    /// A sentence for the operator.
    pub reason: String,
}

/// Decide from the operator's choice, libvirt's offer, and (lazily) the probe's verdict.
pub fn decide(
    choice: VirtTypeChoice,
    libvirt_offers_kvm: bool,
    probe: impl FnOnce() -> Result<(), String>,
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
            Ok(()) => Choice {
                virt_type: VirtType::Kvm,
                reason: "kvm: a test guest ran on /dev/kvm".into(),
            },
            Err(why) => Choice {
                virt_type: VirtType::Qemu,
                reason: format!(
                    "qemu (TCG): libvirt offers kvm but a test guest did not run on it ({why}); \
                     nested KVM often does this. Force it with --virt-type kvm if you know better"
                ),
            },
        },
    }
}

/// [`decide`] with the real probe: this very binary re-run with [`PROBE_ARG`].
pub fn choose(choice: VirtTypeChoice, libvirt_offers_kvm: bool) -> Choice {
    decide(choice, libvirt_offers_kvm, || {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
        probe_in_child(&exe, PROBE_TIMEOUT)
    })
}

/// Run the probe in a child process of `exe` (the mkheadnode binary), killing it on timeout.
pub fn probe_in_child(exe: &Path, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new(exe)
        .arg(PROBE_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start the probe: {e}"))?;
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
                return Err(msg.trim().to_string());
            }
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the vCPU did not reach `hlt` within {} s",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for the probe: {e}")),
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
        let never = || -> Result<(), String> { panic!("probe must not run") };
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
        let never = || -> Result<(), String> { panic!("probe must not run") };
        let c = decide(VirtTypeChoice::Auto, false, never);
        assert_eq!(c.virt_type, VirtType::Qemu);
        assert!(c.reason.contains("offers no kvm"));
        assert_eq!(
            decide(VirtTypeChoice::Auto, true, || Ok(())).virt_type,
            VirtType::Kvm
        );
        let c = decide(VirtTypeChoice::Auto, true, || Err("hung".into()));
        assert_eq!(c.virt_type, VirtType::Qemu);
        assert!(c.reason.contains("hung"), "{}", c.reason);
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
        let err = probe_in_child(&script, Duration::from_millis(300)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(err.contains("did not reach"), "{err}");
    }
}
