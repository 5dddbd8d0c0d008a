/*!
Running `image push` and `image list`: on `--connect URI`, on the hosts `--host NAME` picks, or
on every host of the fleet (in parallel), with a progress bar per host on standard error.
*/

use crate::cli::args::{GlobalArgs, ImageCommand};
use crate::cli::fleet;
use crate::error::{failure, kind_of, Kind};
use crate::host::interrupt;
use crate::model::config::Config;
use crate::model::image::short;
use crate::ops::images::{ImageRow, Phase, Progress, PushOutcome};
use crate::ops::report::{Reporter, Verbosity};
use crate::ops::session::Session;
use crate::render::table::aligned;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::path::Path;

/// `image push|list`.
pub fn run(
    g: &GlobalArgs,
    config: Config,
    out: Reporter,
    action: &ImageCommand,
) -> anyhow::Result<()> {
    match action {
        ImageCommand::Push { file } => {
            let file = file.clone().unwrap_or_else(|| config.base_image.clone());
            push(g, &config, out, &file)
        }
        ImageCommand::List { verify, json } => list(g, &config, out, *verify, *json),
    }
}

/// A progress bar (hidden with `-q`, or where standard error is not a terminal).
fn bar(bars: &MultiProgress, out: Reporter, label: &str) -> ProgressBar {
    if out.verbosity == Verbosity::Quiet {
        return ProgressBar::hidden();
    }
    let bar = bars.add(ProgressBar::new(0));
    let style = ProgressStyle::with_template(
        "{prefix}: {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix(label.to_string());
    bar
}

/// What a bar says in each phase.
fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Hashing => "hashing",
        Phase::Uploading => "uploading",
        Phase::Verifying => "reading back",
    }
}

/// `work` on each host (see [`fleet::each_host`]), with a progress bar of its own.
fn on_each_host<T: Send>(
    g: &GlobalArgs,
    config: &Config,
    out: Reporter,
    work: impl Fn(&Session, Progress) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<(Option<String>, anyhow::Result<T>)>> {
    let bars = MultiProgress::new();
    fleet::each_host(g, config, out, |session| {
        let bar = bar(&bars, out, session.hv.uri());
        let result = work(session, &|phase, done, total| {
            bar.set_message(phase_word(phase));
            bar.set_length(total);
            bar.set_position(done);
        });
        bar.finish_and_clear();
        result
    })
}

/// How a host is called in messages: its fleet name, or its URI.
fn label(host: Option<&String>, g: &GlobalArgs) -> String {
    host.cloned().unwrap_or_else(|| g.uri().to_string())
}

fn push(g: &GlobalArgs, config: &Config, out: Reporter, file: &Path) -> anyhow::Result<()> {
    if g.dry_run {
        println!("would push {} to {}", file.display(), g.uri());
        return Ok(());
    }
    interrupt::install()?;
    let results = on_each_host(g, config, out, |session, progress| {
        session.push_image(file, progress)
    })?;
    let mut failed = Vec::new();
    for (host, result) in &results {
        let host = label(host.as_ref(), g);
        match result {
            Ok(PushOutcome::AlreadyThere(p)) => out.summary(format!(
                "{host}: {} ({}) is there already, recorded, as {}",
                p.id.name,
                p.id.short(),
                p.path.display()
            )),
            Ok(PushOutcome::Uploaded { image, resumed_at }) => {
                let resumed = match resumed_at {
                    0 => String::new(),
                    n => format!(", resumed at byte {n}"),
                };
                out.summary(format!(
                    "{host}: pushed {} ({}, {} bytes{resumed}) as {}; read back and verified",
                    image.id.name,
                    image.id.short(),
                    image.size,
                    image.path.display()
                ));
            }
            Err(e) => {
                out.summary(format!("{host}: error: {e:#}"));
                failed.push((host, e));
            }
        }
    }
    finish(failed, results.len(), "push")
}

/// The error of a run over hosts: the one host's own error, or which of several failed.
fn finish(
    mut failed: Vec<(String, &anyhow::Error)>,
    hosts: usize,
    what: &str,
) -> anyhow::Result<()> {
    let Some((_, first)) = failed.first() else {
        return Ok(());
    };
    let kind = kind_of(first);
    if hosts == 1 {
        let (_, e) = failed.remove(0);
        return Err(failure(kind, format!("{e:#}")));
    }
    let names: Vec<String> = failed.into_iter().map(|(h, _)| h).collect();
    Err(failure(
        kind,
        format!(
            "{what} failed on {} of {hosts} hosts: {}",
            names.len(),
            names.join(", ")
        ),
    ))
}

fn list(
    g: &GlobalArgs,
    config: &Config,
    out: Reporter,
    verify: bool,
    json: bool,
) -> anyhow::Result<()> {
    let results = on_each_host(g, config, out, |session, progress| {
        session.images(verify, progress)
    })?;
    let mut rows: Vec<ImageRow> = Vec::new();
    let mut failed = Vec::new();
    for (host, result) in &results {
        match result {
            Ok(found) => rows.extend(found.iter().cloned().map(|mut r| {
                r.host.clone_from(host);
                r
            })),
            Err(e) => {
                out.error(None, e);
                failed.push((label(host.as_ref(), g), e));
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    finish(failed, results.len(), "image list")?;
    let corrupt: Vec<String> = rows
        .iter()
        .filter(|r| r.state == "corrupt")
        .map(|r| format!("{} ({})", r.path, r.host.as_deref().unwrap_or(g.uri())))
        .collect();
    if corrupt.is_empty() {
        return Ok(());
    }
    Err(failure(
        Kind::Other,
        format!(
            "{} read back with another checksum than its record's: do not make headnodes from \
             it; remove it (`virsh vol-delete PATH`) and push the image again",
            corrupt.join(", ")
        ),
    ))
}

/// The rows as an aligned table, with a HOST column where any row has a host.
fn table(rows: &[ImageRow]) -> String {
    let hosts = rows.iter().any(|r| r.host.is_some());
    let header = ["HOST", "NAME", "SHA256", "SIZE", "STATE", "LOCAL", "PATH"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.host.clone().unwrap_or_default(),
                r.name.clone(),
                r.sha256.as_deref().map(short).unwrap_or("-").to_string(),
                r.size.to_string(),
                r.state.clone(),
                match r.matches_local {
                    Some(true) => "matches",
                    Some(false) => "differs",
                    None => "-",
                }
                .to_string(),
                r.path.clone(),
            ]
        })
        .collect();
    aligned(&header, &cells, !hosts)
}
