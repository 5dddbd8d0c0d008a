/*!
`profile add`, `profile list` and `profile remove`: install profiles in a VLAN's config dir
(`profiles/<name>/`, shared into the headnode), under that VLAN's lock, and published in a
running headnode at once, without a reboot: through its guest agent, its
`mkheadnode-profiles` unit runs again, which publishes what is on the share and drops what is
no longer there. A headnode that does not run publishes them at its next boot.

A profile is validated before anything is copied (see `model::profile`), and its copy again
before it replaces the old one, which it does atomically (`host::profile_store`).
*/

use crate::error::{failure, Kind};
use crate::host::agent::GuestAgent;
use crate::host::hostprep;
use crate::host::profile_store::{self, profiles_dir, Stored};
use crate::model::profile::{validate, Contents, Summary};
use crate::model::vlan::Vlan;
use crate::ops::guest::{self, Found};
use crate::ops::session::Session;
use crate::render::seed::{PROFILES_UNIT, RESERVED_NAMES};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A profile directory, read and validated.
#[derive(Debug, Clone)]
pub struct Source {
    /// The profile's name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// What it holds.
    pub contents: Contents,
    /// What it offers.
    pub summary: Summary,
}

fn invalid(what: &str, problems: &[String]) -> anyhow::Error {
    failure(
        Kind::Usage,
        format!(
            "{what} is not a valid profile:\n  {}",
            problems.join("\n  ")
        ),
    )
}

/// Read `dir` as profile `name` and validate it; the error lists every problem.
pub fn load_source(name: &str, dir: &Path) -> anyhow::Result<Source> {
    let contents = profile_store::read_contents(dir)?;
    let summary = validate(name, &contents, RESERVED_NAMES)
        .map_err(|problems| invalid(&dir.display().to_string(), &problems))?;
    Ok(Source {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        contents,
        summary,
    })
}

/// Whether the headnode has the change now, or will at its next boot (and why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// Published now; what the publishing said.
    Now(Vec<String>),
    /// Not now: why, and when it will be.
    Later(String),
}

/// One profile as `profile list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileRow {
    /// The VLAN.
    pub vlan: u16,
    /// The profile's name.
    pub name: String,
    /// The loaders it boots: `BIOS`, `UEFI`.
    pub loaders: Vec<&'static str>,
    /// Its size in bytes.
    pub bytes: u64,
    /// How many files it has.
    pub files: usize,
}

impl ProfileRow {
    /// The row of profile `stored` of `vlan`.
    pub fn of(vlan: Vlan, stored: Stored) -> ProfileRow {
        ProfileRow {
            vlan: vlan.id(),
            loaders: stored.loaders(),
            bytes: stored.contents.bytes(),
            files: stored.contents.files.len(),
            name: stored.name,
        }
    }
}

/// How long the headnode may take to publish (it copies every profile).
const PUBLISH_LIMIT: Duration = Duration::from_secs(600);
/// How long a quick command in the guest may take.
const QUICK_LIMIT: Duration = Duration::from_secs(30);

impl Session {
    /// The profiles folder `vlan`'s headnode shares (its config dir's, from its metadata, or
    /// the configured one if there is no headnode yet), and the headnode.
    fn profiles_of(&self, vlan: Vlan) -> anyhow::Result<(PathBuf, Option<Found>)> {
        let found = self.headnode(vlan)?;
        let config_dir = match &found {
            Some(f) => f.config_dir.clone(),
            None => self.config.config_root.join(vlan.to_string()),
        };
        Ok((profiles_dir(&config_dir), found))
    }

    /// Copy `source` into `vlan`'s config dir, replacing a profile of its name atomically, and
    /// publish it. `progress` gets the bytes copied and the total. Returns whether one was
    /// replaced, and the publication.
    pub fn profile_add(
        &self,
        vlan: Vlan,
        source: &Source,
        progress: &mut dyn FnMut(u64, u64),
    ) -> anyhow::Result<(bool, Publication)> {
        let _lock = hostprep::lock_vlan(&self.config.lock_dir, vlan)?;
        if !self.hv.is_local() {
            return self.profile_add_remote(vlan, source, progress);
        }
        let (profiles, found) = self.profiles_of(vlan)?;
        let staged = profile_store::stage(&source.dir, &profiles, &source.name, progress)?;
        let copied = profile_store::read_contents(staged.path())?;
        validate(&source.name, &copied, RESERVED_NAMES).map_err(|problems| {
            invalid(
                &format!("its copy (did {} change meanwhile?)", source.dir.display()),
                &problems,
            )
        })?;
        let replaced = staged.commit()?;
        // Copies made from another machine would count over this one: they go.
        let dropped = profile_store::drop_generations(&profiles, &source.name, RESERVED_NAMES)?;
        Ok((replaced || dropped, self.publish(vlan, found)?))
    }

    /// Remove profile `name` from `vlan`'s config dir and unpublish it.
    pub fn profile_remove(&self, vlan: Vlan, name: &str) -> anyhow::Result<Publication> {
        let _lock = hostprep::lock_vlan(&self.config.lock_dir, vlan)?;
        if !self.hv.is_local() {
            return self.profile_remove_remote(vlan, name);
        }
        let (profiles, found) = self.profiles_of(vlan)?;
        let generations = profile_store::drop_generations(&profiles, name, RESERVED_NAMES)?;
        if !profile_store::remove(&profiles, name)? && !generations {
            return Err(failure(
                Kind::NotFound,
                format!("no profile {name} in {}", profiles.display()),
            ));
        }
        self.publish(vlan, found)
    }

