/*!
`install`: arm machines for an install profile and power-cycle them, by running the headnode's
own link tool (`mkheadnode-link`) through the guest agent, one run per machine, up to `--jobs`
at once, each machine's outcome reported as it finishes.

Everything is checked on the host before anything is sent: the profile's name, each MAC, that
the headnode runs and its agent answers, that the profile is published there and that each MAC
is one of its machines. The link tool gets them as separate argv entries, never through a shell.
*/

use crate::error::{failure, Kind};
use crate::host::agent::GuestAgent;
use crate::model::mac::Mac;
use crate::model::profile::check_name;
use crate::model::vlan::Vlan;
use crate::ops::guest;
use crate::ops::nodes::{report_of, NodesQuery};
use crate::ops::session::Session;
use crate::render::seed::{LINK_TOOL_PATH, RESERVED_NAMES};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// What to install where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRequest {
    /// The profile, published in the headnode.
    pub profile: String,
    /// These machines, or every machine of machines.txt (`None`, `--all`).
    pub macs: Option<Vec<Mac>>,
    /// Only say what would be done (the link tool's `--dry-run`).
    pub dry_run: bool,
    /// Only arm; leave the power alone (`--no-power`).
    pub no_power: bool,
    /// How many machines at once.
    pub jobs: usize,
    /// How long one machine may take.
    pub timeout: Duration,
}

impl InstallRequest {
    /// Check what can be checked before connecting: the profile's name.
    pub fn validate(&self) -> anyhow::Result<()> {
        check_name(&self.profile, RESERVED_NAMES).map_err(|why| failure(Kind::Usage, why))
    }

    /// The link tool's arguments for one machine.
    pub fn link_args(&self, mac: Mac) -> Vec<String> {
        let mut args = vec!["--profile".to_string(), self.profile.clone()];
        if self.dry_run {
            args.push("--dry-run".into());
        }
        if self.no_power {
            args.push("--no-power".into());
        }
        args.push(mac.to_string());
        args
    }
}

/// How each machine fared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOutcome {
    /// The machines that were done.
    pub done: Vec<Mac>,
    /// The machines that failed.
    pub failed: Vec<Mac>,
}

/// One machine's outcome lines from a link tool run: its `ok`/`FAILED` lines, or one made from
/// how the run ended when it printed none (a usage error, say); and whether it succeeded.
pub fn outcome_lines(
    mac: Mac,
    code_ok: bool,
    stdout: &str,
    stderr: &str,
    how: &str,
) -> (Vec<String>, bool) {
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("FAILED "))
        .map(str::to_string)
        .collect();
    if !lines.is_empty() {
        return (lines, code_ok);
    }
    let why = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    (
        vec![format!("FAILED {mac}: mkheadnode-link: {why} ({how})")],
        false,
    )
}

/// The machines of the request, checked against the headnode's own list and its published
/// profiles.
fn install_targets(
    agent: &GuestAgent,
    vlan: Vlan,
    req: &InstallRequest,
) -> anyhow::Result<Vec<Mac>> {
    let agent_name = agent.name();
    let inventory = report_of(
        agent,
        &NodesQuery {
            brief: true,
            ..NodesQuery::default()
        },
    )?;
    if !inventory.profiles.iter().any(|p| p.name == req.profile) {
        let names: Vec<&str> = inventory.profiles.iter().map(|p| p.name.as_str()).collect();
        return Err(failure(
            Kind::NotFound,
            format!(
                "profile {} is not published in {agent_name} (published: {}): add it with \
                     `mkheadnode profile add {vlan} {} DIR`",
                req.profile,
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
                req.profile
            ),
        ));
    }
    let listed: Vec<Mac> = inventory
        .nodes
        .iter()
        .filter_map(|n| n.mac.parse().ok())
        .collect();
    let Some(wanted) = &req.macs else {
        if listed.is_empty() {
            return Err(failure(
                Kind::Usage,
                format!(
                    "{agent_name} lists no machine: its machines.txt (in the config dir) is empty"
                ),
            ));
        }
        return Ok(listed);
    };
    let unknown: Vec<String> = wanted
        .iter()
        .filter(|m| !listed.contains(m))
        .map(Mac::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(failure(
            Kind::Usage,
            format!(
                "not machines of {agent_name} (see `mkheadnode nodes {vlan}`): {}",
                unknown.join(", ")
            ),
        ));
    }
    Ok(wanted.clone())
}

