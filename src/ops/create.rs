/*!
`create` and `rebuild`: make one VLAN's headnode under that VLAN's lock, step by step (see
`create_locked`): the config dir, the AppArmor rule, the prerequisites, the storage pool, the
overlay disk, the cloud-init seed, then the domain, defined and started. A failed step undoes
what the steps before it made (volumes, domain) and never touches the config dir's contents.

Before each volume and the domain is made, a state record says so (see
[`crate::model::intent`]); the records go once the domain owns what they name. Ctrl-C or
SIGTERM stops a create after the step in progress ([`checkpoint`]), which then rolls back as a
failed one does. A run killed outright leaves its records: the next create removes the
leftovers they name (or, if the domain was defined, finishes the create), and so does a
teardown.
*/

use crate::error::{failure, kind_of, Kind};
use crate::host::apparmor;
use crate::host::attachment;
use crate::host::config_pool;
use crate::host::hostprep;
use crate::host::hypervisor::state_word;
use crate::host::images::BaseImage;
use crate::host::records::Records;
use crate::model::footprint::{Footprint, POOL_MODE};
use crate::model::image::short;
use crate::model::intent::Intent;
use crate::model::machines::Machine;
use crate::model::plan::Plan;
use crate::model::vlan::Vlan;
use crate::ops::checkpoint;
use crate::ops::session::{owned_domain, Session};
use crate::ops::undo::Undo;
use crate::render::domain_xml;
use crate::render::seed;
use anyhow::Context;
use virt::domain::Domain;
use virt::storage_pool::StoragePool;

/// Options of `create` (and the create half of `rebuild`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Install these (validated) machines as `machines.txt`.
    pub machines: Option<Vec<Machine>>,
    /// Install this as `bmc.conf` (root and qemu's group, mode 0640).
    pub bmc_conf: Option<Vec<u8>>,
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

impl Session {
    /// Create (define and start) the headnode of `vlan`; see the module docs.
    pub fn create(&self, vlan: Vlan, opts: &CreateOptions) -> anyhow::Result<Created> {
        checkpoint::not_interrupted(vlan)?;
        let _lock = hostprep::lock_vlan(&self.config.lock_dir, vlan)?;
        self.create_locked(vlan, opts)
    }

