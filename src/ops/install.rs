/*!
`install`: arm machines for an install profile and power-cycle them, by running the headnode's
own link tool (`mkheadnode-link`) through the guest agent: one run per machine, up to `--jobs`
at once, each machine's outcome reported as it finishes; or, when only arming (`--no-power`,
`--dry-run`), one run for all of them (see [`InstallRequest::runs`]).

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

    /// Whether the link tool only arms (or only says what it would do): no power-cycles.
    fn arms_only(&self) -> bool {
        self.no_power || self.dry_run
    }

    /// The link tool runs that do `macs`. A power-cycle takes seconds, so each machine gets a
    /// run of its own (`jobs` at once), and its outcome is reported when it ends. Arming takes
    /// milliseconds while each run starts Python in the guest (a second or more under
    /// emulation), so arming only is one run for all of them.
    pub fn runs(&self, macs: &[Mac]) -> Vec<Vec<Mac>> {
        if self.arms_only() {
            vec![macs.to_vec()]
        } else {
            macs.iter().map(|m| vec![*m]).collect()
        }
    }

    /// The link tool's arguments for a run that does `macs`.
    pub fn link_args(&self, macs: &[Mac]) -> Vec<String> {
        let mut args = vec!["--profile".to_string(), self.profile.clone()];
        if self.dry_run {
            args.push("--dry-run".into());
        }
        if self.no_power {
            args.push("--no-power".into());
        }
        args.extend(macs.iter().map(Mac::to_string));
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

/// Each machine's outcome lines from a link tool run that did `macs`: its own `ok`/`FAILED`
/// lines (the MAC is their second word), or one made from how the run ended when it printed
/// none for it (a usage error, a timeout); and whether it succeeded: all its lines `ok`, and,
/// for a run of one machine, the run too.
pub fn outcome_lines(
    macs: &[Mac],
    code_ok: bool,
    stdout: &str,
    stderr: &str,
    how: &str,
) -> Vec<(Mac, Vec<String>, bool)> {
    let why = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    macs.iter()
        .map(|&mac| {
            let name = mac.to_string();
            let lines: Vec<String> = stdout
                .lines()
                .filter(|l| l.starts_with("ok ") || l.starts_with("FAILED "))
                .filter(|l| {
                    l.split_whitespace().nth(1).map(|w| w.trim_end_matches(':')) == Some(&name)
                })
                .map(str::to_string)
                .collect();
            if lines.is_empty() {
                let line = format!("FAILED {mac}: mkheadnode-link: {why} ({how})");
                return (mac, vec![line], false);
            }
            let ok = lines.iter().all(|l| l.starts_with("ok ")) && (code_ok || macs.len() > 1);
            (mac, lines, ok)
        })
        .collect()
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
        let runs = req.runs(&macs);
        let outcome = Mutex::new(InstallOutcome::default());
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..req.jobs.clamp(1, runs.len().max(1)) {
                scope.spawn(|| {
                    while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let results = install_run(&agent, req, run);
                        let mut out = outcome.lock().unwrap_or_else(PoisonError::into_inner);
                        for (mac, lines, ok) in results {
                            for line in &lines {
                                report(line);
                            }
                            if ok {
                                out.done.push(mac)
                            } else {
                                out.failed.push(mac)
                            }
                        }
                    }
                });
            }
        });
        Ok(outcome.into_inner().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One run of the link tool for `macs`: each machine's outcome lines and whether it
/// succeeded. A run may take the request's timeout per machine.
fn install_run(
    agent: &GuestAgent,
    req: &InstallRequest,
    macs: &[Mac],
) -> Vec<(Mac, Vec<String>, bool)> {
    let limit = req
        .timeout
        .saturating_mul(u32::try_from(macs.len()).unwrap_or(u32::MAX));
    match guest::run(agent, LINK_TOOL_PATH, &req.link_args(macs), limit) {
        Ok(status) => outcome_lines(
            macs,
            status.success(),
            &guest::output_text(&status.stdout),
            &guest::output_text(&status.stderr),
            &status.outcome(),
        ),
        Err(e) => {
            let why = guest::output_text(format!("{e:#}").as_bytes());
            macs.iter()
                .map(|&mac| (mac, vec![format!("FAILED {mac}: {why}")], false))
                .collect()
        }
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
        let other: Mac = "52:54:00:0a:0b:0d".parse().unwrap();
        assert_eq!(
            req().link_args(&[mac, other]),
            vec![
                "--profile",
                "smoke",
                "--dry-run",
                "--no-power",
                "52:54:00:0a:0b:0c",
                "52:54:00:0a:0b:0d"
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
    fn arming_is_one_run_and_power_cycles_one_run_each() {
        let macs: Vec<Mac> = [
            "52:54:00:00:00:01",
            "52:54:00:00:00:02",
            "52:54:00:00:00:03",
        ]
        .iter()
        .map(|m| m.parse().unwrap())
        .collect();
        assert_eq!(req().runs(&macs), vec![macs.clone()]);
        let arm = InstallRequest {
            dry_run: false,
            ..req()
        };
        assert_eq!(arm.runs(&macs), vec![macs.clone()]);
        let dry = InstallRequest {
            no_power: false,
            ..req()
        };
        assert_eq!(dry.runs(&macs), vec![macs.clone()]);
        let power = InstallRequest {
            dry_run: false,
            no_power: false,
            ..req()
        };
        let one_each: Vec<Vec<Mac>> = macs.iter().map(|m| vec![*m]).collect();
        assert_eq!(power.runs(&macs), one_each);
    }

    #[test]
    fn outcome_lines_come_from_the_tool_or_from_how_it_ended() {
        let mac: Mac = "52:54:00:0a:0b:0c".parse().unwrap();
        let stdout = "ok     52:54:00:0a:0b:0c (10.0.0.7): linked ...; power-cycled via ipmi\n1 of 1 machines done\n";
        let got = outcome_lines(&[mac], true, stdout, "", "exit status 0");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].2 && got[0].1.len() == 1 && got[0].1[0].starts_with("ok     52:54:00:0a:0b:0c")
        );
        // A run of one machine that failed fails it, whatever it printed.
        assert!(!outcome_lines(&[mac], false, stdout, "", "exit status 1")[0].2);
        let got = outcome_lines(
            &[mac],
            false,
            "",
            "usage: ...\nmkheadnode-link: error: bad profile\n",
            "exit status 2",
        );
        assert!(!got[0].2);
        assert_eq!(got[0].1, vec!["FAILED 52:54:00:0a:0b:0c: mkheadnode-link: mkheadnode-link: error: bad profile (exit status 2)"]);
    }

    #[test]
    fn a_run_of_several_machines_is_split_by_mac() {
        let macs: Vec<Mac> = [
            "52:54:00:00:00:01",
            "52:54:00:00:00:02",
            "52:54:00:00:00:03",
            "52:54:00:00:00:04",
        ]
        .iter()
        .map(|m| m.parse().unwrap())
        .collect();
        let stdout = "FAILED 52:54:00:00:00:02: not listed in /etc/moc/machines.txt\n\
                      FAILED line 3: not a MAC\n\
                      ok     52:54:00:00:00:01 (10.0.0.1): linked a; power left alone\n\
                      FAILED 52:54:00:00:00:03 (10.0.0.3): ipmi: no answer\n\
                      ok     52:54:00:00:00:011 (10.0.0.9): not this one\n\
                      1 of 4 machines done\n";
        let got = outcome_lines(&macs, false, stdout, "", "killed after 60 s");
        let oks: Vec<bool> = got.iter().map(|(_, _, ok)| *ok).collect();
        assert_eq!(oks, [true, false, false, false]);
        assert_eq!(
            got[0].1,
            ["ok     52:54:00:00:00:01 (10.0.0.1): linked a; power left alone"]
        );
        assert_eq!(
            got[1].1,
            ["FAILED 52:54:00:00:00:02: not listed in /etc/moc/machines.txt"]
        );
        assert_eq!(
            got[2].1,
            ["FAILED 52:54:00:00:00:03 (10.0.0.3): ipmi: no answer"]
        );
        // The run ended before it got to the fourth: how it ended is its outcome.
        assert_eq!(
            got[3].1,
            ["FAILED 52:54:00:00:00:04: mkheadnode-link: no output (killed after 60 s)"]
        );
    }
}
