/*!
`mkheadnode selftest`: run the selftest on this hypervisor (see `ops::selftest`), print its
table (or JSON) and keep its result; `selftest --last` shows the result kept.
*/

use crate::cli::args::GlobalArgs;
use crate::cli::node_args::SelftestArgs;
use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::host::interrupt;
use crate::model::config::Config;
use crate::model::selftest::{table, Outcome};
use crate::model::vlan::Vlan;
use crate::ops::report::Reporter;
use crate::ops::selftest::{self, SelftestOptions};
use std::time::Duration;

/// `selftest`: a run (or, with `--last`, the last one's result); an error if it failed.
pub fn run(
    g: &GlobalArgs,
    config: &Config,
    out: Reporter,
    args: &SelftestArgs,
) -> anyhow::Result<()> {
    if args.last {
        let outcome = selftest::load_last(&config.state_dir)?;
        show(&outcome, args.json)?;
        return verdict(&outcome, "the last selftest");
    }
    let vlan = Vlan::new(args.vlan)?;
    if g.dry_run {
        return Err(failure(
            Kind::Usage,
            "selftest has no --dry-run: it proves the stack by making and removing a lab",
        ));
    }
    // Before connecting: another machine is refused without reaching it.
    selftest::on_this_machine(g.uri())?;
    interrupt::install()?;
    let opts = SelftestOptions {
        keep: args.keep,
        installer_dir: args
            .installer
            .clone()
            .unwrap_or_else(|| selftest::default_installer_dir(&config.base_image)),
        work_dir: args.work_dir.clone(),
        logs_dir: args.logs.clone(),
        ovmf_dir: args.ovmf_dir.clone(),
        ready_timeout: Duration::from_secs(args.timeout),
        install_timeout: Duration::from_secs(args.timeout),
        ..SelftestOptions::new(vlan, config)
    };
    let outcome = selftest::run(Hypervisor::connect(g.uri())?, config, &opts, out);
    if let Err(e) = selftest::save_last(&config.state_dir, &outcome) {
        out.error(
            None,
            &e.context("the result is not kept for `selftest --last`"),
        );
    }
    show(&outcome, args.json)?;
    verdict(&outcome, "selftest")
}

/// Print `outcome` as the table or as JSON, on standard output.
fn show(outcome: &Outcome, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(outcome)?);
    } else {
        print!("{}", table(outcome));
    }
    Ok(())
}

/// Ok if `outcome` passed, else an error naming the step that failed.
fn verdict(outcome: &Outcome, what: &str) -> anyhow::Result<()> {
    if outcome.passed {
        return Ok(());
    }
    let step = outcome
        .first_failure()
        .map(|s| {
            let first = s.detail.lines().next().unwrap_or_default();
            format!(" at `{}`: {first}", s.name)
        })
        .unwrap_or_default();
    let logs = outcome
        .logs
        .as_ref()
        .map(|l| format!(" (serial logs in {})", l.display()))
        .unwrap_or_default();
    Err(failure(Kind::Other, format!("{what} failed{step}{logs}")))
}
