/*!
Running the commands that operate the nodes from the hypervisor: `install`, `nodes`.
Results go to standard output (tables, JSON, each machine's outcome); progress and notes to
standard error.
*/

use crate::cli::args::GlobalArgs;
use crate::cli::node_args::{InstallArgs, NodesArgs};
use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::model::config::Config;
use crate::model::mac::Mac;
use crate::model::nodes::printable;
use crate::model::vlan::Vlan;
use crate::ops::install::InstallRequest;
use crate::ops::nodes::{self, NodesQuery};
use crate::ops::report::Reporter;
use crate::ops::session::Session;
use std::time::Duration;

fn session(g: &GlobalArgs, config: Config, out: Reporter) -> anyhow::Result<Session> {
    Ok(Session::new(config, Hypervisor::connect(&g.connect)?, out))
}

/// A MAC from the command line; a usage error naming it otherwise.
fn mac(text: &str) -> anyhow::Result<Mac> {
    text.parse()
        .map_err(|e| failure(Kind::Usage, format!("{e}")))
}

/// `install`: each machine's outcome as it finishes; exit 0 only if every one succeeded.
pub fn install(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    args: &InstallArgs,
) -> anyhow::Result<()> {
    let vlan: Vlan = args.vlan.parse()?;
    let macs = if args.all {
        None
    } else {
        Some(
            args.macs
                .iter()
                .map(|m| mac(m))
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let req = InstallRequest {
        profile: args.profile.clone(),
        macs,
        dry_run: g.dry_run,
        no_power: args.no_power,
        jobs: g.jobs.into(),
        timeout: Duration::from_secs(args.timeout),
    };
    req.validate()?;
    let outcome = session(g, config, out)?.install(vlan, &req, &|line| println!("{line}"))?;
    let total = outcome.done.len() + outcome.failed.len();
    let dry = if g.dry_run { " (dry run)" } else { "" };
    if outcome.failed.is_empty() {
        out.summary(format!(
            "VLAN {vlan}: {total} of {total} machines done{dry}"
        ));
        return Ok(());
    }
    let failed: Vec<String> = outcome.failed.iter().map(Mac::to_string).collect();
    Err(failure(
        Kind::Other,
        format!(
            "VLAN {vlan}: {} of {total} machines failed{dry}: {}",
            failed.len(),
            failed.join(", ")
        ),
    ))
}

/// `nodes`: a table, the timeline, or JSON.
pub fn nodes(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    args: &NodesArgs,
) -> anyhow::Result<()> {
    let vlan: Vlan = args.vlan.parse()?;
    let events = match args.events.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(m) => Some(Some(mac(m)?)),
    };
    let query = NodesQuery {
        brief: false,
        power: args.power,
        events,
    };
    let report = session(g, config, out)?.nodes(vlan, &query)?;
    for problem in &report.problems {
        out.step(Some(vlan), format!("warning: {}", printable(problem, 300)));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(events) = &report.events {
        print!("{}", nodes::timeline(events));
    } else {
        print!("{}", nodes::table(&report, args.power));
    }
    Ok(())
}
