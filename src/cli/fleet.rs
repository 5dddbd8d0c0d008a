/*!
Runs across a fleet: with `[[hosts]]` in the configuration and no `--connect` (nor
`LIBVIRT_DEFAULT_URI`), each VLAN goes to the host that serves it, and the hosts are worked on
in parallel, each with its own connection and its own `--jobs`. A host that cannot be reached
fails its VLANs, saying why, and the others go on. `--host NAME` narrows a run to some hosts.
Without hosts (or with `--connect`) a run goes to one hypervisor, as it always did.
*/

use crate::cli::args::GlobalArgs;
use crate::error::{failure, kind_of, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::model::config::Config;
use crate::model::fleet::{self, Host};
use crate::model::vlan::Vlan;
use crate::ops::report::Reporter;
use crate::ops::session::Session;
use anyhow::Context as _;
use std::sync::{Mutex, PoisonError};

/// The fleet's hosts a run goes to, or `None` for a run on one hypervisor (`g.uri()`).
pub fn hosts<'a>(g: &GlobalArgs, config: &'a Config) -> anyhow::Result<Option<Vec<&'a Host>>> {
    if config.hosts.is_empty() {
        if let Some(name) = g.host.first() {
            return Err(failure(
                Kind::Usage,
                format!("--host {name}: the configuration has no [[hosts]]"),
            ));
        }
        return Ok(None);
    }
    if g.connect.is_some() {
        return Ok(None);
    }
    fleet::selected(&config.hosts, &g.host).map(Some)
}

/// `g`, aimed at the host that serves `vlan` in a fleet run (unchanged otherwise); with that
/// host's name.
pub fn routed(
    g: &GlobalArgs,
    config: &Config,
    vlan: Vlan,
) -> anyhow::Result<(GlobalArgs, Option<String>)> {
    let Some(hosts) = hosts(g, config)? else {
        return Ok((g.clone(), None));
    };
    let placed = fleet::place(&hosts, &[vlan])?;
    let host = placed
        .first()
        .map(|(h, _)| *h)
        .context("a placed VLAN has a host")?;
    Ok((g.aimed_at(&host.uri), Some(host.name.clone())))
}

/// A session on `uri`; an error says which host could not be reached.
fn connect(
    uri: &str,
    host: Option<&Host>,
    config: &Config,
    out: Reporter,
) -> anyhow::Result<Session> {
    let hv = Hypervisor::connect(uri).map_err(|e| match host {
        Some(h) => {
            let kind = kind_of(&e);
            failure(kind, format!("host {} cannot be reached: {e:#}", h.name))
        }
        None => e,
    })?;
    Ok(Session::new(config.clone(), hv, out))
}

/// Run `work` with a session and the VLANs of `vlans` it is to do: once, on `g.uri()`, or, in
/// a fleet run, on each host with its VLANs, the hosts in parallel. A host that cannot be
/// reached fails each of its VLANs with the reason; the others go on. The error, if any, has
/// the kind of the first host's failure (or the one host's own error).
pub fn run(
    g: &GlobalArgs,
    config: &Config,
    out: Reporter,
    vlans: &[Vlan],
    work: impl Fn(&Session, &[Vlan]) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    let Some(hosts) = hosts(g, config)? else {
        return work(&connect(g.uri(), None, config, out)?, vlans);
    };
    let placed = fleet::place(&hosts, vlans)?;
    let results: Vec<Mutex<Option<anyhow::Result<()>>>> =
        placed.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for ((host, vlans), slot) in placed.iter().zip(&results) {
            let work = &work;
            scope.spawn(move || {
                let result = match connect(&host.uri, Some(host), config, out) {
                    Ok(session) => work(&session, vlans),
                    Err(e) => {
                        for &v in vlans {
                            out.error(Some(v), &e);
                        }
                        Err(e)
                    }
                };
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            });
        }
    });
    let mut failed: Vec<(String, anyhow::Error)> = Vec::new();
    for ((host, _), slot) in placed.iter().zip(results) {
        if let Some(Err(e)) = slot.into_inner().unwrap_or_else(PoisonError::into_inner) {
            failed.push((host.name.clone(), e));
        }
    }
    if let [(_, _)] = failed.as_slice() {
        if placed.len() == 1 {
            let (_, e) = failed.remove(0);
            return Err(e);
        }
    }
    let Some(kind) = failed.first().map(|(_, e)| kind_of(e)) else {
        if placed.len() > 1 {
            out.summary(format!("{} hosts: all done", placed.len()));
        }
        return Ok(());
    };
    let names: Vec<String> = failed.iter().map(|(n, _)| n.clone()).collect();
    Err(failure(
        kind,
        format!(
            "{} of {} hosts had failures: {}",
            failed.len(),
            placed.len(),
            names.join(", ")
        ),
    ))
}

/// Run `work` on each host of a fleet run (in parallel), or once on `g.uri()`: each result
/// with the host's name (`None` for a run on one hypervisor), in the configuration's order.
pub fn each_host<T: Send>(
    g: &GlobalArgs,
    config: &Config,
    out: Reporter,
    work: impl Fn(&Session) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<(Option<String>, anyhow::Result<T>)>> {
    let Some(hosts) = hosts(g, config)? else {
        let session = connect(g.uri(), None, config, out)?;
        return Ok(vec![(None, work(&session))]);
    };
    let results: Vec<Mutex<Option<anyhow::Result<T>>>> =
        hosts.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for (host, slot) in hosts.iter().zip(&results) {
            let work = &work;
            scope.spawn(move || {
                let result = connect(&host.uri, Some(host), config, out).and_then(|s| work(&s));
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            });
        }
    });
    Ok(hosts
        .iter()
        .zip(results)
        .map(|(h, slot)| {
            let result = slot
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| Err(anyhow::anyhow!("host {}: no result", h.name)));
            (Some(h.name.clone()), result)
        })
        .collect())
}