    /// Tear down (keeping the config dir) and create again; MACs stay the same.
    pub fn rebuild(&self, vlan: Vlan, opts: &CreateOptions) -> anyhow::Result<Created> {
        checkpoint::not_interrupted(vlan)?;
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

    /// The steps of a create, in order, with the VLAN's lock held. The host is prepared even
    /// for a headnode that exists (so a new `--machines` file is installed); everything after
    /// that is only for a new one. Each step is a [`checkpoint`].
    fn create_locked(&self, vlan: Vlan, opts: &CreateOptions) -> anyhow::Result<Created> {
        let plan = self.plan(vlan);
        let records = Records::of(&self.config.state_dir, vlan);
        let existing = owned_domain(&self.hv, &self.config, vlan)?;
        self.make_config_dir(&plan, opts.machines.as_deref())?;
        if let Some(bmc) = &opts.bmc_conf {
            self.install_bmc_conf(&plan, bmc)?;
        }
        checkpoint::after(vlan, "config-dir")?;
        self.allow_config_share(vlan)?;
        checkpoint::after(vlan, "apparmor")?;
        if let Some((dom, _)) = existing {
            return self.leave_existing(&plan, &dom, &records, opts.no_start);
        }
        let (plan, base) = self.check_prerequisites(plan)?;
        let pool = self.pool_without_leftovers(&plan, &records)?;
        checkpoint::after(vlan, "pool")?;
        let mut undo = Undo::new(&self.hv, self.out, vlan, &records);
        self.make_overlay(&plan, &pool, base, &mut undo)?;
        self.write_seed(&plan, &pool, &mut undo)?;
        self.define_and_start(&plan, opts.no_start, &mut undo)?;
        undo.disarm();
        checkpoint::passed(vlan, "done");
        // The domain owns its volumes now: the records have done their work.
        for intent in self.matching_records(vlan, &records, &self.footprint(vlan))? {
            records.remove(&intent)?;
        }
        Ok(Created::New)
    }

    /// What the configuration gives `vlan`'s headnode on the host.
    pub(super) fn footprint(&self, vlan: Vlan) -> Footprint {
        Footprint::of(&self.config, vlan)
    }

    /// The config dir shared into the guest as `/etc/moc`, with its `machines.txt`.
    fn make_config_dir(&self, plan: &Plan, machines: Option<&[Machine]>) -> anyhow::Result<()> {
        let v = Some(plan.vlan);
        let dir = if self.hv.is_local() {
            hostprep::ensure_config_dir(&plan.config_dir, machines)?
        } else {
            config_pool::ensure(&self.hv, &self.footprint(plan.vlan), machines)?
        };
        if dir.created_dir {
            self.out.step(
                v,
                format!("created config dir {}", plan.config_dir.display()),
            );
        }
        if dir.created_machines {
            self.out
                .step(v, format!("created empty {}", plan.machines_file.display()));
        }
        if dir.installed_machines {
            self.out.step(
                v,
                format!(
                    "installed machines file as {}",
                    plan.machines_file.display()
                ),
            );
        }
        Ok(())
    }

    /// `bmc.conf` in the config dir, readable by qemu's group only.
    fn install_bmc_conf(&self, plan: &Plan, contents: &[u8]) -> anyhow::Result<()> {
        let gid = self.hv.qemu_gid()?;
        if self.hv.is_local() {
            hostprep::install_bmc_conf(&plan.config_dir, contents, gid)?;
        } else {
            config_pool::install_bmc_conf(&self.hv, &self.footprint(plan.vlan), contents, gid)?;
        }
        self.out.step(
            Some(plan.vlan),
            format!(
                "installed BMC credentials as {} (root:{gid}, mode 0640)",
                plan.config_dir.join("bmc.conf").display()
            ),
        );
        Ok(())
    }

    /// The AppArmor rule that lets qemu read the config dirs, where AppArmor is in use.
    fn allow_config_share(&self, vlan: Vlan) -> anyhow::Result<()> {
        let (out, v) = (self.out, Some(vlan));
        let config = &self.config;
        if !self.hv.is_local() {
            out.step(v, apparmor::remote_note(&self.hv.security_models()?));
            return Ok(());
        }
        match apparmor::ensure_rule(
            &config.apparmor_abstraction,
            &config.config_root,
            &config.lock_dir,
        )? {
            apparmor::Outcome::Added(p) => out.step(
                v,
                format!(
                    "added `{}` to {}",
                    apparmor::rule(&config.config_root),
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
        Ok(())
    }

    /// Our headnode exists already: say so and change nothing, unless an earlier create was
    /// stopped after defining it (its records say so): then finish that create, starting it
    /// unless `no_start`.
    fn leave_existing(
        &self,
        plan: &Plan,
        dom: &Domain,
        records: &Records,
        no_start: bool,
    ) -> anyhow::Result<Created> {
        let (v, name) = (Some(plan.vlan), &plan.domain_name);
        let left = self.matching_records(plan.vlan, records, &self.footprint(plan.vlan))?;
        let was_being_created = left.iter().any(|i| matches!(i, Intent::Domain { .. }));
        if was_being_created && !no_start {
            self.finish_start(plan.vlan, dom, name)?;
        }
        for intent in &left {
            records.remove(intent)?;
        }
        if was_being_created {
            return Ok(Created::New);
        }
        let state = state_word(dom);
        self.out.step(
            v,
            format!("{name} already exists ({state}); nothing changed"),
        );
        Ok(Created::Unchanged { state })
    }

    /// Start `dom`, which an interrupted create defined: from shut off, or from paused (where
    /// libvirt leaves a start whose client went away mid-way).
    fn finish_start(&self, vlan: Vlan, dom: &Domain, name: &str) -> anyhow::Result<()> {
        let state = state_word(dom);
        let started = match state.as_str() {
            "shut off" | "crashed" => dom.create().map(|_| ()),
            "paused" => dom.resume().map(|_| ()),
            _ => return Ok(()),
        };
        // libvirt may still have been finishing the start the killed run asked for.
        if let Err(e) = started {
            if state_word(dom) != "running" {
                return Err(e).with_context(|| format!("starting {name}"));
            }
        }
        self.out.step(
            Some(vlan),
            format!("started {name} ({state} before): an interrupted create had defined it"),
        );
        Ok(())
    }

    /// What must be there before anything is made: both NICs' networks or bridges, and the
    /// base image (see [`Session::base_image`]), which the plan then names with its checksum.
    fn check_prerequisites(&self, mut plan: Plan) -> anyhow::Result<(Plan, BaseImage)> {
        attachment::check(&self.hv, &plan.private_nic.attachment, "vlan")?;
        attachment::check(&self.hv, &plan.public_nic.attachment, "public")?;
        let base = self.base_image(false)?;
        plan.base_image.clone_from(&base.path);
        plan.base_sha256.clone_from(&base.sha256);
        Ok((plan, base))
    }

    /// The storage pool, made if needed, without the volumes an interrupted run of ours left
    /// (its state records name them). It refuses to go on if the pool holds volumes of this
    /// headnode that no record names: they are somebody's to look at, not ours to remove.
    fn pool_without_leftovers(
        &self,
        plan: &Plan,
        records: &Records,
    ) -> anyhow::Result<StoragePool> {
        let (pool, _) = self.hv.ensure_pool(&plan.pool, &plan.pool_dir, POOL_MODE)?;
        let left = self.matching_records(plan.vlan, records, &self.footprint(plan.vlan))?;
        let removed = self.clear_leftovers(plan.vlan, records, &left)?;
        if removed > 0 {
            self.out.step(
                Some(plan.vlan),
                format!("removed {removed} volume(s) an interrupted run had left"),
            );
        }
        for name in [&plan.disk_volume, &plan.seed_volume] {
            if self.hv.find_volume(&pool, name)?.is_some() {
                return Err(failure(
                    Kind::Refused,
                    format!(
                        "volume {name} already exists in pool {} but no headnode uses it and no \
                         state record of mkheadnode's says it made it; check it and remove it \
                         with `virsh vol-delete {name} --pool {}`",
                        plan.pool, plan.pool
                    ),
                ));
            }
        }
        Ok(pool)
    }

    /// The headnode's disk: a qcow2 overlay on the base image, at least as large as it.
    fn make_overlay(
        &self,
        plan: &Plan,
        pool: &StoragePool,
        base: BaseImage,
        undo: &mut Undo,
    ) -> anyhow::Result<()> {
        let capacity = (plan.disk_gib << 30).max(base.size);
        let xml =
            domain_xml::overlay_volume(&plan.disk_volume, capacity, &base.path, &base.format)?;
        undo.record(&Intent::volume(
            &self.footprint(plan.vlan),
            &plan.disk_volume,
        ))?;
        checkpoint::after(plan.vlan, "overlay-record")?;
        self.hv.create_volume(pool, &plan.disk_volume, &xml)?;
        self.out.step(
            Some(plan.vlan),
            format!(
                "created overlay {} on {}{}",
                plan.disk_path().display(),
                base.path.display(),
                base.sha256
                    .as_deref()
                    .map(|s| format!(" (SHA-256 {})", short(s)))
                    .unwrap_or_default()
            ),
        );
        checkpoint::after(plan.vlan, "overlay")
    }

    /// The cloud-init seed, rendered, packed as an ISO image and written into its volume.
    fn write_seed(&self, plan: &Plan, pool: &StoragePool, undo: &mut Undo) -> anyhow::Result<()> {
        let image = seed::iso(&seed::files(plan)?)?;
        let xml = domain_xml::raw_volume(&plan.seed_volume, image.len() as u64)?;
        undo.record(&Intent::volume(
            &self.footprint(plan.vlan),
            &plan.seed_volume,
        ))?;
        checkpoint::after(plan.vlan, "seed-record")?;
        let vol = self.hv.create_volume(pool, &plan.seed_volume, &xml)?;
        checkpoint::after(plan.vlan, "seed-volume")?;
        self.hv
            .write_volume(&vol, &image)
            .with_context(|| format!("writing seed {}", plan.seed_volume))?;
        self.out.step(
            Some(plan.vlan),
            format!(
                "wrote cloud-init seed {} ({} KiB)",
                plan.seed_path().display(),
                image.len() / 1024
            ),
        );
        checkpoint::after(plan.vlan, "seed")
    }

    /// The domain, defined with autostart on, and started unless `no_start`.
    fn define_and_start(&self, plan: &Plan, no_start: bool, undo: &mut Undo) -> anyhow::Result<()> {
        let v = Some(plan.vlan);
        if self.hv.is_local() {
            if let Some(dir) = plan.serial_log.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating log dir {}", dir.display()))?;
            }
        }
        let xml = domain_xml::domain(plan)?;
        undo.record(&Intent::domain(&self.footprint(plan.vlan)))?;
        checkpoint::after(plan.vlan, "domain-record")?;
        let dom = self.hv.define(&plan.domain_name, &xml)?;
        dom.set_autostart(true).context("turning autostart on")?;
        self.out.step(
            v,
            format!(
                "defined {} ({}, autostart on)",
                plan.domain_name, plan.virt_type
            ),
        );
        checkpoint::after(plan.vlan, "define")?;
        if !no_start {
            dom.create()
                .with_context(|| format!("starting {}", plan.domain_name))?;
            self.out.step(v, format!("started {}", plan.domain_name));
        }
        checkpoint::after(plan.vlan, "start")
    }
}