impl Session {
    /// Arm and power-cycle the machines of `req` on `vlan`'s headnode; `report` gets each
    /// machine's outcome lines as it finishes.
    pub fn install(
        &self,
        vlan: Vlan,
        req: &InstallRequest,
        report: &(dyn Fn(&str) + Sync),
    ) -> anyhow::Result<InstallOutcome> {
        req.validate()?;
        let agent = self.agent(vlan)?;
        let macs = install_targets(&agent, vlan, req)?;
        let outcome = Mutex::new(InstallOutcome::default());
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..req.jobs.clamp(1, macs.len().max(1)) {
                scope.spawn(|| {
                    while let Some(&mac) = macs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let (lines, ok) = install_one(&agent, req, mac);
                        let mut out = outcome.lock().unwrap_or_else(PoisonError::into_inner);
                        for line in &lines {
                            report(line);
                        }
                        if ok {
                            out.done.push(mac)
                        } else {
                            out.failed.push(mac)
                        }
                    }
                });
            }
        });
        Ok(outcome.into_inner().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Run the link tool for one machine: its outcome lines and whether it succeeded.
fn install_one(agent: &GuestAgent, req: &InstallRequest, mac: Mac) -> (Vec<String>, bool) {
    match guest::run(agent, LINK_TOOL_PATH, &req.link_args(mac), req.timeout) {
        Ok(status) => outcome_lines(
            mac,
            status.success(),
            &guest::output_text(&status.stdout),
            &guest::output_text(&status.stderr),
            &status.outcome(),
        ),
        Err(e) => (
            vec![format!(
                "FAILED {mac}: {}",
                guest::output_text(format!("{e:#}").as_bytes())
            )],
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;

    fn req() -> InstallRequest {
        InstallRequest {
            profile: "smoke".into(),
            macs: None,
            dry_run: true,
            no_power: true,
            jobs: 4,
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn argv_entries_are_separate_and_names_checked() {
        let mac: Mac = "52-54-00-0A-0B-0C".parse().unwrap();
        assert_eq!(
            req().link_args(mac),
            vec![
                "--profile",
                "smoke",
                "--dry-run",
                "--no-power",
                "52:54:00:0a:0b:0c"
            ]
        );
        let bad = InstallRequest {
            profile: "x; reboot".into(),
            ..req()
        };
        assert_eq!(kind_of(&bad.validate().unwrap_err()), Kind::Usage);
        let reserved = InstallRequest {
            profile: "pxelinux.cfg".into(),
            ..req()
        };
        assert!(reserved.validate().is_err());
        assert!(req().validate().is_ok());
    }

    #[test]
    fn outcome_lines_come_from_the_tool_or_from_how_it_ended() {
        let mac: Mac = "52:54:00:0a:0b:0c".parse().unwrap();
        let stdout = "ok     52:54:00:0a:0b:0c (10.0.0.7): linked ...; power-cycled via ipmi\n1 of 1 machines done\n";
        let (lines, ok) = outcome_lines(mac, true, stdout, "", "exit status 0");
        assert_eq!(lines.len(), 1);
        assert!(ok && lines[0].starts_with("ok     52:54:00:0a:0b:0c"));
        let (lines, ok) = outcome_lines(
            mac,
            false,
            "",
            "usage: ...\nmkheadnode-link: error: bad profile\n",
            "exit status 2",
        );
        assert!(!ok);
        assert_eq!(lines, vec!["FAILED 52:54:00:0a:0b:0c: mkheadnode-link: mkheadnode-link: error: bad profile (exit status 2)"]);
    }
}
