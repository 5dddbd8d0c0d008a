/*!
The QEMU guest agent of a running domain, through libvirt (`virDomainQemuAgentCommand`, from
libvirt-qemu): so it works over any URI libvirt reaches, a remote one included, with no ssh
into the guest. The protocol's pieces are in `model::agent`.
*/

use crate::model::agent::{self, ExecStatus};
use anyhow::Context as _;
use std::time::{Duration, Instant};
use virt::domain::Domain;
use virt::error::Error as VirtError;

/// How long one agent call may take; `guest-exec` returns at once, and so does the status.
const CALL_TIMEOUT_S: i32 = 30;

/// The guest agent of one domain.
pub struct GuestAgent {
    dom: Domain,
    name: String,
}

impl GuestAgent {
    /// The agent of `dom`, named `name` in errors.
    pub fn new(dom: Domain, name: &str) -> GuestAgent {
        GuestAgent {
            dom,
            name: name.to_string(),
        }
    }

    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn call(&self, request: &str, timeout: i32) -> Result<String, VirtError> {
        self.dom.qemu_agent_command(request, timeout, 0)
    }

    /// Whether the agent answers `guest-ping` within `timeout` (whole seconds, at least one);
    /// the error is libvirt's (agent not connected, domain not running, no such call on this
    /// driver).
    pub fn ping(&self, timeout: Duration) -> Result<(), VirtError> {
        let secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        self.call(&agent::ping_request(), secs).map(|_| ())
    }

    /// Start `path` with `args` (each one argv entry, no shell) in the guest; its process id.
    pub fn spawn(&self, path: &str, args: &[String]) -> anyhow::Result<i64> {
        let reply = self
            .call(&agent::exec_request(path, args), CALL_TIMEOUT_S)
            .with_context(|| format!("starting {path} in {} through its guest agent", self.name))?;
        agent::parse_exec_reply(&reply)
    }

    /// The state of guest process `pid`.
    pub fn status(&self, pid: i64) -> anyhow::Result<ExecStatus> {
        let reply = self
            .call(&agent::status_request(pid), CALL_TIMEOUT_S)
            .with_context(|| format!("asking {}'s guest agent about process {pid}", self.name))?;
        agent::parse_status_reply(&reply)
    }

    /// Wait until guest process `pid` has exited, asking every 0.1 s at first and every 0.5 s
    /// later; `Ok(None)` if it still runs after `limit` (it goes on in the guest).
    pub fn wait(&self, pid: i64, limit: Duration) -> anyhow::Result<Option<ExecStatus>> {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(100);
        loop {
            let status = self.status(pid)?;
            if status.exited {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}
