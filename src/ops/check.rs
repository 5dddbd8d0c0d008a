/*!
`mkheadnode check`: what the host looks like from mkheadnode's point of view, and what to do
about each problem. It changes nothing.
*/

use crate::host::apparmor;
use crate::host::attachment;
use crate::host::hypervisor::Hypervisor;
use crate::host::virt_type;
use crate::model::config::{Attachment, Config};
use crate::model::footprint::Footprint;
use crate::model::image::short;
use crate::model::plan::{Plan, VirtType};
use crate::model::vlan::Vlan;
use crate::ops::base_image::base_image_on;
use crate::render::seed::{BIOS_LOADER, UEFI_LOADER};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but worth knowing.
    Note,
    /// create will fail (or the guest will not work) until this is fixed.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The verdict.
    pub level: Level,
    /// What was looked at.
    pub item: &'static str,
    /// What was found, and what to do.
    pub text: String,
}

fn finding(level: Level, item: &'static str, text: impl Into<String>) -> Finding {
    Finding {
        level,
        item,
        text: text.into(),
    }
}

/// Whether every directory from `/` down to `dir` lets others (qemu's user) in, and `dir` lets
/// them list it. Returns the first path that does not.
pub fn first_closed_dir(dir: &Path) -> Option<PathBuf> {
    let mut walk = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        walk.push(p.to_path_buf());
        cur = p.parent();
    }
    walk.reverse();
    for p in &walk {
        let mode = std::fs::metadata(p).ok()?.permissions().mode();
        let need = if p == dir { 0o005 } else { 0o001 };
        if mode & need != need {
            return Some(p.clone());
        }
    }
    None
}

/// Look at the host. `hv` is the connection, or why there is none.
pub fn run(
    config: &Config,
    hv: Result<&Hypervisor, &anyhow::Error>,
    vlans: &[Vlan],
) -> Vec<Finding> {
    let mut out = vec![libvirt(&hv)];
    let hv = hv.ok();
    out.push(security(hv));
    match hv.filter(|h| !h.is_local()) {
        Some(remote) => {
            out.push(remote_apparmor(remote));
            out.extend(remote_config_dirs(remote, config, vlans));
        }
        None => {
            out.push(apparmor_rule(config));
            out.push(config_dir(config));
        }
    }
    out.push(boot_modes());
    out.push(match hv.filter(|h| !h.is_local()) {
        // The kernel switch is a file of the hypervisor's; the virt crate has no binding of
        // libvirt's node memory parameters (shm_run), so there is nothing to read it through.
        Some(_) => finding(
            Level::Note,
            "memory sharing",
            "KSM there: not readable through libvirt from here; `cat /sys/kernel/mm/ksm/run` \
             on the hypervisor says (1: on)",
        ),
        None => memory_sharing(Path::new(KSM_RUN)),
    });
    if let Some(hv) = hv {
        out.push(base_image(hv, config));
        out.extend(attachments(hv, config, vlans));
        out.push(kvm_or_qemu(hv, config));
    }
    out
}

/// The connection to libvirt, or why there is none.
fn libvirt(hv: &Result<&Hypervisor, &anyhow::Error>) -> Finding {
    match hv {
        Ok(hv) => finding(Level::Ok, "libvirt", format!("connected to {}", hv.uri())),
        Err(why) => finding(Level::Fail, "libvirt", format!("{why:#}")),
    }
}

/// Whether the kernel runs AppArmor (here only: another machine's kernel is not ours to read),
/// and which security drivers libvirt uses.
fn security(hv: Option<&Hypervisor>) -> Finding {
    let kernel_aa = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false);
    let models = hv
        .and_then(|h| h.security_models().ok())
        .unwrap_or_default();
    let kernel = match hv {
        Some(h) if !h.is_local() => "AppArmor in the kernel there: not readable through libvirt",
        _ if kernel_aa => "AppArmor enabled in the kernel",
        _ => "AppArmor not enabled in the kernel",
    };
    finding(
        Level::Ok,
        "security",
        format!(
            "{kernel}; libvirt security drivers: {}",
            apparmor::drivers(&models)
        ),
    )
}

