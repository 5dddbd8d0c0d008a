/*!
The operations an operator runs: create, teardown, rebuild, list and status.

Each works on one VLAN at a time under that VLAN's lock; the bulk forms run the VLANs one
after another, independently, and sum up. A failed create undoes what it made (volumes,
domain) and never touches the config dir's contents. A domain named like ours but without our
metadata is never touched.
*/

pub mod check;
pub mod report;
pub mod wait;

use crate::error::{failure, kind_of, Kind};
use crate::host::apparmor;
use crate::host::hostprep;
use crate::host::hypervisor::{state_word, Hypervisor};
use crate::host::images::base_image_info;
use crate::model::config::{Attachment, Config};
use crate::model::plan::{domain_name, Plan};
use crate::model::vlan::Vlan;
use crate::ops::report::Reporter;
use crate::render::domain_xml::{self, Metadata};
use crate::render::seed;
use anyhow::Context;
use serde::Serialize;
use std::path::Path;

/// Options of `create` (and the create half of `rebuild`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Install these (validated) machines as `machines.txt`.
    pub machines: Option<Vec<crate::model::machines::Machine>>,
    /// Define but do not start.
    pub no_start: bool,
}

/// What `create` did for one VLAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new headnode was defined (and started unless `--no-start`).
    New,
    /// Our headnode already existed; nothing about it was changed.
    Unchanged {
        /// Its libvirt state (`running`, `paused`, `shut off`, ...).
        state: String,
    },
}

/// Everything an operation needs: settings, the libvirt connection, and where to report.
pub struct Session {
    /// The effective configuration.
    pub config: Config,
    /// The libvirt connection.
    pub hv: Hypervisor,
    /// Where progress goes.
    pub out: Reporter,
    /// The operator's virt type choice, decided on first use (teardown never needs it).
    pub virt_choice: crate::model::config::VirtTypeChoice,
    decided: std::sync::OnceLock<crate::host::virt_type::Choice>,
}

/// Undo steps for a create in progress, run in reverse on drop unless disarmed.
struct Undo<'a> {
    hv: &'a Hypervisor,
    out: Reporter,
    vlan: Vlan,
    steps: Vec<UndoStep>,
}

enum UndoStep {
    Volume { pool: String, name: String },
    Domain { name: String },
}

impl Undo<'_> {
    fn disarm(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            let result = match &step {
                UndoStep::Volume { pool, name } => self.hv.delete_volume(pool, name).map(|_| ()),
                UndoStep::Domain { name } => match self.hv.find_domain(name) {
                    Ok(Some(d)) => self.hv.destroy_and_undefine(&d),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
            };
            let what = match &step {
                UndoStep::Volume { pool, name } => format!("volume {name} in pool {pool}"),
                UndoStep::Domain { name } => format!("domain {name}"),
            };
            match result {
                Ok(()) => self
                    .out
                    .step(Some(self.vlan), format!("rolled back: removed {what}")),
                Err(e) => self.out.error(
                    Some(self.vlan),
                    &e.context(format!(
                        "rolling back: could not remove {what}; remove it by hand"
                    )),
                ),
            }
        }
    }
}

fn check_attachment(hv: &Hypervisor, a: &Attachment, side: &str) -> anyhow::Result<()> {
    match a {
        Attachment::Network { name } => match hv.network_active(name)? {
            Some(true) => Ok(()),
            Some(false) => Err(failure(
                Kind::NotFound,
                format!("{side} network `{name}` is defined but not active: start it with `virsh net-start {name}`"),
            )),
            None => Err(failure(
                Kind::NotFound,
                format!("{side} network `{name}` does not exist in libvirt: define it (`virsh net-define`) or change {side}_attachment"),
            )),
        },
        Attachment::Bridge { name } | Attachment::Ovs { name } => {
            if hv.is_local() && !Path::new("/sys/class/net").join(name).exists() {
                return Err(failure(
                    Kind::NotFound,
                    format!("{side} bridge `{name}` does not exist on this host: create it or change {side}_attachment"),
                ));
            }
            Ok(())
        }
    }
}

