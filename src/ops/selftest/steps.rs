/*!
A selftest's steps, in order, and those that drive the headnode the way an operator would:
create and wait, add the install profile, arm the nodes, power them on, reboot the headnode.
*/

use crate::error::{failure, kind_of, Kind};
use crate::host::lab;
use crate::model::console::BOOT_SIGN;
use crate::model::machines;
use crate::model::selftest::PROFILE;
use crate::ops::create::CreateOptions;
use crate::ops::install::InstallRequest;
use crate::ops::profile::{load_source, Publication};
use crate::ops::selftest::checks::{shell, with_log};
use crate::ops::selftest::lab::{BMC_PASSWORD, BMC_PORT};
use crate::ops::selftest::Run;
use crate::ops::wait::{self, Watched};
use crate::render::seed::{ready_marker, EARLY_SETUP_SIGN, SETUP_DONE, UNITS_CURRENT};
use crate::render::selftest as doc;
use std::time::{Duration, Instant};
use virt::sys;

/// The note of a headnode set up by its image's early set-up, before cloud-init, from unit files
/// systemd had read at boot (no reload on the way to serving).
pub const EARLY_NOTE: &str =
    "set up from the seed before cloud-init (the image's mkheadnode-early), its units current";

/// The note of a headnode whose image set it up early, but whose unit files differed from the
/// seed's, so that systemd was reloaded first.
const EARLY_RELOADED_NOTE: &str =
    "set up from the seed before cloud-init (the image's mkheadnode-early), but systemd had to be \
     reloaded: the image's unit files are not the seed's (rebuild it with \
     /usr/share/mkheadnode/build-image.sh) and it is ready seconds later";

/// A step's body: `Ok(None)` passes, `Ok(Some(why))` skips, an error fails.
type Body<'a> = fn(&mut Run<'a>) -> anyhow::Result<Option<String>>;

/// Every step of a run, in order, by the name its row has (the clean-up is [`Run::finish`]).
fn steps<'a>() -> [(&'static str, Body<'a>); 16] {
    [
        (
            "prerequisites (base image, installer, OVMF, VLAN free)",
            Run::prerequisites,
        ),
        ("leftovers of an earlier run removed", Run::leftovers),
        ("isolated networks", Run::networks),
        ("test nodes defined (BIOS, UEFI, Secure Boot)", Run::nodes),
        ("headnode created", Run::create_headnode),
        (
            "headnode ready (boot, cloud-init, PXE stack)",
            Run::headnode_ready,
        ),
        ("install profile added and published", Run::profile),
        ("headnode's share, services and files", Run::headnode_checks),
        (
            "public side: ssh answers, the rest dropped",
            Run::public_side,
        ),
        ("nodes armed for both loaders", Run::arm),
        ("BIOS node powered on through its BMC (IPMI)", Run::power_on),
        (
            "nodes install and fall to their local disks",
            Run::follow_nodes,
        ),
        ("headnode records each node installed", Run::nodes_installed),
        (
            "consoles: Secure Boot as set, bad kernel refused",
            Run::consoles,
        ),
        (
            "headnode's logs: fetches, callbacks, leases",
            Run::headnode_records,
        ),
        ("headnode reboots into a serving stack", Run::reboot),
    ]
}

/// Every step of a run, in order.
pub(super) fn all(run: &mut Run<'_>) {
    for (name, body) in steps() {
        run.step(name, body);
    }
}