    /// Every VLAN with a headnode of ours or a config dir under the configured root (on
    /// another machine: a config pool of ours), in order.
    pub fn profile_vlans(&self) -> anyhow::Result<Vec<Vlan>> {
        let mut vlans: BTreeSet<Vlan> = self
            .hv
            .headnodes()?
            .into_iter()
            .map(|(_, m)| m.vlan)
            .collect();
        if !self.hv.is_local() {
            vlans.extend(self.config_pool_vlans()?);
        } else if let Ok(entries) = std::fs::read_dir(&self.config.config_root) {
            for entry in entries.flatten() {
                let vlan = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<Vlan>().ok());
                if let Some(v) = vlan.filter(|_| entry.path().is_dir()) {
                    vlans.insert(v);
                }
            }
        }
        Ok(vlans.into_iter().collect())
    }

    /// The profiles in `vlan`'s config dir.
    pub fn profile_list(&self, vlan: Vlan) -> anyhow::Result<Vec<ProfileRow>> {
        if !self.hv.is_local() {
            return self.profile_list_remote(vlan);
        }
        let (profiles, _) = self.profiles_of(vlan)?;
        Ok(profile_store::list(&profiles, RESERVED_NAMES)?
            .into_iter()
            .map(|p| ProfileRow::of(vlan, p))
            .collect())
    }

    /// Publish the share's profiles in the headnode, if it runs.
    pub(super) fn publish(&self, vlan: Vlan, found: Option<Found>) -> anyhow::Result<Publication> {
        let Some(found) = found else {
            return Ok(Publication::Later(
                "no headnode yet: it publishes its profiles when it is created".into(),
            ));
        };
        let Some(agent) = found.agent else {
            return Ok(Publication::Later(format!(
                "{} is {}: it publishes its profiles at its next boot",
                found.name, found.state
            )));
        };
        let in_place = "the config dir has the change; the headnode publishes it at its next \
                        boot, or at once by `systemctl restart mkheadnode-profiles` in it";
        guest::ping(&agent, vlan).map_err(|e| e.context(in_place))?;
        let restart = ["restart".to_string(), PROFILES_UNIT.to_string()];
        let status = guest::run(&agent, "/bin/systemctl", &restart, PUBLISH_LIMIT)?;
        if !status.success() {
            return Err(failure(
                Kind::Other,
                format!(
                    "publishing in {} failed (systemctl restart {PROFILES_UNIT}: {}): {}. See \
                     `journalctl -u {PROFILES_UNIT}` in it; {in_place}",
                    agent.name(),
                    status.outcome(),
                    guest::output_text(&status.stderr)
                ),
            ));
        }
        Ok(Publication::Now(publish_log(&agent)))
    }
}

/// What the profiles unit printed when it last ran (from its journal, by invocation); best
/// effort, since only the exit status says whether it worked.
fn publish_log(agent: &GuestAgent) -> Vec<String> {
    let run = |path: &str, args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        guest::run(agent, path, &args, QUICK_LIMIT)
            .ok()
            .filter(|s| s.success())
            .map(|s| guest::output_text(&s.stdout))
    };
    let show = ["show", "-P", "InvocationID", PROFILES_UNIT];
    let Some(id) = run("/bin/systemctl", &show) else {
        return Vec::new();
    };
    let matching = format!("_SYSTEMD_INVOCATION_ID={}", id.trim());
    // journald may take a moment to write what the unit printed.
    for _ in 0..3 {
        let lines = run("/bin/journalctl", &["-o", "cat", "--no-pager", &matching]);
        if let Some(text) = lines.filter(|t| !t.trim().is_empty()) {
            return text.lines().map(str::to_string).collect();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Vec::new()
}

/// Bytes as a short size: `812 B`, `3.4 MiB`.
pub fn size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Profiles as a table.
pub fn table(rows: &[ProfileRow]) -> String {
    let mut out = format!(
        "{:<5} {:<24} {:<10} {:>10} {:>6}\n",
        "VLAN", "NAME", "LOADERS", "SIZE", "FILES"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<5} {:<24} {:<10} {:>10} {:>6}\n",
            r.vlan,
            r.name,
            r.loaders.join(","),
            size(r.bytes),
            r.files
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_table() {
        assert_eq!(size(812), "812 B");
        assert_eq!(size(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
        let t = table(&[ProfileRow {
            vlan: 42,
            name: "debian".into(),
            loaders: vec!["BIOS", "UEFI"],
            bytes: 50 << 20,
            files: 4,
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1],
            "42    debian                   BIOS,UEFI    50.0 MiB      4"
        );
        assert_eq!(
            lines[0].find("SIZE").map(|i| i + 4),
            lines[1].find("MiB").map(|i| i + 3)
        );
    }

    #[test]
    fn load_source_lists_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pxelinux.cfg"), "KERNEL deb/linux\n").unwrap();
        std::fs::write(dir.path().join("ks.cfg"), "@FOO@\n").unwrap();
        let err = load_source("deb", dir.path()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("no file linux") && msg.contains("@FOO@"),
            "{msg}"
        );
        std::fs::write(dir.path().join("linux"), "k").unwrap();
        std::fs::write(dir.path().join("ks.cfg"), "@HEADNODE@\n").unwrap();
        let ok = load_source("deb", dir.path()).unwrap();
        assert_eq!(ok.summary.loaders, vec!["BIOS"]);
    }
}
