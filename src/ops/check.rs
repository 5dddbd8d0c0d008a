/*!
`mkheadnode check`: what the host looks like from mkheadnode's point of view, and what to do
about each problem. It changes nothing.
*/

use crate::host::apparmor;
use crate::host::hypervisor::Hypervisor;
use crate::host::images::base_image_info;
use crate::model::config::{Attachment, Config};
use crate::model::plan::Plan;
use crate::model::vlan::Vlan;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
pub fn first_closed_dir(dir: &Path) -> Option<std::path::PathBuf> {
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
pub fn run(config: &Config, hv: Result<&Hypervisor, String>, vlans: &[Vlan]) -> Vec<Finding> {
    let mut out = Vec::new();
    let hv = match hv {
        Ok(hv) => {
            out.push(finding(
                Level::Ok,
                "libvirt",
                format!("connected to {}", hv.uri()),
            ));
            Some(hv)
        }
        Err(why) => {
            out.push(finding(Level::Fail, "libvirt", why));
            None
        }
    };

    let kernel_aa = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false);
    let models = hv
        .and_then(|h| h.security_models().ok())
        .unwrap_or_default();
    out.push(finding(
        Level::Ok,
        "security",
        format!(
            "AppArmor {} in the kernel; libvirt security drivers: {}",
            if kernel_aa { "enabled" } else { "not enabled" },
            if models.is_empty() {
                "none reported".to_string()
            } else {
                models.join(", ")
            }
        ),
    ));
    let rule = apparmor::rule(&config.config_root);
    let path = &config.apparmor_abstraction;
    out.push(match std::fs::read_to_string(path) {
        Ok(text) if apparmor::contains_rule(&text, &rule) => {
            finding(Level::Ok, "apparmor", format!("{} grants `{rule}`", path.display()))
        }
        Ok(_) => finding(
            Level::Note,
            "apparmor",
            format!("{} lacks `{rule}`; create adds it (libvirt's per-domain profile also covers the share)", path.display()),
        ),
        Err(_) => finding(Level::Ok, "apparmor", format!("{} absent: AppArmor not in use for libvirt", path.display())),
    });

    out.push(
        match (
            config.config_root.is_dir(),
            first_closed_dir(&config.config_root),
        ) {
            (false, _) => finding(
                Level::Note,
                "config dir",
                format!(
                    "{} does not exist yet; create makes it",
                    config.config_root.display()
                ),
            ),
            (true, None) => finding(
                Level::Ok,
                "config dir",
                format!(
                    "{} is readable by qemu's user",
                    config.config_root.display()
                ),
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
        },
    );

    if let Some(hv) = hv {
        out.push(match base_image_info(hv, &config.base_image) {
            Ok((size, format)) => finding(
                Level::Ok,
                "base image",
                format!(
                    "{} ({format}, {} MiB virtual)",
                    config.base_image.display(),
                    size >> 20
                ),
            ),
            Err(e) => finding(Level::Fail, "base image", format!("{e:#}")),
        });
        let mut sides: Vec<(&'static str, Attachment)> = vlans
            .iter()
            .map(|v| {
                (
                    "vlan network",
                    Plan::new(config, *v, crate::model::plan::VirtType::Qemu)
                        .private_nic
                        .attachment,
                )
            })
            .collect();
        sides.push(("public network", config.public_attachment.clone()));
        for (item, att) in sides {
            out.push(match &att {
                Attachment::Network { name } => match hv.network_active(name) {
                    Ok(Some(true)) => finding(Level::Ok, item, format!("libvirt network {name} is active")),
                    Ok(Some(false)) => finding(Level::Fail, item, format!("libvirt network {name} is not active: `virsh net-start {name}`")),
                    Ok(None) => finding(Level::Fail, item, format!("libvirt network {name} does not exist: define it or change the attachment")),
                    Err(e) => finding(Level::Fail, item, format!("{e:#}")),
                },
                Attachment::Bridge { name } | Attachment::Ovs { name } => {
                    if Path::new("/sys/class/net").join(name).exists() {
                        finding(Level::Ok, item, format!("bridge {name} exists"))
                    } else {
                        finding(Level::Fail, item, format!("bridge {name} does not exist on this host"))
                    }
                }
            });
        }
        let choice = crate::host::virt_type::choose(
            config.virt_type,
            hv,
            &config.base_image,
            &config.lock_dir,
            true,
        );
        let level = if choice.virt_type == crate::model::plan::VirtType::Kvm {
            Level::Ok
        } else {
            Level::Note
        };
        out.push(finding(level, "virt type", choice.reason));
    }
    out
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
