/*!
Running a parsed command line: load settings, connect, dispatch, and sum up bulk runs.
*/

use crate::cli::args::{Cli, Command, CreateArgs, GlobalArgs};
use crate::cli::bulk::each;
use crate::cli::docs;
use crate::cli::fleet;
use crate::cli::images;
use crate::cli::operate;
use crate::cli::selftest;
use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::host::interrupt;
use crate::host::kvm_probe;
use crate::host::virt_type;
use crate::model::config::Config;
use crate::model::fleet::place;
use crate::model::plan::Plan;
use crate::model::vlan::{self, Vlan};
use crate::model::{bmc_conf, machines};
use crate::ops::create::{CreateOptions, Created};
use crate::ops::report::{Reporter, Verbosity};
use crate::ops::session::Session;
use crate::ops::status::table;
use crate::ops::{check, wait};
use crate::render::{domain_xml, seed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Run the command line; the error's kind decides the exit status.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // These need no settings: a broken config file must not break them.
    match &cli.command {
        Some(Command::KvmProbe) => return kvm_probe::run_probe(),
        Some(Command::Completions { shell }) => return docs::print_completions(*shell),
        Some(Command::Man { dir }) => return docs::write_man_pages(dir),
        _ => {}
    }
    let g = &cli.global;
    let out = reporter(g);
    let config = g.apply(Config::load(g.config.as_deref())?)?;
    match &cli.command {
        None => {
            let Some(spec) = cli.vlans.as_deref() else {
                return Err(failure(
                    Kind::Usage,
                    "no VLAN given: try `mkheadnode 42`, or `mkheadnode --help`",
                ));
            };
            create(&cli, config, out, spec, &cli.create, false)
        }
        Some(Command::Create { vlans, create }) => {
            self::create(&cli, config, out, vlans, &create.merged(&cli.create), false)
        }
        Some(Command::Rebuild { vlans, create }) => {
            self::create(&cli, config, out, vlans, &create.merged(&cli.create), true)
        }
        Some(Command::Teardown { vlans, purge }) => teardown(g, config, out, vlans, *purge),
        Some(Command::List { json }) => list(g, config, out, *json),
        Some(Command::Status { vlan, json }) => status(g, config, out, vlan, *json),
        Some(Command::Check { vlans }) => check(g, &config, vlans.as_deref()),
        Some(Command::KvmProbe | Command::Completions { .. } | Command::Man { .. }) => {
            unreachable!("handled above")
        }
        Some(Command::Image { action }) => images::run(g, config, out, action),
        Some(Command::Profile { action }) => operate::profile(g, config, out, action),
        Some(Command::Install(args)) => {
            operate::install(&aimed(g, &config, &args.vlan)?, config, out, args)
        }
        Some(Command::Nodes(args)) => {
            operate::nodes(&aimed(g, &config, &args.vlan)?, config, out, args)
        }
        Some(Command::Selftest(args)) => selftest::run(g, &config, out, args),
    }
}

/// `g` aimed at the host of the VLAN `spec` in a fleet run; a `spec` that is no VLAN is left for
/// the command to refuse.
fn aimed(g: &GlobalArgs, config: &Config, spec: &str) -> anyhow::Result<GlobalArgs> {
    match spec.parse::<Vlan>() {
        Ok(v) => Ok(fleet::routed(g, config, v)?.0),
        Err(_) => Ok(g.clone()),
    }
}

/// How much to say, from `--quiet` and `--verbose`.
fn reporter(g: &GlobalArgs) -> Reporter {
    Reporter {
        verbosity: if g.quiet > 0 {
            Verbosity::Quiet
        } else if g.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        },
    }
}

/// `teardown`: each VLAN's headnode, up to `--jobs` at a time.
fn teardown(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    spec: &str,
    purge: bool,
) -> anyhow::Result<()> {
    let vlans = vlan::parse_list(spec)?;
    if g.dry_run {
        for v in &vlans {
            println!(
                "would tear down headnode-{v}{}",
                if purge {
                    " and purge its config dir"
                } else {
                    ""
                }
            );
        }
        return Ok(());
    }
    interrupt::install()?;
    fleet::run(g, &config, out, &vlans, |session, vlans| {
        each(vlans, out, g.jobs.into(), |v| {
            session.teardown(v, purge).map(|()| "torn down")
        })
    })
}

