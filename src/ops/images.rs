/*!
Base images on a hypervisor: `image push` (upload, resume, verify by reading back, record),
`image list`, and which base image a create uses there (pushing it first if asked).

A push goes step by step (see [`Session::push_image`]): identify the file (its checksum), take
the host's push lock, look at what the pool holds, resume or start the volume, upload, read it
back and compare, and only then write the record. An upload cut short (Ctrl-C, kill -9, a lost
connection) leaves a volume without a record, which no create ever uses; the next push of the
same file resumes it, and reads the whole of it back before recording it. A volume whose
checksum read back differs is deleted, never recorded.
*/

use crate::error::{failure, Kind};
use crate::host::hostprep;
use crate::host::image_store::{sha256_of_file, ImageStore, Listing, Partial};
use crate::host::images::BaseImage;
use crate::host::interrupt;
use crate::model::image::{name_problem, resume_offset, short, ImageId, Pushed};
use crate::ops::base_image::{base_image_on, current_sha, local_sha, pushed, wanted_name};
use crate::ops::checkpoint;
use crate::ops::session::Session;
use anyhow::Context as _;
use serde::Serialize;
use std::path::Path;

/// What a push or a verification is doing, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Hashing the file on this machine.
    Hashing,
    /// Uploading it.
    Uploading,
    /// Reading it back from the hypervisor.
    Verifying,
}

/// Told the phase, the bytes done and the total, as a push goes.
pub type Progress<'p> = &'p (dyn Fn(Phase, u64, u64) + Sync);

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The image was there already, recorded.
    AlreadyThere(Pushed),
    /// It was uploaded (from `resumed_at`, 0 for a whole upload), read back and recorded.
    Uploaded {
        /// The image as the host now holds it.
        image: Pushed,
        /// Where the upload began: the bytes an earlier, interrupted push had left.
        resumed_at: u64,
    },
}

/// One image volume of a host, as `image list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRow {
    /// The host of the fleet (absent in a run on one hypervisor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The file name it was pushed from.
    pub name: String,
    /// Its SHA-256 as recorded (absent for an incomplete one).
    pub sha256: Option<String>,
    /// The bytes its volume holds.
    pub size: u64,
    /// `complete`, `incomplete` (no record: an upload cut short; push again to resume) or
    /// `corrupt` (`--verify` read back another checksum than the record's).
    pub state: String,
    /// Whether it is the image at `base_image` on this machine: `null` where it is of another
    /// name, or this machine has no such file.
    pub matches_local: Option<bool>,
    /// Its volume's path on the host.
    pub path: String,
    /// When it was recorded (seconds since the epoch, the host's clock).
    pub recorded_at: Option<u64>,
}

impl Session {
    /// Push the file at `file` into this host's image pool: see the module docs.
    pub fn push_image(&self, file: &Path, progress: Progress) -> anyhow::Result<PushOutcome> {
        let (id, size) = self.identify(file, progress)?;
        let _lock = hostprep::lock_file(&self.config.lock_dir.join("image-push.lock"))?;
        let store = ImageStore::ensure(&self.hv, &self.config)?;
        let listing = store.list()?;
        if let Some(done) = listing.complete.iter().find(|p| p.id == id) {
            return Ok(PushOutcome::AlreadyThere(done.clone()));
        }
        let resumed_at = self.start_or_resume(&store, &listing, &id, size)?;
        if resumed_at < size {
            self.upload(&store, &id, file, resumed_at, size, progress)?;
        }
        checkpoint::pause_if_asked(&format!("image {}", id.name), "image-uploaded");
        self.verify_upload(&store, &id, size, progress)?;
        store.write_record(&id)?;
        let image = store
            .list()?
            .complete
            .into_iter()
            .find(|p| p.id == id)
            .with_context(|| format!("the record of {} is not read back", id.volume()))?;
        Ok(PushOutcome::Uploaded { image, resumed_at })
    }