/// Whether libvirt's AppArmor abstraction already grants the config share.
fn apparmor_rule(config: &Config) -> Finding {
    let rule = apparmor::rule(&config.config_root);
    let path = &config.apparmor_abstraction;
    match std::fs::read_to_string(path) {
        Ok(text) if apparmor::contains_rule(&text, &rule) => {
            finding(Level::Ok, "apparmor", format!("{} grants `{rule}`", path.display()))
        }
        Ok(_) => finding(
            Level::Note,
            "apparmor",
            format!("{} lacks `{rule}`; create adds it (libvirt's per-domain profile also covers the share)", path.display()),
        ),
        Err(_) => finding(Level::Ok, "apparmor", format!("{} absent: AppArmor not in use for libvirt", path.display())),
    }
}

/// AppArmor on another machine: what libvirt there does about the share, and that the
/// abstraction file is out of reach (see [`apparmor::remote_note`]).
fn remote_apparmor(hv: &Hypervisor) -> Finding {
    match hv.security_models() {
        Ok(models) => finding(
            Level::Note,
            "apparmor",
            format!(
                "{}; the abstraction file there is not checked",
                apparmor::remote_note(&models)
            ),
        ),
        Err(e) => finding(Level::Fail, "apparmor", format!("{e:#}")),
    }
}

/// The config dirs of `vlans` on another machine: each its storage pool, and its mode.
fn remote_config_dirs(hv: &Hypervisor, config: &Config, vlans: &[Vlan]) -> Vec<Finding> {
    if vlans.is_empty() {
        return vec![finding(
            Level::Ok,
            "config dir",
            format!(
                "on {} each config dir is a storage pool ({}-config-<vlan>) that create makes \
                 (root, mode 0755); name VLANs to check theirs",
                hv.uri(),
                config.pool
            ),
        )];
    }
    vlans
        .iter()
        .map(|&v| {
            let ours = Footprint::of(config, v);
            let dir = ours.config_dir.display();
            match hv.pool_mode(&ours.config_pool, &ours.config_dir) {
                Ok(None) => finding(
                    Level::Note,
                    "config dir",
                    format!(
                        "{dir} has no pool {} yet; create makes it",
                        ours.config_pool
                    ),
                ),
                Ok(Some(mode)) if mode & 0o005 == 0o005 => finding(
                    Level::Ok,
                    "config dir",
                    format!("{dir} (pool {}, mode {mode:04o})", ours.config_pool),
                ),
                Ok(Some(mode)) => finding(
                    Level::Fail,
                    "config dir",
                    format!(
                        "{dir} (pool {}) has mode {mode:04o}: qemu's user cannot read it; \
                         `chmod o+rx` it there",
                        ours.config_pool
                    ),
                ),
                Err(e) => finding(Level::Fail, "config dir", format!("{e:#}")),
            }
        })
        .collect()
}

/// Whether qemu's user can read the config dirs.
fn config_dir(config: &Config) -> Finding {
    let root = &config.config_root;
    match (root.is_dir(), first_closed_dir(root)) {
        (false, _) => finding(
            Level::Note,
            "config dir",
            format!("{} does not exist yet; create makes it", root.display()),
        ),
        (true, None) => finding(
            Level::Ok,
            "config dir",
            format!("{} is readable by qemu's user", root.display()),
        ),
        (true, Some(p)) => finding(
            Level::Fail,
            "config dir",
            format!(
                "{} is closed to qemu's user: `chmod o+rx {}` so the 9p share can be read",
                p.display(),
                p.display()
            ),
        ),
    }
}

/// The base image a create would use there (see [`base_image_on`]), or why there is none.
fn base_image(hv: &Hypervisor, config: &Config) -> Finding {
    match base_image_on(hv, config) {
        Ok(base) => finding(
            Level::Ok,
            "base image",
            format!(
                "{} ({}, {} MiB virtual{})",
                base.path.display(),
                base.format,
                base.size >> 20,
                base.sha256
                    .as_deref()
                    .map(|s| format!(", SHA-256 {}", short(s)))
                    .unwrap_or_default()
            ),
        ),
        Err(e) => finding(Level::Fail, "base image", format!("{e:#}")),
    }
}

