/*!
`mkheadnode selftest`: the nightly on the operator's own hypervisor. It makes an isolated lab
of its own ([`Lab`]: two transient networks, three test nodes, all named `mkheadnode-selftest-*`),
creates a throwaway headnode in it from the configured base image and settings, network-boots
a BIOS, a UEFI and a Secure Boot node against it with the test installer, checks their callbacks
and their fall to the local disk, and removes everything it made, also when interrupted
(SIGINT, SIGTERM, SIGHUP: the step in progress ends, then the clean-up runs).

The run is a sequence of named steps ([`steps`]), each timed and judged; the first failure
ends it (the rest are "not run"), the clean-up always runs (unless `--keep`), and a failed run's
serial logs are copied to [`SelftestOptions::logs_dir`] first. The result is kept as JSON for
`selftest --last` ([`save_last`], [`load_last`]). The project's smoke test runs this same code.
*/

mod checks;
mod lab;
mod steps;
pub use steps::EARLY_NOTE;

use crate::error::{failure, Kind};
use crate::host::atomic_file;
use crate::host::hypervisor::Hypervisor;
use crate::host::interrupt;
use crate::model::config::Config;
use crate::model::selftest::{Lab, Outcome, StepResult, Verdict, OVMF_DIR};
use crate::model::uri::uri_is_local;
use crate::model::vlan::Vlan;
use crate::ops::report::Reporter;
use crate::ops::session::Session;
use anyhow::Context;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the runs' labs live (one directory per VLAN, removed at each run's end).
pub const DEFAULT_WORK_DIR: &str = "/var/lib/mkheadnode-selftest";

/// Where a failed run's serial logs are kept (replaced by the next failed run's).
pub const DEFAULT_LOGS_DIR: &str = "/var/log/mkheadnode/selftest-failed";

/// The file in the state dir that holds the last run's result.
pub const LAST_FILE: &str = "selftest-last.json";

/// How a selftest runs.
#[derive(Debug, Clone)]
pub struct SelftestOptions {
    /// The VLAN of the throwaway headnode (no headnode of the operator's may have it).
    pub vlan: Vlan,
    /// Leave what the run made in place (the next run of this VLAN removes it first).
    pub keep: bool,
    /// The test installer (scripts/build-installer.sh's output).
    pub installer_dir: PathBuf,
    /// Where the lab lives while the run lasts.
    pub work_dir: PathBuf,
    /// Where a failed run's serial logs are copied.
    pub logs_dir: PathBuf,
    /// Where the OVMF firmware files are.
    pub ovmf_dir: PathBuf,
    /// How long the headnode may take to be ready.
    pub ready_timeout: Duration,
    /// How long the nodes may take to install and fall to their disks.
    pub install_timeout: Duration,
}

impl SelftestOptions {
    /// The defaults for `vlan` with `config`: the installer beside the base image.
    pub fn new(vlan: Vlan, config: &Config) -> SelftestOptions {
        SelftestOptions {
            vlan,
            keep: false,
            installer_dir: default_installer_dir(&config.base_image),
            work_dir: PathBuf::from(DEFAULT_WORK_DIR),
            logs_dir: PathBuf::from(DEFAULT_LOGS_DIR),
            ovmf_dir: PathBuf::from(OVMF_DIR),
            ready_timeout: Duration::from_secs(900),
            install_timeout: Duration::from_secs(900),
        }
    }
}

/// Refuse `uri` if it names another machine: the selftest runs on the hypervisor itself (its
/// test nodes' virtual BMC, the test installer and OVMF are this machine's).
pub fn on_this_machine(uri: &str) -> anyhow::Result<()> {
    if uri_is_local(uri) {
        return Ok(());
    }
    Err(failure(
        Kind::Usage,
        format!(
            "selftest runs on the hypervisor itself (its test nodes' virtual BMC, the test \
             installer and OVMF are this machine's), and {uri} is another machine: run \
             `mkheadnode selftest` there"
        ),
    ))
}

