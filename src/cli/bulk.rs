/*!
What every command shares: refusing `profile` over a URI naming another machine, and running a step for
each VLAN of a bulk run, up to `--jobs` at once, summed up.
*/

use crate::error::{failure, kind_of, Kind};
use crate::model::vlan::Vlan;
use crate::ops::report::Reporter;
use anyhow::Context as _;
use std::sync::{Mutex, PoisonError};

/// Run `f` for every VLAN, each independently and up to `jobs` at a time (libvirt connections
/// are thread-safe); report each outcome and sum up. The error, if any, has the kind of the
/// first failure in VLAN order.
pub fn each(
    vlans: &[Vlan],
    out: Reporter,
    jobs: usize,
    f: impl Fn(Vlan) -> anyhow::Result<&'static str> + Sync,
) -> anyhow::Result<()> {
    if let [v] = vlans {
        return f(*v).map(|_| ()).with_context(|| format!("VLAN {v}"));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Mutex<Option<anyhow::Result<&'static str>>>> =
        vlans.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, vlans.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&v) = vlans.get(i) else { break };
                let result = f(v);
                if let Err(e) = &result {
                    out.error(Some(v), e);
                }
                *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            });
        }
    });
    let mut failed: Vec<(Vlan, Kind)> = Vec::new();
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for (&v, slot) in vlans.iter().zip(results) {
        match slot.into_inner().unwrap_or_else(PoisonError::into_inner) {
            Some(Ok(what)) => *counts.entry(what).or_default() += 1,
            Some(Err(e)) => failed.push((v, kind_of(&e))),
            None => unreachable!("every VLAN is taken by a worker"),
        }
    }
    let mut parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    if !failed.is_empty() {
        parts.push(format!("{} failed", failed.len()));
    }
    out.summary(format!("{} VLANs: {}", vlans.len(), parts.join(", ")));
    match failed.first() {
        None => Ok(()),
        Some(&(_, kind)) => {
            let list: Vec<String> = failed.iter().map(|(v, _)| v.to_string()).collect();
            Err(failure(
                kind,
                format!(
                    "{} of {} VLANs failed: {}",
                    failed.len(),
                    vlans.len(),
                    list.join(", ")
                ),
            ))
        }
    }
}