/// Our metadata on the domain of `vlan`: `Ok(None)` if there is no such domain, an error of
/// kind `Refused` if a domain of that name exists without our metadata.
pub fn owned_domain(
    hv: &Hypervisor,
    vlan: Vlan,
) -> anyhow::Result<Option<(virt::domain::Domain, Metadata)>> {
    let name = domain_name(vlan);
    let Some(dom) = hv.find_domain(&name)? else {
        return Ok(None);
    };
    match hv.metadata(&dom)? {
        Some(meta) => Ok(Some((dom, meta))),
        None => Err(failure(
            Kind::Refused,
            format!(
                "domain {name} exists but was not made by mkheadnode (it has no mkheadnode metadata); \
                 refusing to touch it. Rename or remove it yourself if it should go"
            ),
        )),
    }
}

impl Session {
    /// A session over `hv` with `config`.
    pub fn new(config: Config, hv: Hypervisor, out: Reporter) -> Session {
        Session {
            virt_choice: config.virt_type,
            config,
            hv,
            out,
            decided: std::sync::OnceLock::new(),
        }
    }

    /// kvm or qemu for new headnodes: decided once per session, and said once.
    pub fn virt_type(&self) -> crate::model::plan::VirtType {
        self.decided
            .get_or_init(|| {
                let choice = crate::host::virt_type::choose(
                    self.virt_choice,
                    &self.hv,
                    &self.config.base_image,
                    &self.config.lock_dir,
                    true,
                );
                self.out.step(None, format!("virt type: {}", choice.reason));
                choice
            })
            .virt_type
    }

    /// Plan the headnode of `vlan` with this session's settings.
    pub fn plan(&self, vlan: Vlan) -> Plan {
        Plan::new(&self.config, vlan, self.virt_type())
    }

    /// Create (define and start) the headnode of `vlan`; see the module docs.
    pub fn create(&self, vlan: Vlan, opts: &CreateOptions) -> anyhow::Result<Created> {
        let _lock = hostprep::lock_vlan(&self.config.lock_dir, vlan)?;
        self.create_locked(vlan, opts)
    }

