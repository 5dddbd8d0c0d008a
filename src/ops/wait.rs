/*!
Waiting for headnodes to be ready: the guest's set-up unit prints a line on the serial console
once the PXE stack serves (or a step failed), and libvirt logs that console to a file on the
hypervisor. The phase shown on the progress line comes from what the log has reached so far.

On another machine the log file is out of reach: the console is read through libvirt's console
stream instead ([`ConsoleTap`]), and, since that shows only what is printed once it is open (and
nothing if someone else holds the console), the set-up unit's journal is asked for through the
guest agent every few seconds once the agent answers.
*/

use crate::error::{failure, Kind};
use crate::host::agent::GuestAgent;
use crate::host::console::ConsoleTap;
use crate::host::hypervisor::Hypervisor;
use crate::host::interrupt;
use crate::model::console::BOOT_SIGN;
use crate::model::plan::Plan;
use crate::ops::guest;
use crate::render::seed::{ready_marker, EARLY_SETUP_SIGN, SETUP_DONE, SETUP_FAILED};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// How often the guest agent of a headnode on another machine is asked for the set-up's journal.
const ASK_AGENT_EVERY: Duration = Duration::from_secs(5);

/// A headnode being waited for, and where its console is read.
pub struct Watched<'a> {
    plan: &'a Plan,
    console: Console,
}

/// Where a headnode's console is read.
enum Console {
    /// The log file libvirt writes on this machine.
    File,
    /// The console stream and the guest agent of a headnode on another machine.
    Remote {
        uri: String,
        tap: Option<ConsoleTap>,
        agent: Option<GuestAgent>,
        asked: Option<Instant>,
        journal: String,
    },
}

impl<'a> Watched<'a> {
    /// `plan`'s headnode, reached through `hv`: its log file on this machine, its console
    /// stream and guest agent on another.
    pub fn new(hv: &Hypervisor, plan: &'a Plan) -> Watched<'a> {
        if hv.is_local() {
            return Watched::local(plan);
        }
        let name = &plan.domain_name;
        let agent = hv
            .find_domain(name)
            .ok()
            .flatten()
            .map(|d| GuestAgent::new(d, name));
        Watched {
            plan,
            console: Console::Remote {
                uri: hv.uri().to_string(),
                tap: ConsoleTap::open(hv.uri(), name).ok(),
                agent,
                asked: None,
                journal: String::new(),
            },
        }
    }

    /// `plan`'s headnode on this machine: its console log file.
    pub fn local(plan: &'a Plan) -> Watched<'a> {
        Watched {
            plan,
            console: Console::File,
        }
    }

    /// What the console (and, on another machine, the set-up's journal) has shown so far.
    fn text(&mut self) -> String {
        match &mut self.console {
            Console::File => {
                String::from_utf8_lossy(&std::fs::read(&self.plan.serial_log).unwrap_or_default())
                    .into_owned()
            }
            Console::Remote {
                tap,
                agent,
                asked,
                journal,
                ..
            } => {
                if let Some(agent) = agent {
                    if asked.is_none_or(|t| t.elapsed() >= ASK_AGENT_EVERY) {
                        *asked = Some(Instant::now());
                        if let Some(text) = setup_journal(agent) {
                            *journal = text;
                        }
                    }
                }
                let console = tap.as_ref().map(ConsoleTap::text).unwrap_or_default();
                format!("{console}\n{journal}")
            }
        }
    }

    /// Where to look at the console, for errors.
    fn where_to_look(&self) -> String {
        match &self.console {
            Console::File => format!("console log: {}", self.plan.serial_log.display()),
            Console::Remote { uri, .. } => format!(
                "console: `virsh -c {uri} console {}`",
                self.plan.domain_name
            ),
        }
    }
}

/// The set-up unit's journal lines, through the guest agent, if it answers.
fn setup_journal(agent: &GuestAgent) -> Option<String> {
    agent.ping(Duration::from_secs(1)).ok()?;
    let args: Vec<String> = ["-b", "-u", "mkheadnode-setup", "-o", "cat", "--no-pager"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    let status = guest::run(agent, "/usr/bin/journalctl", &args, Duration::from_secs(10)).ok()?;
    Some(String::from_utf8_lossy(&status.stdout).into_owned())
}

/// How far a boot has got, judged from its console log.
pub fn phase(log: &str, marker: &str) -> &'static str {
    if log.contains(SETUP_FAILED) {
        "failed"
    } else if log.contains(SETUP_DONE) {
        "ready"
    } else if log.contains(marker) {
        // cloud-init's final stage waits for the set-up, so it has ended without finishing.
        "failed"
    } else if log.contains("mkheadnode-setup: ") || log.contains(EARLY_SETUP_SIGN) {
        "setting up the PXE stack"
    } else if log.contains("Cloud-init v.") || log.contains("cloud-init[") {
        "cloud-init configuring"
    } else if log.contains(BOOT_SIGN) {
        "kernel booting"
    } else if log.is_empty() {
        "starting"
    } else {
        "firmware"
    }
}

/// Wait until every watched headnode has printed its ready marker, or fail at `timeout`.
pub fn until_ready(
    watched: Vec<Watched<'_>>,
    timeout: Duration,
    show_progress: bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let bar = spinner(show_progress);
    let mut pending = watched;
    let mut failures: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let mut phases = Vec::new();
        pending.retain_mut(|w| {
            let log = w.text();
            let p = w.plan;
            match phase(&log, &ready_marker(p)) {
                "ready" => {
                    let secs = start.elapsed().as_secs_f64();
                    let line = format!("VLAN {}: ready after {secs:.0} s", p.vlan);
                    // A spinner is only drawn on a terminal; a log still gets the line.
                    if show_progress && bar.is_hidden() {
                        eprintln!("{line}");
                    } else {
                        bar.println(line);
                    }
                    false
                }
                "failed" => {
                    failures.push(setup_failure(w, &log));
                    false
                }
                ph => {
                    phases.push(format!("VLAN {} {ph}", p.vlan));
                    true
                }
            }
        });
        if pending.is_empty() {
            break;
        }
        if start.elapsed() >= timeout {
            bar.finish_and_clear();
            return Err(timed_out(&pending, timeout));
        }
        if let Some(signal) = interrupt::requested() {
            bar.finish_and_clear();
            return Err(failure(
                Kind::Other,
                format!(
                    "interrupted by {signal} while waiting: the headnodes were made and keep \
                     booting; `mkheadnode status <vlan>` shows them"
                ),
            ));
        }
        bar.set_message(phases.join(", "));
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_and_clear();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failure(
            Kind::Other,
            format!("set-up failed in the guest: {}", failures.join("; ")),
        ))
    }
}