/// Where build-installer.sh puts the test installer for `base_image`: `installer/` beside it.
pub fn default_installer_dir(base_image: &Path) -> PathBuf {
    base_image
        .parent()
        .unwrap_or(Path::new("/"))
        .join("installer")
}

/// A run in progress: the lab, the headnode's session, and the rows so far.
pub(crate) struct Run<'a> {
    opts: &'a SelftestOptions,
    lab: Lab,
    session: Session,
    out: Reporter,
    rows: Vec<StepResult>,
    failed: bool,
    /// What the step in progress has to say of its pass (taken by its row).
    note: Option<String>,
    /// Whether the BIOS node is powered on through a virtual BMC; else why not.
    ipmi: Result<(), String>,
    /// When the nodes were powered on.
    powered: Option<Instant>,
    /// Held for the whole run: one selftest per VLAN at a time.
    _lock: Option<File>,
}

/// Run a selftest on `hv` (this machine) with the operator's `config`; its outcome. Every
/// failure is in the outcome; nothing is returned as an error.
pub fn run(hv: Hypervisor, config: &Config, opts: &SelftestOptions, out: Reporter) -> Outcome {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let clock = Instant::now();
    let lab = Lab {
        ovmf_dir: opts.ovmf_dir.clone(),
        ..Lab::new(opts.vlan, config, &opts.work_dir)
    };
    let session = Session::new(lab.headnode_config(config), hv, out);
    let mut run = Run {
        opts,
        lab,
        session,
        out,
        rows: Vec::new(),
        failed: false,
        note: None,
        ipmi: Ok(()),
        powered: None,
        _lock: None,
    };
    steps::all(&mut run);
    let logs = run.failed.then(|| run.keep_logs()).flatten();
    run.finish();
    let passed = !run.failed;
    Outcome {
        vlan: opts.vlan.id(),
        started,
        seconds: clock.elapsed().as_secs_f64(),
        passed,
        steps: run.rows,
        logs,
    }
}