    fn create_locked(&self, vlan: Vlan, opts: &CreateOptions) -> anyhow::Result<Created> {
        let out = self.out;
        let v = Some(vlan);
        let plan = self.plan(vlan);
        let existing = owned_domain(&self.hv, vlan)?;

        let dir = hostprep::ensure_config_dir(&plan.config_dir, opts.machines.as_deref())?;
        if dir.created_dir {
            out.step(
                v,
                format!("created config dir {}", plan.config_dir.display()),
            );
        }
        if dir.created_machines {
            out.step(v, format!("created empty {}", plan.machines_file.display()));
        }
        if dir.installed_machines {
            out.step(
                v,
                format!(
                    "installed machines file as {}",
                    plan.machines_file.display()
                ),
            );
        }
        match apparmor::ensure_rule(&self.config.apparmor_abstraction, &self.config.config_root)? {
            apparmor::Outcome::Added(p) => out.step(
                v,
                format!(
                    "added `{}` to {}",
                    apparmor::rule(&self.config.config_root),
                    p.display()
                ),
            ),
            apparmor::Outcome::AlreadyPresent(p) => {
                out.detail(v, format!("AppArmor rule already in {}", p.display()))
            }
            apparmor::Outcome::NotInUse(p) => out.step(
                v,
                format!(
                    "note: no {}, so AppArmor is not in use for libvirt; nothing to add",
                    p.display()
                ),
            ),
        }

        if let Some((dom, _)) = existing {
            let state = state_word(&dom);
            out.step(
                v,
                format!(
                    "{} already exists ({state}); nothing changed",
                    plan.domain_name
                ),
            );
            return Ok(Created::Unchanged { state });
        }

        check_attachment(&self.hv, &plan.private_nic.attachment, "vlan")?;
        check_attachment(&self.hv, &plan.public_nic.attachment, "public")?;
        let (base_size, base_format) = base_image_info(&self.hv, &plan.base_image)?;
        let pool = self.hv.ensure_pool(&plan.pool, &plan.pool_dir)?;
        for name in [&plan.disk_volume, &plan.seed_volume] {
            if self.hv.find_volume(&pool, name)?.is_some() {
                return Err(failure(
                    Kind::Refused,
                    format!(
                        "volume {name} already exists in pool {} but no headnode uses it (left by an \
                         interrupted run?); check it and remove it with `virsh vol-delete {name} --pool {}`",
                        plan.pool, plan.pool
                    ),
                ));
            }
        }

        let mut undo = Undo {
            hv: &self.hv,
            out,
            vlan,
            steps: Vec::new(),
        };
        let capacity = (plan.disk_gib << 30).max(base_size);
        let xml = domain_xml::overlay_volume(
            &plan.disk_volume,
            capacity,
            &plan.base_image,
            &base_format,
        )?;
        self.hv.create_volume(&pool, &plan.disk_volume, &xml)?;
        undo.steps.push(UndoStep::Volume {
            pool: plan.pool.clone(),
            name: plan.disk_volume.clone(),
        });
        out.step(
            v,
            format!(
                "created overlay {} on {}",
                plan.disk_path().display(),
                plan.base_image.display()
            ),
        );

        let image = seed::iso(&seed::files(&plan)?)?;
        let xml = domain_xml::seed_volume(&plan.seed_volume, image.len() as u64)?;
        let vol = self.hv.create_volume(&pool, &plan.seed_volume, &xml)?;
        undo.steps.push(UndoStep::Volume {
            pool: plan.pool.clone(),
            name: plan.seed_volume.clone(),
        });
        self.hv
            .write_volume(&vol, &image)
            .with_context(|| format!("writing seed {}", plan.seed_volume))?;
        out.step(
            v,
            format!(
                "wrote cloud-init seed {} ({} KiB)",
                plan.seed_path().display(),
                image.len() / 1024
            ),
        );

        if self.hv.is_local() {
            if let Some(dir) = plan.serial_log.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating log dir {}", dir.display()))?;
            }
        }
        let dom = self
            .hv
            .define(&plan.domain_name, &domain_xml::domain(&plan)?)?;
        undo.steps.push(UndoStep::Domain {
            name: plan.domain_name.clone(),
        });
        dom.set_autostart(true).context("turning autostart on")?;
        out.step(
            v,
            format!(
                "defined {} ({}, autostart on)",
                plan.domain_name, plan.virt_type
            ),
        );
        if !opts.no_start {
            dom.create()
                .with_context(|| format!("starting {}", plan.domain_name))?;
            out.step(v, format!("started {}", plan.domain_name));
        }
        undo.disarm();
        Ok(Created::New)
    }

    /// Stop and remove the headnode of `vlan` with its volumes; with `purge`, its config dir too.
    pub fn teardown(&self, vlan: Vlan, purge: bool) -> anyhow::Result<()> {
        let _lock = hostprep::lock_vlan(&self.config.lock_dir, vlan)?;
        self.teardown_locked(vlan, purge)
    }

    fn teardown_locked(&self, vlan: Vlan, purge: bool) -> anyhow::Result<()> {
        let v = Some(vlan);
        let Some((dom, meta)) = owned_domain(&self.hv, vlan)? else {
            return Err(failure(
                Kind::NotFound,
                format!(
                    "there is no headnode for VLAN {vlan} (no domain {})",
                    domain_name(vlan)
                ),
            ));
        };
        self.hv.destroy_and_undefine(&dom)?;
        self.out
            .step(v, format!("removed domain {}", domain_name(vlan)));
        for name in [&meta.disk_volume, &meta.seed_volume] {
            if self.hv.delete_volume(&meta.pool, name)? {
                self.out.step(v, format!("deleted volume {name}"));
            }
        }
        if purge && meta.config_dir.exists() {
            std::fs::remove_dir_all(&meta.config_dir)
                .with_context(|| format!("removing config dir {}", meta.config_dir.display()))?;
            self.out.step(
                v,
                format!("removed config dir {}", meta.config_dir.display()),
            );
        } else if !purge {
            self.out
                .detail(v, format!("kept config dir {}", meta.config_dir.display()));
        }
        Ok(())
    }

    /// Tear down (keeping the config dir) and create again; MACs stay the same.
    pub fn rebuild(&self, vlan: Vlan, opts: &CreateOptions) -> anyhow::Result<Created> {
        let _lock = hostprep::lock_vlan(&self.config.lock_dir, vlan)?;
        match self.teardown_locked(vlan, false) {
            Ok(()) => {}
            Err(e) if kind_of(&e) == Kind::NotFound => {
                self.out
                    .step(Some(vlan), "no headnode to tear down; creating one");
            }
            Err(e) => return Err(e),
        }
        self.create_locked(vlan, opts)
    }

    /// Status of every headnode of ours.
    pub fn list(&self) -> anyhow::Result<Vec<Status>> {
        self.hv
            .headnodes()?
            .iter()
            .map(|(d, m)| status_of(&self.hv, d, m))
            .collect()
    }

    /// Status of the headnode of `vlan`.
    pub fn status(&self, vlan: Vlan) -> anyhow::Result<Status> {
        match owned_domain(&self.hv, vlan)? {
            Some((d, m)) => status_of(&self.hv, &d, &m),
            None => Err(failure(
                Kind::NotFound,
                format!("there is no headnode for VLAN {vlan}"),
            )),
        }
    }
}