/// The progress line: a spinner with the time spent and each headnode's phase (hidden when
/// `show` is false, and by indicatif itself when standard error is no terminal).
fn spinner(show: bool) -> ProgressBar {
    let bar = if show {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    #[allow(
        clippy::expect_used,
        reason = "a constant template, and a test renders it: it always parses"
    )]
    let style =
        ProgressStyle::with_template("{spinner} [{elapsed:>4}] {msg}").expect("valid template");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Why the set-up of a watched headnode failed, from its console `log`, and where to read more.
fn setup_failure(watched: &Watched<'_>, log: &str) -> String {
    let why = log
        .lines()
        .find(|l| l.contains(SETUP_FAILED))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "cloud-init finished but the PXE set-up did not".into());
    format!(
        "{}: {why} ({})",
        watched.plan.domain_name,
        watched.where_to_look()
    )
}

/// The error for headnodes still `pending` at the `timeout`.
fn timed_out(pending: &[Watched<'_>], timeout: Duration) -> anyhow::Error {
    let names: Vec<String> = pending
        .iter()
        .map(|w| format!("{} ({})", w.plan.domain_name, w.where_to_look()))
        .collect();
    failure(
        Kind::Timeout,
        format!(
            "not ready after {} s: {}. The domains are left running for inspection; \
             `virsh console` or the log shows where they are",
            timeout.as_secs(),
            names.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Config;
    use crate::model::plan::VirtType;
    use crate::model::vlan::Vlan;

    fn plan_logging_to(dir: &std::path::Path) -> Plan {
        let config = Config {
            log_dir: dir.to_path_buf(),
            ..Config::default()
        };
        Plan::new(&config, Vlan::new(4).unwrap(), VirtType::Qemu)
    }

    #[test]
    fn a_failed_setup_ends_the_wait_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_logging_to(dir.path());
        let log = "mkheadnode-setup: FAILED (exit 1) while starting nginx\nmkheadnode: headnode-4 ready after 9 s\n";
        std::fs::write(&plan.serial_log, log).unwrap();
        let start = Instant::now();
        let err =
            until_ready(vec![Watched::local(&plan)], Duration::from_secs(30), false).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "did not fail fast"
        );
        assert!(
            format!("{err:#}").contains("while starting nginx"),
            "{err:#}"
        );
    }

    #[test]
    fn a_ready_guest_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_logging_to(dir.path());
        std::fs::write(
            &plan.serial_log,
            "mkheadnode-setup: done\nmkheadnode: headnode-4 ready after 9 s\n",
        )
        .unwrap();
        until_ready(vec![Watched::local(&plan)], Duration::from_secs(30), false).unwrap();
    }

    #[test]
    fn phases_follow_the_console() {
        let m = "mkheadnode: headnode-4 ready";
        assert_eq!(phase("", m), "starting");
        assert_eq!(phase("SeaBIOS (version 1.16)", m), "firmware");
        assert_eq!(
            phase("SeaBIOS\n[    0.000000] Linux version 6.1", m),
            "kernel booting"
        );
        assert_eq!(
            phase(
                "Linux version\n[  9.1] cloud-init[301]: Cloud-init v. 22.4.2 running",
                m
            ),
            "cloud-init configuring"
        );
        assert_eq!(
            phase(
                "Cloud-init v. 22.4.2\nmkheadnode-setup: loading the firewall",
                m
            ),
            "setting up the PXE stack"
        );
        // The image's early set-up, before cloud-init has printed anything.
        assert_eq!(
            phase(
                "Linux version\nmkheadnode-early: writing the seed's 24 files and bringing",
                m
            ),
            "setting up the PXE stack"
        );
        let done = "mkheadnode-setup: done\n";
        let ready = format!("{done}... mkheadnode: headnode-4 ready after 61.2 s");
        assert_eq!(phase(&ready, m), "ready");
        // The stack serves from here on, whatever cloud-init still does beside it.
        assert_eq!(phase(done, m), "ready");
        // cloud-init prints its final message even when the set-up failed: that is no success.
        assert_eq!(
            phase("mkheadnode: headnode-4 ready after 61.2 s", m),
            "failed"
        );
        let failed = "mkheadnode-setup: FAILED (exit 1) while starting nginx";
        assert_eq!(phase(failed, m), "failed");
        assert_ne!(phase("mkheadnode: headnode-40 rea", m), "ready");
    }
}