    /// The image `file` is: its file name and checksum, and its size.
    fn identify(&self, file: &Path, progress: Progress) -> anyhow::Result<(ImageId, u64)> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(problem) = name_problem(&name) {
            return Err(failure(
                Kind::Usage,
                format!("{}: {problem}", file.display()),
            ));
        }
        let meta = std::fs::metadata(file).map_err(|e| {
            failure(
                Kind::NotFound,
                format!(
                    "cannot read the image {}: {e}; give the path of a base image on this machine",
                    file.display()
                ),
            )
        })?;
        if !meta.is_file() {
            return Err(failure(
                Kind::Usage,
                format!(
                    "{} is not a file: give the path of a base image on this machine",
                    file.display()
                ),
            ));
        }
        let total = meta.len();
        let (sha256, size) = sha256_of_file(file, &self.config.lock_dir, &mut |done| {
            progress(Phase::Hashing, done, total);
        })?;
        Ok((ImageId { name, sha256 }, size))
    }

    /// Where the upload of `id` starts: in the volume an interrupted push left (at the last
    /// whole piece it holds), or at 0 in a new one.
    fn start_or_resume(
        &self,
        store: &ImageStore,
        listing: &Listing,
        id: &ImageId,
        size: u64,
    ) -> anyhow::Result<u64> {
        let volume = id.volume();
        let Some(Partial { have, .. }) = listing.partial.iter().find(|p| p.volume == volume) else {
            store.create(id)?;
            return Ok(0);
        };
        let offset = resume_offset(*have, size);
        if offset == 0 {
            store.delete(&volume)?;
            store.create(id)?;
        }
        self.out.step(
            None,
            format!("{volume}: an earlier push left {have} of {size} bytes; resuming at {offset}"),
        );
        Ok(offset)
    }

    /// Upload `file` from `offset` into `id`'s volume. A signal stops it after the piece in
    /// progress, leaving what was sent for the next push to resume.
    fn upload(
        &self,
        store: &ImageStore,
        id: &ImageId,
        file: &Path,
        offset: u64,
        size: u64,
        progress: Progress,
    ) -> anyhow::Result<()> {
        use std::io::{Seek as _, SeekFrom};
        let vol = store
            .volume(&id.volume())?
            .with_context(|| format!("volume {} went away", id.volume()))?;
        let mut source =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        source
            .seek(SeekFrom::Start(offset))
            .with_context(|| format!("reading {}", file.display()))?;
        let what = format!("image {}", id.name);
        let mut paused = false;
        store
            .hypervisor()
            .upload_at(&vol, offset, size - offset, &mut source, &mut |sent| {
                let done = offset + sent;
                progress(Phase::Uploading, done, size);
                if !paused && done >= size / 2 {
                    paused = true;
                    checkpoint::pause_if_asked(&what, "image-upload-half");
                }
                match interrupt::requested() {
                    None => Ok(()),
                    Some(signal) => Err(failure(
                        Kind::Other,
                        format!(
                            "interrupted by {signal} after {done} of {size} bytes: run the same \
                             push again to resume"
                        ),
                    )),
                }
            })
    }

    /// Read the volume of `id` back and compare its size and checksum with the file's; a
    /// volume that differs is deleted, never recorded.
    fn verify_upload(
        &self,
        store: &ImageStore,
        id: &ImageId,
        size: u64,
        progress: Progress,
    ) -> anyhow::Result<()> {
        let volume = id.volume();
        let vol = store
            .volume(&volume)?
            .with_context(|| format!("volume {volume} went away"))?;
        let have = store.bytes(&vol)?;
        let (sha256, read) = store.sha256_of_volume(&vol, have, &mut |done| {
            progress(Phase::Verifying, done, have);
        })?;
        if read == size && sha256 == id.sha256 {
            return Ok(());
        }
        store.delete(&volume)?;
        Err(failure(
            Kind::Other,
            format!(
                "the upload of {} is corrupt: read back from {} it has {read} bytes with SHA-256 \
                 {}, not {size} bytes with {}. Deleted it, unrecorded; push it again",
                id.name,
                self.hv.uri(),
                short(&sha256),
                id.short()
            ),
        ))
    }

    /// The image volumes of this host; with `verify`, each complete one read back and
    /// compared with its record.
    pub fn images(&self, verify: bool, progress: Progress) -> anyhow::Result<Vec<ImageRow>> {
        let Some(store) = ImageStore::existing(&self.hv, &self.config)? else {
            return Ok(Vec::new());
        };
        let listing = store.list()?;
        let local = local_sha(&self.config)?;
        let wanted = wanted_name(&self.config);
        let matches = |name: &str, sha: &str| {
            (name == wanted)
                .then_some(local.as_deref())
                .flatten()
                .map(|l| l == sha)
        };
        let mut rows = Vec::new();
        for p in &listing.complete {
            let state = if verify && !self.intact(&store, p, progress)? {
                "corrupt"
            } else {
                "complete"
            };
            rows.push(ImageRow {
                host: None,
                name: p.id.name.clone(),
                sha256: Some(p.id.sha256.clone()),
                size: p.size,
                state: state.into(),
                matches_local: matches(&p.id.name, &p.id.sha256),
                path: p.path.display().to_string(),
                recorded_at: Some(p.recorded_at),
            });
        }
        for p in &listing.partial {
            rows.push(ImageRow {
                host: None,
                name: p.name.clone(),
                sha256: None,
                size: p.have,
                state: "incomplete".into(),
                matches_local: None,
                path: self.config.image_dir.join(&p.volume).display().to_string(),
                recorded_at: None,
            });
        }
        rows.sort_by(|a, b| (&a.name, a.recorded_at).cmp(&(&b.name, b.recorded_at)));
        Ok(rows)
    }

    /// Whether the pushed image `p` still reads back as its record says.
    fn intact(&self, store: &ImageStore, p: &Pushed, progress: Progress) -> anyhow::Result<bool> {
        let vol = store
            .volume(&p.id.volume())?
            .with_context(|| format!("volume {} went away", p.id.volume()))?;
        let (sha256, read) = store.sha256_of_volume(&vol, p.size, &mut |done| {
            progress(Phase::Verifying, done, p.size);
        })?;
        Ok(read == p.size && sha256 == p.id.sha256)
    }

    /// The checksum of the image a create would use on this host now, where known, without
    /// making or pushing anything (for `list`).
    pub fn current_image_sha(&self) -> anyhow::Result<Option<String>> {
        current_sha(&self.hv, &self.config)
    }

    /// The base image a create uses on this host (see [`base_image_on`]); with `push`, this
    /// machine's base image is pushed first unless the host has it pushed already.
    pub fn resolve_base_image(&self, push: bool) -> anyhow::Result<BaseImage> {
        let (hv, config) = (&self.hv, &self.config);
        if push {
            if let Some(local) = local_sha(config)? {
                let wanted = wanted_name(config);
                let there = pushed(hv, config)?
                    .iter()
                    .any(|p| p.id.name == wanted && p.id.sha256 == local);
                if !there {
                    let base = config.base_image.display();
                    self.out
                        .step(None, format!("pushing {base} to {} first", hv.uri()));
                    self.push_image(&config.base_image, &|_, _, _| {})?;
                }
            }
        }
        base_image_on(hv, config)
    }
}