/// `list`: every headnode of ours, as a table or JSON.
fn list(g: &GlobalArgs, config: Config, out: Reporter, json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut unreachable = Vec::new();
    for (host, found) in fleet::each_host(g, &config, out, Session::list)? {
        match (found, host) {
            (Ok(found), host) => rows.extend(found.into_iter().map(|mut r| {
                r.host.clone_from(&host);
                r
            })),
            (Err(e), Some(name)) => {
                out.error(None, &e);
                unreachable.push(name);
            }
            (Err(e), None) => return Err(e),
        }
    }
    rows.sort_by_key(|r| r.vlan);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    if unreachable.is_empty() {
        Ok(())
    } else {
        Err(failure(
            Kind::Libvirt,
            format!(
                "not listed: host(s) {} could not be reached",
                unreachable.join(", ")
            ),
        ))
    }
}

/// `status`: one headnode, as a table or JSON.
fn status(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    vlan: &str,
    json: bool,
) -> anyhow::Result<()> {
    let vlan: Vlan = vlan.parse()?;
    let (g, host) = fleet::routed(g, &config, vlan)?;
    let session = Session::new(config, Hypervisor::connect(g.uri())?, out);
    let mut row = session.status(vlan)?;
    row.host = host;
    if json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        print!("{}", table(std::slice::from_ref(&row)));
    }
    match row.problem {
        None => Ok(()),
        Some(problem) => Err(failure(
            Kind::Refused,
            format!(
                "{} is not the headnode its name says ({problem}): mkheadnode will not touch it",
                row.domain
            ),
        )),
    }
}

/// `check`: the host's findings; fails if any finding does.
fn check(g: &GlobalArgs, config: &Config, vlans: Option<&str>) -> anyhow::Result<()> {
    let vlans = match vlans {
        Some(spec) => vlan::parse_list(spec)?,
        None => Vec::new(),
    };
    let failed = match fleet::hosts(g, config)? {
        None => check_one(g.uri(), config, &vlans),
        Some(hosts) => {
            let placed = if vlans.is_empty() {
                hosts.into_iter().map(|h| (h, Vec::new())).collect()
            } else {
                place(&hosts, &vlans)?
            };
            placed
                .iter()
                .map(|(host, vlans)| {
                    println!("host {} ({}):", host.name, host.uri);
                    check_one(&host.uri, config, vlans)
                })
                .sum()
        }
    };
    if failed > 0 {
        return Err(failure(
            Kind::Other,
            format!("{failed} check(s) failed; see above"),
        ));
    }
    Ok(())
}

/// Check the hypervisor at `uri` for `vlans`, print the findings; how many failed.
fn check_one(uri: &str, config: &Config, vlans: &[Vlan]) -> usize {
    let hv = Hypervisor::connect(uri);
    let findings = check::run(config, hv.as_ref(), vlans);
    print!("{}", check::render(&findings));
    findings
        .iter()
        .filter(|f| f.level == check::Level::Fail)
        .count()
}

/// `create` or `rebuild`: each VLAN's headnode, up to `--jobs` at a time; then, with `--wait`,
/// wait for those that run.
fn create(
    cli: &Cli,
    config: Config,
    out: Reporter,
    spec: &str,
    args: &CreateArgs,
    rebuild: bool,
) -> anyhow::Result<()> {
    let vlans = vlan::parse_list(spec)?;
    // Read and validated once, before connecting or touching anything.
    let machines = args.machines.as_deref().map(machines::load).transpose()?;
    let bmc_conf = args.bmc_conf.as_deref().map(bmc_conf::load).transpose()?;
    if cli.global.dry_run {
        return dry_run(cli.global.uri(), &config, &vlans);
    }
    interrupt::install()?;
    let opts = CreateOptions {
        machines,
        bmc_conf,
        no_start: args.no_start,
    };
    let push = args.push_image || config.push_image;
    let several = vlans.len() > 1 || fleet::hosts(&cli.global, &config)?.is_some();
    let jobs = cli.global.jobs.into();
    fleet::run(&cli.global, &config, out, &vlans, |session, vlans| {
        // Without its base image a host fails at once, before any VLAN is touched; each of
        // its VLANs says so where the run's own error will not.
        if let Err(e) = session.base_image(push) {
            if several {
                vlans.iter().for_each(|&v| out.error(Some(v), &e));
            }
            return Err(e);
        }
        create_on(session, vlans, &opts, args, rebuild, jobs, out)
    })
}

