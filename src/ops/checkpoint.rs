/*!
The named steps of a create or a teardown as the places where a run may stop early: a signal
(see [`crate::host::interrupt`]) stops a create after the step in progress, which then rolls
back as a failed one does; and a test may ask a run to pause after a step (the environment
variable [`PAUSE_ENV`] names it), so that it can kill the run exactly there.
*/

use crate::error::{failure, Kind};
use crate::host::interrupt;
use crate::model::vlan::Vlan;
use std::time::{Duration, Instant};

/// Set to a step's name (such as `overlay` or `define`), makes a run print
/// `VLAN <n>: test hook: paused after <step>` and wait (up to [`PAUSE_LIMIT`], or until a
/// signal) after that step. For tests only.
pub const PAUSE_ENV: &str = "MKHEADNODE_TEST_PAUSE_AFTER";

/// How long a paused run waits to be killed before it goes on.
pub const PAUSE_LIMIT: Duration = Duration::from_secs(120);

/// An error if a signal asked this run to stop: called before a VLAN's work starts.
pub fn not_interrupted(vlan: Vlan) -> anyhow::Result<()> {
    match interrupt::requested() {
        None => Ok(()),
        Some(signal) => Err(failure(
            Kind::Other,
            format!("interrupted by {signal} before VLAN {vlan} was started: nothing was made"),
        )),
    }
}

/// After step `step` of a create: pause if a test asked, then an error if a signal asked this
/// run to stop (the caller's undo then rolls back).
pub fn after(vlan: Vlan, step: &str) -> anyhow::Result<()> {
    passed(vlan, step);
    match interrupt::requested() {
        None => Ok(()),
        Some(signal) => Err(failure(
            Kind::Other,
            format!("interrupted by {signal} after step `{step}`: rolling back what this run made"),
        )),
    }
}

/// After step `step` of a run that finishes what it started (a teardown): pause if a test
/// asked.
pub fn passed(vlan: Vlan, step: &str) {
    pause_if_asked(&format!("VLAN {vlan}"), step);
}

/// After step `step` of a run about `what` (`VLAN 42`, `image x.qcow2`): pause if a test asked,
/// printing `<what>: test hook: paused after <step>`.
pub fn pause_if_asked(what: &str, step: &str) {
    if std::env::var(PAUSE_ENV).ok().as_deref() != Some(step) {
        return;
    }
    eprintln!("{what}: test hook: paused after {step}");
    let start = Instant::now();
    while start.elapsed() < PAUSE_LIMIT && interrupt::requested().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
}
