/*!
A session: the settings, the libvirt connection and the reporter every operation works with,
and the virt type decided once for all of them.
*/

use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::host::images::BaseImage;
use crate::host::virt_type::{self, Choice};
use crate::model::config::Config;
use crate::model::footprint::{domain_name, Footprint};
use crate::model::plan::{Plan, VirtType};
use crate::model::uri::host_key;
use crate::model::vlan::Vlan;
use crate::ops::ownership;
use crate::ops::report::Reporter;
use crate::render::domain_xml::{self, Metadata};
use std::sync::{Mutex, OnceLock, PoisonError};
use virt::domain::Domain;

/// Everything an operation needs: settings, the libvirt connection, and where to report.
pub struct Session {
    /// The effective configuration.
    pub config: Config,
    /// The libvirt connection.
    pub hv: Hypervisor,
    /// Where progress goes.
    pub out: Reporter,
    /// The configuration's virt type choice, decided on first use (teardown never needs it).
    decided: OnceLock<Choice>,
    /// The base image creates use on this host, once found (see [`Session::base_image`]).
    base: Mutex<Option<BaseImage>>,
}

/// The domain named for `vlan` and our metadata on it, with what in it is not `vlan`'s (see
/// [`ownership::mismatches`]): `Ok(None)` if there is no such domain, an error of kind `Refused`
/// if a domain of that name exists without our metadata.
pub fn headnode_domain(
    hv: &Hypervisor,
    config: &Config,
    vlan: Vlan,
) -> anyhow::Result<Option<(Domain, Metadata, Vec<String>)>> {
    let name = domain_name(vlan);
    let Some(dom) = hv.find_domain(&name)? else {
        return Ok(None);
    };
    match hv.metadata(&dom)? {
        Some(meta) => {
            let facts = domain_xml::live_facts(&hv.xml(&dom)?)?;
            let problems = ownership::mismatches(&Footprint::of(config, vlan), &meta, &facts);
            Ok(Some((dom, meta, problems)))
        }
        None => Err(failure(
            Kind::Refused,
            format!(
                "domain {name} exists but was not made by mkheadnode (it has no mkheadnode metadata); \
                 refusing to touch it. Rename or remove it yourself if it should go"
            ),
        )),
    }
}

/// Our headnode of `vlan`: `Ok(None)` if there is no domain of its name, an error of kind
/// `Refused` if there is one that is not ours, or whose metadata does not match what the
/// configuration gives `vlan` (a copy of another headnode's XML, say), saying why.
pub fn owned_domain(
    hv: &Hypervisor,
    config: &Config,
    vlan: Vlan,
) -> anyhow::Result<Option<(Domain, Metadata)>> {
    match headnode_domain(hv, config, vlan)? {
        None => Ok(None),
        Some((dom, meta, problems)) if problems.is_empty() => Ok(Some((dom, meta))),
        Some((_, _, problems)) => Err(failure(
            Kind::Refused,
            ownership::refusal(&domain_name(vlan), &problems),
        )),
    }
}

impl Session {
    /// A session over `hv` with `config`. Over a URI naming another machine, the locks and
    /// state records of its VLANs are kept here, apart from every other host's: under
    /// `<lock_dir>/hosts/<host>` and `<state_dir>/hosts/<host>` (see [`host_key`]). So VLAN 42
    /// on two hosts are two VLANs, and runs from this machine on one of them take turns.
    pub fn new(mut config: Config, hv: Hypervisor, out: Reporter) -> Session {
        if let Some(key) = host_key(hv.uri()) {
            config.lock_dir = config.lock_dir.join("hosts").join(&key);
            config.state_dir = config.state_dir.join("hosts").join(&key);
        }
        Session {
            config,
            hv,
            out,
            decided: OnceLock::new(),
            base: Mutex::new(None),
        }
    }

    /// kvm or qemu for new headnodes: decided once per session, and said once.
    pub fn virt_type(&self) -> VirtType {
        self.decided
            .get_or_init(|| {
                let choice = virt_type::choose(
                    self.config.virt_type,
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

    /// The base image creates use on this host: found (and, with `push`, pushed first where
    /// the host lacks it) once per session, so a bulk run fails at once without it, before
    /// anything is made.
    pub fn base_image(&self, push: bool) -> anyhow::Result<BaseImage> {
        let mut base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = &*base {
            return Ok(found.clone());
        }
        let found = self.resolve_base_image(push)?;
        *base = Some(found.clone());
        Ok(found)
    }

    /// Plan the headnode of `vlan` with this session's settings.
    pub fn plan(&self, vlan: Vlan) -> Plan {
        Plan::new(&self.config, vlan, self.virt_type())
    }
}