impl Run<'_> {
    /// The headnode, created as `mkheadnode <vlan> --machines --bmc-conf` would.
    fn create_headnode(&mut self) -> anyhow::Result<Option<String>> {
        lab::make_dirs(&self.lab.dir, &["cfg", "log"])?;
        lab::write_readable(&self.lab.path("libvirt-qemu"), b"")?;
        let machines = machines::parse(&doc::machines(&self.lab), "the selftest's machines")?;
        let bmc = doc::bmc_conf(&self.lab, BMC_PORT, BMC_PASSWORD, self.ipmi.is_ok());
        let opts = CreateOptions {
            machines: Some(machines),
            bmc_conf: Some(bmc.into_bytes()),
            no_start: false,
        };
        self.session.create(self.opts.vlan, &opts).map(|_| None)
    }

    /// Until the headnode's PXE stack serves; a failure says what to fix by how far it got.
    fn headnode_ready(&mut self) -> anyhow::Result<Option<String>> {
        let plan = self.session.plan(self.opts.vlan);
        let result = wait::until_ready(vec![Watched::local(&plan)], self.opts.ready_timeout, false);
        let log = String::from_utf8_lossy(&std::fs::read(&plan.serial_log).unwrap_or_default())
            .into_owned();
        let Err(e) = result else {
            let current = format!("mkheadnode-setup: {UNITS_CURRENT}");
            self.note = Some(
                if log.contains(EARLY_SETUP_SIGN) && log.contains(&current) {
                    EARLY_NOTE.to_string()
                } else if log.contains(EARLY_SETUP_SIGN) {
                    EARLY_RELOADED_NOTE.to_string()
                } else {
                    "set up by cloud-init (the base image has no early set-up: \
                 /usr/share/mkheadnode/build-image.sh builds one that has, and is ready sooner)"
                        .to_string()
                },
            );
            return Ok(None);
        };
        let image = self.session.config.base_image.display().to_string();
        let phase = wait::phase(&log, &ready_marker(&plan));
        let hint = match phase {
            "starting" | "firmware" => format!(
                "the headnode never started a kernel: is base_image {image} a bootable disk \
                 image? /usr/share/mkheadnode/build-image.sh builds one"
            ),
            "kernel booting" => format!(
                "its kernel booted but cloud-init never ran: does base_image {image} have \
                 cloud-init? /usr/share/mkheadnode/build-image.sh builds one that has"
            ),
            _ => format!(
                "the PXE set-up failed in the guest: does base_image {image} have the PXE \
                 packages (isc-dhcp-server, tftpd-hpa, pxelinux, nginx-light, fcgiwrap, \
                 shim-signed, grub-efi-amd64-signed)? /usr/share/mkheadnode/build-image.sh \
                 builds one that has"
            ),
        };
        // The wait's own timeout message speaks of domains left running: the clean-up removes
        // them here.
        let what = if kind_of(&e) == Kind::Timeout {
            format!(
                "headnode-{} not ready after {} s; its console got as far as: {phase}",
                self.opts.vlan,
                self.opts.ready_timeout.as_secs()
            )
        } else {
            format!("{e:#}")
        };
        Err(with_log(format!("{what}\n{hint}"), &plan.serial_log))
    }

    /// The install profile, staged and added as `mkheadnode profile add` does; the running
    /// headnode must publish it for both loaders.
    fn profile(&mut self) -> anyhow::Result<Option<String>> {
        let src = self.lab.profile_src();
        lab::make_dirs(&src, &[])?;
        for f in ["vmlinuz", "vmlinuz-bad", "initrd.gz"] {
            lab::copy_readable(&self.opts.installer_dir.join(f), &src.join(f))?;
        }
        lab::write_readable(&src.join("pxelinux.cfg"), doc::pxelinux_cfg().as_bytes())?;
        lab::write_readable(&src.join("grub.cfg"), doc::grub_cfg().as_bytes())?;
        let source = load_source(PROFILE, &src)?;
        let (_, publication) = self
            .session
            .profile_add(self.opts.vlan, &source, &mut |_, _| {})?;
        match publication {
            Publication::Now(lines)
                if lines
                    .iter()
                    .any(|l| l.contains("BIOS") && l.contains("UEFI")) =>
            {
                Ok(None)
            }
            other => Err(failure(
                Kind::Other,
                format!("the headnode did not publish the profile for both loaders: {other:?}"),
            )),
        }
    }

    /// Every node armed (`install --all --no-power`): `nodes` shows each armed for the profile
    /// with both loaders, and the TFTP links point at it.
    fn arm(&mut self) -> anyhow::Result<Option<String>> {
        let outcome = self
            .session
            .install(self.opts.vlan, &self.request(true), &|_| {})?;
        if !outcome.failed.is_empty() {
            return Err(failure(
                Kind::Other,
                format!("arming failed for {:?}", outcome.failed),
            ));
        }
        let report = self.report()?;
        let agent = self.agent()?;
        for node in &self.lab.nodes {
            let row = self.row_of(&report, node)?;
            let armed = row["state"] == "armed"
                && ["bios", "uefi"]
                    .iter()
                    .all(|l| row["boot"][l]["profile"] == PROFILE);
            if !armed {
                return Err(failure(
                    Kind::Other,
                    format!("{} is not armed for both loaders: {row}", node.label()),
                ));
            }
            let dashed = node.dashed();
            for (link, target) in [
                (
                    format!("pxelinux.cfg/01-{dashed}"),
                    format!("../{PROFILE}/pxelinux.cfg"),
                ),
                (
                    format!("uefi/01-{dashed}"),
                    format!("../efi/profiles/{PROFILE}"),
                ),
            ] {
                let (_, got) = shell(&agent, &format!("readlink /var/lib/tftpboot/{link}"))?;
                if got.trim() != target {
                    return Err(failure(
                        Kind::Other,
                        format!("{link} points at `{}`, not {target}", got.trim()),
                    ));
                }
            }
        }
        Ok(None)
    }

    /// The install for real: the link tool power-cycles the BIOS node through its virtual BMC;
    /// the UEFI nodes (and the BIOS node where there is no virtual BMC) are started directly.
    fn power_on(&mut self) -> anyhow::Result<Option<String>> {
        let lines = std::sync::Mutex::new(Vec::new());
        let record = |l: &str| {
            lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(l.to_string());
        };
        let ipmi = self.ipmi.is_ok();
        self.powered = Some(Instant::now());
        let outcome = self
            .session
            .install(self.opts.vlan, &self.request(!ipmi), &record)?;
        let lines = lines
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let via_ipmi = lines.iter().filter(|l| l.contains("via ipmi")).count();
        let want = if ipmi {
            self.lab.nodes.iter().filter(|n| n.ipmi).count()
        } else {
            0
        };
        if !outcome.failed.is_empty() || via_ipmi != want {
            return Err(failure(
                Kind::Other,
                format!(
                    "the link tool powered {via_ipmi} node(s) on through IPMI, not {want}:\n{}\n\
                     Is virtualbmc's vbmcd running, and does `vbmc list` show it?",
                    lines.join("\n")
                ),
            ));
        }
        for node in self.lab.nodes.iter().filter(|n| !(n.ipmi && ipmi)) {
            let dom = self
                .session
                .hv
                .find_domain(&node.name)?
                .ok_or_else(|| failure(Kind::NotFound, format!("{} has gone", node.name)))?;
            dom.create().map_err(|e| {
                failure(
                    Kind::Libvirt,
                    format!("starting {}: {}", node.name, e.message()),
                )
            })?;
        }
        Ok(self.ipmi.clone().err())
    }

    /// An install request for every machine with the selftest's profile.
    fn request(&self, no_power: bool) -> InstallRequest {
        InstallRequest {
            profile: PROFILE.into(),
            macs: None,
            dry_run: false,
            no_power,
            jobs: 4,
            timeout: Duration::from_secs(300),
        }
    }

    /// The headnode reboots (through its agent) and its stack serves again without setting
    /// anything up again: the share mounts, the services run, the files are there.
    fn reboot(&mut self) -> anyhow::Result<Option<String>> {
        let log = self.headnode_log();
        let dom = self
            .session
            .hv
            .find_domain(&self.session.plan(self.opts.vlan).domain_name)?
            .ok_or_else(|| failure(Kind::NotFound, "the headnode has gone"))?;
        dom.reboot(sys::VIR_DOMAIN_REBOOT_GUEST_AGENT)
            .map_err(|e| {
                failure(
                    Kind::Libvirt,
                    format!("rebooting the headnode: {}", e.message()),
                )
            })?;
        let start = Instant::now();
        let limit = Duration::from_secs(300);
        loop {
            let text =
                String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
            if text.matches(BOOT_SIGN).count() >= 2 {
                break;
            }
            if start.elapsed() > limit {
                return Err(with_log(
                    "no second kernel within 300 s of the reboot".into(),
                    &log,
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        loop {
            // Blocks until the boot is over: "running", or "degraded" if a unit failed.
            match self
                .agent()
                .and_then(|a| shell(&a, "systemctl is-system-running --wait"))
            {
                Ok((_, state)) if state.trim() == "running" => break,
                Ok((_, state)) => {
                    return Err(with_log(
                        format!("after the reboot the system is {}", state.trim()),
                        &log,
                    ))
                }
                Err(_) if start.elapsed() < limit => std::thread::sleep(Duration::from_secs(1)),
                Err(e) => {
                    return Err(with_log(
                        format!("no guest agent 300 s after the reboot: {e:#}"),
                        &log,
                    ))
                }
            }
        }
        self.headnode_checks()?;
        let text = String::from_utf8_lossy(&std::fs::read(&log)?).into_owned();
        match text.matches(SETUP_DONE).count() {
            1 => Ok(None),
            n => Err(with_log(
                format!("the set-up ran {n} times: it ran again at the reboot"),
                &log,
            )),
        }
    }
}