impl Run<'_> {
    /// Run step `name` unless the run has failed or was interrupted: `Ok(None)` passes it,
    /// `Ok(Some(why))` skips it, an error fails it (and the run).
    fn step(&mut self, name: &str, body: impl FnOnce(&mut Self) -> anyhow::Result<Option<String>>) {
        if self.failed {
            return self.row(name, Verdict::NotRun, 0.0, String::new());
        }
        if let Some(signal) = interrupt::requested() {
            self.failed = true;
            let why = format!("interrupted by {signal}: removing what the run made");
            return self.row(name, Verdict::Fail, 0.0, why);
        }
        self.out
            .step(Some(self.opts.vlan), format!("selftest: {name}"));
        let t = Instant::now();
        let (verdict, detail) = match body(self) {
            Ok(None) => (Verdict::Pass, self.note.take().unwrap_or_default()),
            Ok(Some(why)) => (Verdict::Skip, why),
            Err(e) => {
                self.failed = true;
                (Verdict::Fail, format!("{e:#}"))
            }
        };
        self.row(name, verdict, t.elapsed().as_secs_f64(), detail);
    }

    /// Add a row (a failed one is also said at once).
    fn row(&mut self, name: &str, verdict: Verdict, seconds: f64, detail: String) {
        if verdict == Verdict::Fail {
            self.out
                .summary(format!("selftest: {name}: FAILED: {detail}"));
        }
        self.rows.push(StepResult {
            name: name.to_string(),
            verdict,
            seconds,
            detail,
        });
    }

    /// The last step: remove everything the run made and check that nothing is left (or, with
    /// `--keep`, say how it goes).
    fn finish(&mut self) {
        let t = Instant::now();
        let name = "clean up: nothing of the run left";
        if self.opts.keep {
            let why = format!(
                "kept (--keep): the lab is in {}; the next `mkheadnode selftest --vlan {}` \
                 removes it first",
                self.lab.dir.display(),
                self.opts.vlan
            );
            return self.row(name, Verdict::Skip, 0.0, why);
        }
        if self._lock.is_none() {
            // Stopped before it held the VLAN's lock: it made nothing, and what is there may be
            // another run's.
            let why = "nothing was made: the run stopped before it started the lab".to_string();
            return self.row(name, Verdict::Pass, 0.0, why);
        }
        self.out
            .step(Some(self.opts.vlan), format!("selftest: {name}"));
        match self.remove_lab().and_then(|_| self.left_behind()) {
            Ok(left) if left.is_empty() => {
                // Last, the lock (held until the process ends; a run that starts meanwhile
                // makes a new one) and the work dir if no other VLAN's run is in it.
                let _ = std::fs::remove_file(self.lock_path());
                let _ = std::fs::remove_dir(&self.opts.work_dir);
                self.row(
                    name,
                    Verdict::Pass,
                    t.elapsed().as_secs_f64(),
                    String::new(),
                );
            }
            Ok(left) => {
                self.failed = true;
                let why = format!("left behind: {}", left.join(", "));
                self.row(name, Verdict::Fail, t.elapsed().as_secs_f64(), why);
            }
            Err(e) => {
                self.failed = true;
                self.row(
                    name,
                    Verdict::Fail,
                    t.elapsed().as_secs_f64(),
                    format!("{e:#}"),
                );
            }
        }
    }

    /// Copy the serial logs to the logs dir (replacing an earlier failed run's); where, if any
    /// could be copied.
    fn keep_logs(&self) -> Option<PathBuf> {
        let dir = &self.opts.logs_dir;
        let logs = self.lab.path("log");
        let entries = std::fs::read_dir(&logs).ok()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).ok()?;
        let mut kept = 0;
        for entry in entries.flatten() {
            if std::fs::copy(entry.path(), dir.join(entry.file_name())).is_ok() {
                kept += 1;
            }
        }
        (kept > 0).then(|| dir.clone())
    }
}

/// Where the last result is kept in `state_dir`.
pub fn last_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LAST_FILE)
}

/// Keep `outcome` as the last result, atomically.
pub fn save_last(state_dir: &Path, outcome: &Outcome) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    let json = serde_json::to_vec_pretty(outcome).context("serializing the selftest result")?;
    atomic_file::replace_as(&last_path(state_dir), &json, 0o644, (0, 0))
        .context("keeping the selftest result")
}

/// The last result kept in `state_dir`.
pub fn load_last(state_dir: &Path) -> anyhow::Result<Outcome> {
    let path = last_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(failure(
                Kind::NotFound,
                format!(
                    "no selftest has run yet ({} does not exist): `mkheadnode selftest` runs \
                     one",
                    path.display()
                ),
            ))
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text).map_err(|e| {
        failure(
            Kind::Other,
            format!(
                "{} is not a selftest result ({e}): remove it; the next run writes it anew",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;

    #[test]
    fn the_last_result_round_trips_and_its_absence_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_last(dir.path()).unwrap_err();
        assert_eq!(kind_of(&err), Kind::NotFound);
        assert!(format!("{err:#}").contains("`mkheadnode selftest` runs one"));
        let outcome = Outcome {
            vlan: 4094,
            started: 1,
            seconds: 2.0,
            passed: true,
            steps: vec![],
            logs: None,
        };
        save_last(&dir.path().join("state"), &outcome).unwrap();
        assert_eq!(load_last(&dir.path().join("state")).unwrap(), outcome);
        std::fs::write(last_path(dir.path()), "{").unwrap();
        let err = load_last(dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("is not a selftest result"),
            "{err:#}"
        );
    }

    #[test]
    fn the_installer_is_found_beside_the_base_image() {
        assert_eq!(
            default_installer_dir(Path::new("/var/lib/mkheadnode/base/debian.qcow2")),
            Path::new("/var/lib/mkheadnode/base/installer")
        );
    }
}