/// The VLAN networks of `vlans` and the public network, as create checks them.
fn attachments(hv: &Hypervisor, config: &Config, vlans: &[Vlan]) -> Vec<Finding> {
    let mut sides: Vec<(&'static str, &str, Attachment)> = vlans
        .iter()
        .map(|v| {
            let plan = Plan::new(config, *v, VirtType::Qemu);
            ("vlan network", "vlan", plan.private_nic.attachment)
        })
        .collect();
    sides.push(("public network", "public", config.public_attachment.clone()));
    sides
        .into_iter()
        .map(
            |(item, side, att)| match attachment::check(hv, &att, side) {
                Ok(found) => finding(Level::Ok, item, found),
                Err(e) => finding(Level::Fail, item, format!("{e:#}")),
            },
        )
        .collect()
}

/// kvm or qemu, and why.
fn kvm_or_qemu(hv: &Hypervisor, config: &Config) -> Finding {
    let choice = virt_type::choose(
        config.virt_type,
        hv,
        &config.base_image,
        &config.lock_dir,
        true,
    );
    let level = if choice.virt_type == VirtType::Kvm {
        Level::Ok
    } else {
        Level::Note
    };
    finding(level, "virt type", choice.reason)
}

/// Which clients every headnode serves, and how (what the base image must carry for it).
fn boot_modes() -> Finding {
    finding(
        Level::Ok,
        "boot modes",
        format!(
            "BIOS: {BIOS_LOADER} over TFTP; UEFI (arch 7, 9), Secure Boot included: \
             {UEFI_LOADER} (Microsoft-signed shim) then Debian-signed GRUB over TFTP; UEFI HTTP \
             Boot (arch 16): the same chain from nginx. Needs shim-signed and \
             grub-efi-amd64-signed in the base image (`make image` has them)"
        ),
    )
}

/// The switch of the kernel's same-page merging.
const KSM_RUN: &str = "/sys/kernel/mm/ksm/run";

/// Whether the kernel merges identical pages (KSM) across headnodes: they all boot one base
/// image, so much of their memory is the same. `run` is the kernel's switch.
fn memory_sharing(run: &Path) -> Finding {
    const ITEM: &str = "memory sharing";
    match std::fs::read_to_string(run).map(|s| s.trim().to_owned()) {
        Ok(on) if on == "1" => finding(
            Level::Ok,
            ITEM,
            "KSM is on: headnodes made from one base image share their identical pages",
        ),
        Ok(state) => finding(
            Level::Note,
            ITEM,
            format!(
                "KSM is off ({} = {state}): `echo 1 > {}` as root (or enable ksmtuned) lets \
                 headnodes made from one base image share their identical pages; it costs \
                 some CPU to scan",
                run.display(),
                run.display()
            ),
        ),
        Err(_) => finding(
            Level::Note,
            ITEM,
            format!(
                "this kernel has no KSM ({} is missing): each headnode's memory is its own",
                run.display()
            ),
        ),
    }
}

/// The report as text, one line per finding.
pub fn render(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Note => "note",
                Level::Fail => "FAIL",
            };
            format!("{tag}  {:<14} {}\n", f.item, f.text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sharing_reads_the_kernel_switch() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let missing = memory_sharing(&run);
        assert_eq!(missing.level, Level::Note);
        assert!(missing.text.contains("no KSM"), "{}", missing.text);
        std::fs::write(&run, "0\n").unwrap();
        let off = memory_sharing(&run);
        assert_eq!(off.level, Level::Note);
        assert!(
            off.text.contains(&format!("`echo 1 > {}`", run.display())),
            "{}",
            off.text
        );
        std::fs::write(&run, "1\n").unwrap();
        assert_eq!(memory_sharing(&run).level, Level::Ok);
    }

    #[test]
    fn closed_directories_are_found() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = root.path().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        for p in [root.path().join("a"), dir.clone()] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // tempdir's parents (/tmp) are open on any normal system.
        assert_eq!(first_closed_dir(&dir), None);
        std::fs::set_permissions(
            root.path().join("a"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        assert_eq!(first_closed_dir(&dir), Some(root.path().join("a")));
    }
}
