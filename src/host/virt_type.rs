/*!
Choosing between kvm and qemu (TCG).

libvirt's capabilities say whether `/dev/kvm` is there, not whether a guest runs on it: under
nested virtualization a KVM guest can hang, or stop with "KVM internal error ... emulation
failure" (seen here: extlinux's protected-mode code, after the firmware ran fine). So in
`auto` mode, on a local hypervisor, mkheadnode runs the [KVM probes](crate::host::kvm_probe):
a vCPU must reach `hlt`, and the base image must boot under KVM until its kernel speaks.

The boot probe's verdict is cached per host boot and base image, so only the first run pays
for it.
*/

use crate::host::hypervisor::Hypervisor;
use crate::host::kvm_probe::{boot_probe, probe_in_child, BOOT_PROBE_TIMEOUT, PROBE_TIMEOUT};
use crate::host::nofollow;
use crate::model::config::VirtTypeChoice;
use crate::model::console::BOOT_SIGN;
use crate::model::plan::VirtType;
use anyhow::{anyhow, Context};
use std::path::Path;

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
/// binary re-run with [`PROBE_ARG`](crate::host::kvm_probe::PROBE_ARG)) and the cached boot
/// probe of `base_image`; on a remote one, libvirt's word, since nothing here can be run there.
/// With `may_boot` false (a dry run) no test guest is started: only a cached verdict counts.
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
    let _ = nofollow::write(
        &cache_dir.join("kvm-boot-probe"),
        body.as_bytes(),
        0o644,
        "KVM probe cache",
    );
    verdict
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
}
