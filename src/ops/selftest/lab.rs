/*!
Making and removing a selftest's lab: what must be there before anything is made, the
networks, the test nodes and their virtual BMC, and the clean-up that removes all of it by
name (also what an earlier, killed or `--keep` run of the same VLAN left).
*/

use crate::error::{failure, kind_of, Kind};
use crate::host::hostprep;
use crate::host::lab;
use crate::model::footprint::domain_name;
use crate::model::selftest::{Firmware, INSTALLER_FILES};
use crate::ops::selftest::{self, Run};
use crate::render::selftest as doc;
use std::net::Ipv4Addr;
use std::path::Path;

/// The virtual BMC's IPMI port and password (on the lab's isolated bridge only).
pub(super) const BMC_PORT: u16 = 6230;
/// The virtual BMC's password.
pub(super) const BMC_PASSWORD: &str = "selftest-secret";

/// Size of a BIOS node's empty disk.
const EMPTY_DISK: u64 = 1 << 30;

impl Run<'_> {
    /// What must be there before anything is made: this machine, the base image, the test
    /// installer, OVMF, the VLAN free of any headnode of the operator's, and no other selftest
    /// of this VLAN running. Each missing piece is named with what to do.
    pub(super) fn prerequisites(&mut self) -> anyhow::Result<Option<String>> {
        let hv = &self.session.hv;
        selftest::on_this_machine(hv.uri())?;
        let image = &self.session.config.base_image;
        if !image.is_file() {
            return Err(failure(
                Kind::NotFound,
                format!(
                    "the base image {} does not exist: build it with \
                     /usr/share/mkheadnode/build-image.sh (`make image` in the source tree), or \
                     set base_image",
                    image.display()
                ),
            ));
        }
        self.installer_files()?;
        ovmf_files(&self.lab.ovmf_dir)?;
        self.vlan_is_free()?;
        let lock = self.lock_path();
        self._lock = Some(lab::try_lock(
            &lock,
            &format!("a selftest of VLAN {}", self.opts.vlan),
        )?);
        Ok(None)
    }

    /// The test installer's files, each named if absent.
    fn installer_files(&self) -> anyhow::Result<()> {
        let dir = &self.opts.installer_dir;
        let missing: Vec<&str> = INSTALLER_FILES
            .into_iter()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let base = self
            .session
            .config
            .base_image
            .parent()
            .unwrap_or(Path::new("/"))
            .display()
            .to_string();
        Err(failure(
            Kind::NotFound,
            format!(
                "the test installer in {} lacks {}: build it with `OUT_DIR={base} \
                 /usr/share/mkheadnode/build-installer.sh` (`make image` in the source tree), or \
                 point --installer at it",
                dir.display(),
                missing.join(", ")
            ),
        ))
    }

    /// No headnode of this VLAN but a selftest's (whose config dir is in the lab), and no
    /// network of the lab's names that an earlier selftest did not make.
    fn vlan_is_free(&self) -> anyhow::Result<()> {
        let name = domain_name(self.opts.vlan);
        let Some(dom) = self.session.hv.find_domain(&name)? else {
            return Ok(());
        };
        let ours = self
            .session
            .hv
            .metadata(&dom)?
            .is_some_and(|m| m.config_dir.starts_with(&self.lab.dir));
        if ours {
            return Ok(());
        }
        Err(failure(
            Kind::Refused,
            format!(
                "{name} exists and is not a selftest's: selftest never touches it. Run it with \
                 a VLAN that has no headnode here (--vlan)"
            ),
        ))
    }

    /// The lock file of the VLAN's selftests.
    pub(super) fn lock_path(&self) -> std::path::PathBuf {
        self.opts.work_dir.join(format!("{}.lock", self.opts.vlan))
    }

    /// Remove whatever an earlier run of this VLAN left; what was removed, if anything.
    pub(super) fn leftovers(&mut self) -> anyhow::Result<Option<String>> {
        let left = self.left_behind()?;
        if left.is_empty() {
            return Ok(None);
        }
        self.remove_lab()?;
        self.out.step(
            Some(self.opts.vlan),
            format!("removed an earlier run's {}", left.join(", ")),
        );
        Ok(None)
    }

    /// The two networks; the host's BMC address on the VLAN's bridge where virtualbmc is
    /// installed and the management subnet is free on this host (else the BIOS node is
    /// started directly, and the IPMI step says why).
    pub(super) fn networks(&mut self) -> anyhow::Result<Option<String>> {
        self.lab.public_gateway = self.free_public_subnet()?;
        let hv = &self.session.hv;
        for (name, xml) in [
            (&self.lab.vlan_network, doc::vlan_network(&self.lab)),
            (&self.lab.public_network, doc::public_network(&self.lab)),
        ] {
            lab::start_network(hv, name, &xml)?;
        }
        let (addr, prefix) = self.lab.bmc_host;
        self.ipmi =
            if !lab::has_program("vbmc") || !lab::has_program("vbmcd") {
                Err("virtualbmc is not installed (`pip install virtualbmc` adds it): the BIOS node \
                 was started directly"
                .into())
            } else {
                match lab::routes_into(addr, prefix)? {
                    routes if routes.is_empty() => Ok(()),
                    routes => Err(format!(
                    "the management subnet of {addr}/{prefix} is routed on this host ({}): the \
                     lab does not take it; the BIOS node was started directly",
                    routes.join("; ")
                )),
                }
            };
        if self.ipmi.is_ok() {
            lab::add_address(&self.lab.vlan_bridge, addr, prefix)?;
        }
        Ok(None)
    }

    /// The first /24 for the public network that this host routes nowhere yet.
    fn free_public_subnet(&self) -> anyhow::Result<Ipv4Addr> {
        for gateway in self.lab.public_gateways() {
            if lab::routes_into(gateway, 24)?.is_empty() {
                return Ok(gateway);
            }
        }
        Err(failure(
            Kind::Other,
            "every /24 of 172.31.0.0/16 is routed on this host: the lab has no subnet for its \
             public network; free one (`ip -4 route` shows them)",
        ))
    }

    /// Each node's disk, firmware variables and domain (shut off), and the BIOS node's
    /// virtual BMC.
    pub(super) fn nodes(&mut self) -> anyhow::Result<Option<String>> {
        lab::make_dirs(&self.lab.dir, &["log"])?;
        let virt_type = self.session.virt_type().as_str();
        for node in &self.lab.nodes {
            let disk = self.lab.node_disk(node);
            match node.firmware.ovmf() {
                None => lab::empty_disk(&disk, EMPTY_DISK)?,
                Some((_, vars)) => {
                    lab::copy_readable(&self.opts.installer_dir.join("esp.raw"), &disk)?;
                    lab::copy_readable(&self.lab.ovmf_dir.join(vars), &self.lab.node_vars(node))?;
                }
            }
            let xml = doc::node_domain(&self.lab, node, virt_type);
            self.session.hv.define(&node.name, &xml)?;
            if node.ipmi && self.ipmi.is_ok() {
                lab::add_vbmc(
                    &node.name,
                    node.bmc,
                    BMC_PORT,
                    BMC_PASSWORD,
                    self.session.hv.uri(),
                )?;
            }
        }
        Ok(None)
    }

    /// Remove everything of the lab, by name: virtual BMCs, node domains, the headnode (only
    /// the selftest's, through the teardown's own checks), its pool, the networks, the run's
    /// directory. Goes on past a failure, and reports the first.
    pub(super) fn remove_lab(&mut self) -> anyhow::Result<()> {
        let mut first: Option<anyhow::Error> = None;
        let mut note = |r: anyhow::Result<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        let hv = &self.session.hv;
        let names: Vec<&str> = self.lab.nodes.iter().map(|n| n.name.as_str()).collect();
        lab::remove_vbmcs(&names);
        for node in &self.lab.nodes {
            note(hv.find_domain(&node.name).and_then(|d| match d {
                Some(d) => hv.destroy_and_undefine(&d),
                None => Ok(()),
            }));
        }
        note(self.remove_headnode());
        let pool_dir = self.session.config.pool_dir.clone();
        note(
            hv.delete_pool_at(&self.lab.pool, &pool_dir, "the selftest's pool")
                .map(drop),
        );
        for net in [&self.lab.vlan_network, &self.lab.public_network] {
            note(lab::remove_network(hv, net).map(drop));
        }
        note(lab::remove_dir(&self.lab.dir));
        first.map_or(Ok(()), Err)
    }

    /// Tear the selftest's headnode down with its config dir (as `teardown --purge` does, also
    /// after a signal); nothing to do where there is none.
    fn remove_headnode(&self) -> anyhow::Result<()> {
        let vlan = self.opts.vlan;
        let has_domain = self.session.hv.find_domain(&domain_name(vlan))?.is_some();
        let has_records = self.session.config.state_dir.exists();
        if !has_domain && !has_records {
            return Ok(());
        }
        let _lock = hostprep::lock_vlan(&self.session.config.lock_dir, vlan)?;
        match self.session.teardown_locked(vlan, true) {
            Err(e) if kind_of(&e) == Kind::NotFound && !has_domain => Ok(()),
            other => other,
        }
    }

    /// What of the lab exists, by name.
    pub(super) fn left_behind(&self) -> anyhow::Result<Vec<String>> {
        let hv = &self.session.hv;
        let mut left = Vec::new();
        let domains = self
            .lab
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .chain([domain_name(self.opts.vlan)]);
        for name in domains {
            if let Some(dom) = hv.find_domain(&name)? {
                let ours = name != domain_name(self.opts.vlan)
                    || hv
                        .metadata(&dom)?
                        .is_some_and(|m| m.config_dir.starts_with(&self.lab.dir));
                if ours {
                    left.push(format!("domain {name}"));
                }
            }
        }
        for net in [&self.lab.vlan_network, &self.lab.public_network] {
            if lab::network_exists(hv, net)? {
                left.push(format!("network {net}"));
            }
        }
        if hv.find_pool(&self.lab.pool)?.is_some() {
            left.push(format!("pool {}", self.lab.pool));
        }
        if self.lab.dir.exists() {
            left.push(format!("directory {}", self.lab.dir.display()));
        }
        Ok(left)
    }
}

/// The OVMF files the UEFI nodes boot, in `dir`, each named if absent.
fn ovmf_files(dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<String> = [Firmware::Uefi, Firmware::SecureBoot]
        .into_iter()
        .filter_map(Firmware::ovmf)
        .flat_map(|(code, vars)| [code, vars])
        .map(|f| dir.join(f))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(failure(
        Kind::NotFound,
        format!(
            "the UEFI firmware {} is missing: install Debian's ovmf package (`apt install ovmf`), \
             or point --ovmf-dir at where this system keeps OVMF's 4 MiB builds",
            missing.join(", ")
        ),
    ))
}