/// One headnode as `list` and `status` report it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// The VLAN.
    pub vlan: u16,
    /// Domain name.
    pub domain: String,
    /// libvirt state.
    pub state: String,
    /// kvm or qemu.
    pub virt_type: String,
    /// MAC of NIC 1 (VLAN, guest eth0).
    pub private_mac: String,
    /// MAC of NIC 2 (public, guest eth1).
    pub public_mac: String,
    /// Config dir shared as /etc/moc.
    pub config_dir: String,
    /// Overlay disk path.
    pub disk: String,
    /// Whether libvirt starts it with the host.
    pub autostart: bool,
}

fn status_of(
    hv: &Hypervisor,
    dom: &virt::domain::Domain,
    meta: &Metadata,
) -> anyhow::Result<Status> {
    let facts = domain_xml::live_facts(&hv.xml(dom)?)?;
    Ok(Status {
        vlan: meta.vlan.id(),
        domain: dom.name()?,
        state: state_word(dom),
        virt_type: facts.virt_type,
        private_mac: meta.private_mac.to_string(),
        public_mac: meta.public_mac.to_string(),
        config_dir: meta.config_dir.display().to_string(),
        disk: facts.disk_sources.first().cloned().unwrap_or_default(),
        autostart: dom.autostart().unwrap_or(false),
    })
}

/// Render statuses as an aligned table.
pub fn table(rows: &[Status]) -> String {
    let header = [
        "VLAN",
        "DOMAIN",
        "STATE",
        "VIRT",
        "PRIVATE MAC",
        "PUBLIC MAC",
        "CONFIG DIR",
        "DISK",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|s| {
            [
                s.vlan.to_string(),
                s.domain.clone(),
                s.state.clone(),
                s.virt_type.clone(),
                s.private_mac.clone(),
                s.public_mac.clone(),
                s.config_dir.clone(),
                s.disk.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cols: Vec<&str>| {
        let mut s = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let row = Status {
            vlan: 42,
            domain: "headnode-42".into(),
            state: "running".into(),
            virt_type: "qemu".into(),
            private_mac: "52:54:00:4d:00:2a".into(),
            public_mac: "52:54:00:4d:10:2a".into(),
            config_dir: "/var/lib/headnode-config/42".into(),
            disk: "/d.qcow2".into(),
            autostart: true,
        };
        let t = table(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("DOMAIN"), lines[1].find("headnode-42"));
        assert_eq!(lines[0].find("DISK"), lines[1].find("/d.qcow2"));
    }
}