/// `create` or `rebuild` of `vlans` on one hypervisor, up to `jobs` at a time; then, with
/// `--wait`, wait for those that run.
fn create_on(
    session: &Session,
    vlans: &[Vlan],
    opts: &CreateOptions,
    args: &CreateArgs,
    rebuild: bool,
    jobs: usize,
    out: Reporter,
) -> anyhow::Result<()> {
    let started: Mutex<Vec<Plan>> = Mutex::default();
    let result = each(vlans, out, jobs, |v| {
        let (what, running) = create_one(session, v, opts, args.wait, rebuild)?;
        if let Some(plan) = running {
            started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(plan);
        }
        Ok(what)
    });
    let mut started = started.into_inner().unwrap_or_else(PoisonError::into_inner);
    started.sort_by_key(|p| p.vlan);
    if args.wait && !started.is_empty() {
        wait_for(&session.hv, &started, args, out)?;
    }
    result
}

/// Create or rebuild the headnode of `v`: what was done, and its plan if it runs now. With
/// `wait`, a headnode that exists but does not run is an error: there is nothing to wait for.
fn create_one(
    session: &Session,
    v: Vlan,
    opts: &CreateOptions,
    wait: bool,
    rebuild: bool,
) -> anyhow::Result<(&'static str, Option<Plan>)> {
    let outcome = if rebuild {
        session.rebuild(v, opts)?
    } else {
        session.create(v, opts)?
    };
    let plan = session.plan(v);
    let running = match &outcome {
        Created::New => !opts.no_start,
        Created::Unchanged { state } if state == "running" => true,
        Created::Unchanged { state } if wait => {
            return Err(failure(
                Kind::Other,
                format!(
                    "{} exists but is {state}, so there is nothing to wait for: start it \
                     (`virsh start {}`) or make it anew (`mkheadnode rebuild {v}`)",
                    plan.domain_name, plan.domain_name
                ),
            ))
        }
        Created::Unchanged { .. } => false,
    };
    let what = match outcome {
        Created::New if rebuild => "rebuilt",
        Created::New => "created",
        Created::Unchanged { .. } => "unchanged",
    };
    Ok((what, running.then_some(plan)))
}

/// `--wait`: until every started headnode is ready, then say how to reach each.
fn wait_for(
    hv: &Hypervisor,
    started: &[Plan],
    args: &CreateArgs,
    out: Reporter,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout.unwrap_or(CreateArgs::DEFAULT_TIMEOUT));
    out.step(
        None,
        format!(
            "waiting for {} headnode(s) to serve, at most {} s (Ctrl-C ends the wait, not them)",
            started.len(),
            timeout.as_secs()
        ),
    );
    wait::until_ready(
        started.iter().map(|p| wait::Watched::new(hv, p)).collect(),
        timeout,
        out.verbosity > Verbosity::Quiet,
    )?;
    let virsh = if hv.is_local() {
        "virsh".to_string()
    } else {
        format!("virsh -c '{}'", hv.uri())
    };
    for plan in started {
        let name = &plan.domain_name;
        // ssh logs in with a key only.
        let reach = if plan.ssh_authorized_keys.is_empty() {
            format!(
                "`{virsh} console {name}` from here (no ssh key is configured: --ssh-key adds one)"
            )
        } else {
            format!(
                "ssh to {} from the VLAN, `{virsh} console {name}` from here",
                plan.addressing.private_address
            )
        };
        out.summary(format!("{name} is ready: {reach}"));
    }
    Ok(())
}

/// `--dry-run` of create: the virt type that would be chosen, then each VLAN's domain XML and
/// seed files.
fn dry_run(uri: &str, config: &Config, vlans: &[Vlan]) -> anyhow::Result<()> {
    let choice = match Hypervisor::connect(uri) {
        Ok(hv) => virt_type::choose(
            config.virt_type,
            &hv,
            &config.base_image,
            &config.lock_dir,
            false,
        ),
        Err(e) => virt_type::decide(config.virt_type, false, || Err(e)),
    };
    eprintln!("virt type: {}", choice.reason);
    for &v in vlans {
        let plan = Plan::new(config, v, choice.virt_type);
        println!(
            "<!-- {}: domain XML -->\n{}",
            plan.domain_name,
            domain_xml::domain(&plan)?
        );
        for (name, text) in seed::files(&plan)?.entries() {
            println!("# {}: seed file {name}\n{text}", plan.domain_name);
        }
    }
    Ok(())
}
