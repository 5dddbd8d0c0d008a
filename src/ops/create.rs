/*!
`create` and `rebuild`: make one VLAN's headnode (config dir, AppArmor rule, volumes, domain)
under that VLAN's lock, undoing what was made if a step fails.
*/

use crate::error::{failure, kind_of, Kind};
use crate::host::apparmor;
use crate::host::hostprep;
use crate::host::hypervisor::{state_word, Hypervisor};
use crate::host::images::base_image_info;
use crate::model::config::Attachment;
use crate::model::machines::Machine;
use crate::model::vlan::Vlan;
use crate::ops::report::Reporter;
use crate::ops::session::{owned_domain, Session};
use crate::render::domain_xml;
use crate::render::seed;
use anyhow::Context;
use std::path::Path;

/// Options of `create` (and the create half of `rebuild`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Install these (validated) machines as `machines.txt`.
    pub machines: Option<Vec<Machine>>,
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

impl Session {
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
}
