/*!
Waiting for headnodes to be ready: the guest's set-up unit prints a line on the serial console
once the PXE stack serves (or a step failed), and libvirt logs that console to a file on the
hypervisor. The phase shown on the progress line comes from what the log has reached so far.
*/

use crate::error::{failure, Kind};
use crate::host::interrupt;
use crate::model::console::BOOT_SIGN;
use crate::model::plan::Plan;
use crate::render::seed::{ready_marker, SETUP_DONE, SETUP_FAILED};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// How far a boot has got, judged from its console log.
pub fn phase(log: &str, marker: &str) -> &'static str {
    if log.contains(SETUP_FAILED) {
        "failed"
    } else if log.contains(SETUP_DONE) {
        "ready"
    } else if log.contains(marker) {
        // cloud-init's final stage waits for the set-up, so it has ended without finishing.
        "failed"
    } else if log.contains("mkheadnode-setup: ") {
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

/// Wait until every planned headnode has printed its ready marker, or fail at `timeout`.
pub fn until_ready(plans: &[Plan], timeout: Duration, show_progress: bool) -> anyhow::Result<()> {
    let start = Instant::now();
    let bar = spinner(show_progress);
    let mut pending: Vec<&Plan> = plans.iter().collect();
    let mut failures: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let mut phases = Vec::new();
        pending.retain(|p| {
            let log = String::from_utf8_lossy(&std::fs::read(&p.serial_log).unwrap_or_default())
                .into_owned();
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
                    failures.push(setup_failure(p, &log));
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

/// Why the set-up of `plan` failed, from its console `log`, and where to read more.
fn setup_failure(plan: &Plan, log: &str) -> String {
    let why = log
        .lines()
        .find(|l| l.contains(SETUP_FAILED))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "cloud-init finished but the PXE set-up did not".into());
    format!(
        "{}: {why} (console log: {})",
        plan.domain_name,
        plan.serial_log.display()
    )
}

/// The error for headnodes still `pending` at the `timeout`.
fn timed_out(pending: &[&Plan], timeout: Duration) -> anyhow::Error {
    let names: Vec<String> = pending
        .iter()
        .map(|p| {
            format!(
                "{} (console log: {})",
                p.domain_name,
                p.serial_log.display()
            )
        })
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
            until_ready(std::slice::from_ref(&plan), Duration::from_secs(30), false).unwrap_err();
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
        until_ready(std::slice::from_ref(&plan), Duration::from_secs(30), false).unwrap();
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
