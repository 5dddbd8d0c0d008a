/*!
Running the commands that operate the nodes from the hypervisor: `profile`, `install`, `nodes`.
Results go to standard output (tables, JSON, each machine's outcome); progress and notes to
standard error.
*/

use crate::cli::args::GlobalArgs;
use crate::cli::bulk::each;
use crate::cli::fleet;
use crate::cli::node_args::{InstallArgs, NodesArgs, ProfileCommand};
use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::model::config::Config;
use crate::model::mac::Mac;
use crate::model::nodes::printable;
use crate::model::profile::check_name;
use crate::model::vlan::{self, Vlan};
use crate::ops::install::InstallRequest;
use crate::ops::nodes::{self, NodesQuery};
use crate::ops::profile::{self, load_source, Publication, Source};
use crate::ops::report::{Reporter, Verbosity};
use crate::ops::session::Session;
use crate::render::seed::RESERVED_NAMES;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

fn session(g: &GlobalArgs, config: Config, out: Reporter) -> anyhow::Result<Session> {
    Ok(Session::new(config, Hypervisor::connect(g.uri())?, out))
}

/// `profile add|list|remove`.
pub fn profile(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    action: &ProfileCommand,
) -> anyhow::Result<()> {
    match action {
        ProfileCommand::Add { vlans, name, dir } => profile_add(g, config, out, vlans, name, dir),
        ProfileCommand::List { vlans, json } => {
            profile_list(g, config, out, vlans.as_deref(), *json)
        }
        ProfileCommand::Remove { vlans, name } => profile_remove(g, config, out, vlans, name),
    }
}

/// With `--dry-run`, say what would be done for each VLAN: whether it was a dry run.
fn dry_run(g: &GlobalArgs, vlans: &[Vlan], what: impl Fn(Vlan) -> String) -> bool {
    if g.dry_run {
        for &v in vlans {
            println!("{}", what(v));
        }
    }
    g.dry_run
}

fn profile_remove(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    spec: &str,
    name: &str,
) -> anyhow::Result<()> {
    let vlans = vlan::parse_list(spec)?;
    check_name(name, RESERVED_NAMES).map_err(|why| failure(Kind::Usage, why))?;
    if dry_run(g, &vlans, |v| {
        format!("would remove profile {name} from VLAN {v} and unpublish it")
    }) {
        return Ok(());
    }
    fleet::run(g, &config, out, &vlans, |session, vlans| {
        each(vlans, out, g.jobs.into(), |v| {
            let publication = session.profile_remove(v, name)?;
            out.step(Some(v), format!("removed profile {name}"));
            say_publication(out, v, &publication);
            Ok("removed")
        })
    })
}

/// What a profile is, in a few words: `debian (BIOS and UEFI; 4 files, 52.1 MiB)`.
fn describe(source: &Source) -> String {
    format!(
        "{} ({}; {} files, {})",
        source.name,
        source.summary.loaders.join(" and "),
        source.contents.files.len(),
        profile::size(source.contents.bytes())
    )
}

fn say_publication(out: Reporter, v: Vlan, publication: &Publication) {
    match publication {
        Publication::Now(lines) if lines.is_empty() => {
            out.step(Some(v), "published in the headnode")
        }
        Publication::Now(lines) => {
            for line in lines {
                out.step(Some(v), format!("headnode: {line}"));
            }
        }
        Publication::Later(why) => out.step(Some(v), why),
    }
}

/// A progress bar for copying `source` (hidden with `-q`, or where standard error is not a
/// terminal).
fn copy_bar(out: Reporter, v: Vlan, source: &Source) -> ProgressBar {
    if out.verbosity == Verbosity::Quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(source.contents.bytes());
    let style = ProgressStyle::with_template(
        "VLAN {prefix}: {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix(v.to_string());
    bar.set_message(format!("copying {}", source.name));
    bar
}

fn profile_add(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    spec: &str,
    name: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let vlans = vlan::parse_list(spec)?;
    let source = load_source(name, dir)?;
    let what = describe(&source);
    if dry_run(g, &vlans, |v| {
        format!("would copy profile {what} into VLAN {v}'s config dir and publish it")
    }) {
        return Ok(());
    }
    // One VLAN at a time on each hypervisor: the copies share its disk (the hosts of a fleet
    // in parallel).
    fleet::run(g, &config, out, &vlans, |session, vlans| {
        each(vlans, out, 1, |v| {
            let bar = copy_bar(out, v, &source);
            let result = session.profile_add(v, &source, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let (replaced, publication) = result?;
            let verb = if replaced { "replaced" } else { "added" };
            out.step(Some(v), format!("{verb} profile {what}"));
            say_publication(out, v, &publication);
            Ok(verb)
        })
    })
}

fn profile_list(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    spec: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let given = spec.map(vlan::parse_list).transpose()?;
    let rows = Mutex::new(Vec::new());
    let mut failed: Option<anyhow::Error> = None;
    let list = |session: &Session, vlans: &[Vlan]| {
        let vlans = match vlans {
            [] => session.profile_vlans()?,
            given => given.to_vec(),
        };
        for v in vlans {
            let found = session.profile_list(v)?;
            rows.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(found);
        }
        Ok(())
    };
    match given {
        Some(vlans) => fleet::run(g, &config, out, &vlans, list)?,
        None => {
            // Every host it can reach is listed; the first that failed is the error after.
            for (host, result) in fleet::each_host(g, &config, out, |s| list(s, &[]))? {
                if let Err(e) = result {
                    let e = match host {
                        Some(h) => e.context(format!("host {h}")),
                        None => e,
                    };
                    failed.get_or_insert(e);
                }
            }
        }
    }
    let mut rows = rows.into_inner().unwrap_or_else(PoisonError::into_inner);
    rows.sort_by(|a, b| (a.vlan, &a.name).cmp(&(b.vlan, &b.name)));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", profile::table(&rows));
    }
    failed.map_or(Ok(()), Err)
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
