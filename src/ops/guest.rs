/*!
Reaching into a running headnode through its QEMU guest agent (libvirt alone: no ssh, and it
works over a remote URI): finding the headnode, making sure its agent answers, and running the
guest-side tools (`mkheadnode-link`, `mkheadnode-nodes`, `systemctl`) with their output
captured. A headnode that cannot be reached gets an error saying what to check.
*/

use crate::error::{failure, Kind};
use crate::host::agent::GuestAgent;
use crate::host::hypervisor::state_word;
use crate::model::agent::ExecStatus;
use crate::model::nodes::printable;
use crate::model::vlan::Vlan;
use crate::ops::session::{owned_domain, Session};
use std::path::PathBuf;
use std::time::Duration;

/// How long `guest-ping` may take before the agent counts as not answering.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Our headnode of a VLAN, as far as its guest can be reached.
pub struct Found {
    /// Its domain name.
    pub name: String,
    /// Its libvirt state, e.g. `running`, `shut off`.
    pub state: String,
    /// The config dir it shares as /etc/moc (from its metadata).
    pub config_dir: PathBuf,
    /// Its guest agent if it runs (whether the agent answers is not asked yet).
    pub agent: Option<GuestAgent>,
}

impl Session {
    /// The headnode of `vlan`, if there is one. (The one place the node operations find a
    /// domain, through the ownership check every operation uses.)
    pub fn headnode(&self, vlan: Vlan) -> anyhow::Result<Option<Found>> {
        let Some((dom, meta)) = owned_domain(&self.hv, &self.config, vlan)? else {
            return Ok(None);
        };
        let name = dom.name()?;
        let state = state_word(&dom);
        let agent = dom.is_active()?.then(|| GuestAgent::new(dom, &name));
        Ok(Some(Found {
            name,
            state,
            config_dir: meta.config_dir,
            agent,
        }))
    }

    /// The guest agent of `vlan`'s running headnode, once it has answered a ping; else an
    /// error saying what to check.
    pub fn agent(&self, vlan: Vlan) -> anyhow::Result<GuestAgent> {
        let Some(found) = self.headnode(vlan)? else {
            return Err(failure(
                Kind::NotFound,
                format!(
                    "there is no headnode for VLAN {vlan}: `mkheadnode list` shows those there \
                     are, `mkheadnode {vlan}` makes it"
                ),
            ));
        };
        let Some(agent) = found.agent else {
            let (name, state) = (found.name, found.state);
            return Err(failure(
                Kind::Other,
                format!(
                    "{name} is {state}: start it (`virsh start {name}`) and let it boot \
                     (`mkheadnode status {vlan}`)"
                ),
            ));
        };
        ping(&agent, vlan)?;
        Ok(agent)
    }
}

/// Ask the agent for a ping; an error that says what to check if it does not answer.
pub fn ping(agent: &GuestAgent, vlan: Vlan) -> anyhow::Result<()> {
    agent.ping(PING_TIMEOUT).map_err(|e| {
        failure(
            Kind::Libvirt,
            format!(
                "the guest agent of {name} does not answer ({}). Check: is it running \
                 (`mkheadnode status {vlan}`)? Has it finished booting (`virsh console {name}` \
                 shows `mkheadnode-setup: done`)? Does its image have qemu-guest-agent, and does \
                 it run (`systemctl status qemu-guest-agent` inside)?",
                e.message(),
                name = agent.name()
            ),
        )
    })
}

/// Run `path` with `args` in the guest (no shell: each argument is one argv entry) and wait up
/// to `limit` for it to end; its status and output, whatever its exit status.
pub fn run(
    agent: &GuestAgent,
    path: &str,
    args: &[String],
    limit: Duration,
) -> anyhow::Result<ExecStatus> {
    let pid = agent.spawn(path, args).map_err(|e| {
        if format!("{e:#}").contains("No such file") {
            failure(
                Kind::NotFound,
                format!(
                    "{} has no {path}: it was made by an older mkheadnode. `mkheadnode rebuild \
                     <vlan>` makes it anew with the current tools (its config dir stays)",
                    agent.name()
                ),
            )
        } else {
            e
        }
    })?;
    agent.wait(pid, limit)?.ok_or_else(|| {
        failure(
            Kind::Timeout,
            format!(
                "{path} did not finish within {} s in {}; it goes on there (process {pid})",
                limit.as_secs(),
                agent.name()
            ),
        )
    })
}

/// A guest process's output as text, with what a hostile value could do to a terminal
/// (control characters, such as escape sequences) made visible.
pub fn output_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| printable(line, usize::MAX))
        .collect::<Vec<_>>()
        .join("\n")
}
