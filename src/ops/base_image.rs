/*!
Which base image a create uses on a host, read through libvirt without changing anything there
(see [`crate::model::image::choose`]): the pushed image of the configured `base_image`'s file
name and this machine's checksum of it, else the newest of that name (where this machine has no
such file), else a file at the configured path there.
*/

use crate::error::{failure, Kind};
use crate::host::hypervisor::Hypervisor;
use crate::host::image_store::{sha256_of_file, ImageStore};
use crate::host::images::{base_image_info, BaseImage};
use crate::model::config::Config;
use crate::model::image::{choose, BaseChoice, Pushed};

/// The file name of the configured base image.
pub fn wanted_name(config: &Config) -> String {
    config
        .base_image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The checksum of the configured base image on this machine, if it is here.
pub fn local_sha(config: &Config) -> anyhow::Result<Option<String>> {
    if !config.base_image.is_file() {
        return Ok(None);
    }
    let (sha, _) = sha256_of_file(&config.base_image, &config.lock_dir, &mut |_| {})?;
    Ok(Some(sha))
}

/// The complete pushed images of the host (none if it has no image pool).
pub fn pushed(hv: &Hypervisor, config: &Config) -> anyhow::Result<Vec<Pushed>> {
    Ok(match ImageStore::existing(hv, config)? {
        Some(store) => store.list()?.complete,
        None => Vec::new(),
    })
}

/// The checksum of the image a create would use on the host now, where known.
pub fn current_sha(hv: &Hypervisor, config: &Config) -> anyhow::Result<Option<String>> {
    let local = local_sha(config)?;
    let pushed = pushed(hv, config)?;
    Ok(
        match choose(&wanted_name(config), local.as_deref(), &pushed, false) {
            BaseChoice::Pushed(p) => Some(p.id.sha256),
            _ if hv.is_local() => local,
            _ => None,
        },
    )
}

/// The base image a create uses on the host, with its size, format and (where known)
/// checksum. Where the host has none, an error of kind `NotFound` says how to push it.
pub fn base_image_on(hv: &Hypervisor, config: &Config) -> anyhow::Result<BaseImage> {
    let local = local_sha(config)?;
    let wanted = wanted_name(config);
    let pushed = pushed(hv, config)?;
    let choice = match choose(&wanted, local.as_deref(), &pushed, false) {
        BaseChoice::Missing(why) => {
            // Only now look for a copy at the configured path (which, on another machine,
            // defines a pool for its directory).
            let at_path = base_image_info(hv, &config.base_image).is_ok();
            match choose(&wanted, local.as_deref(), &pushed, at_path) {
                BaseChoice::Missing(_) => {
                    return Err(missing_base(hv, config, &why, local.is_some()))
                }
                other => other,
            }
        }
        other => other,
    };
    let (path, sha256) = match choice {
        BaseChoice::Pushed(p) => (p.path, Some(p.id.sha256)),
        _ if hv.is_local() => (config.base_image.clone(), local),
        _ => (config.base_image.clone(), None),
    };
    let (size, format) = base_image_info(hv, &path)?;
    Ok(BaseImage {
        path,
        size,
        format,
        sha256,
    })
}

/// The error for a host without the configured base image: why, and the command that fixes
/// it (`here`: whether this machine has the image to push).
fn missing_base(hv: &Hypervisor, config: &Config, why: &str, here: bool) -> anyhow::Error {
    let base = config.base_image.display();
    let uri = hv.uri();
    let push = format!("`mkheadnode image push --connect '{uri}' {base}`");
    let message = match (here, hv.is_local()) {
        (true, _) => format!(
            "base image {base} is not on {uri}: {why}, nor a file at that path there; push it: \
             {push} (or create with --push-image)"
        ),
        (false, true) => format!(
            "base image {base} does not exist on {uri} ({why}): build one there (`make image`) \
             or point base_image / --base-image at a cloud image there"
        ),
        (false, false) => format!(
            "base image {base} does not exist on this machine, and {uri} has none ({why}, nor \
             a file at that path there): put the image at {base} here (`make image` builds \
             one) and push it: {push}"
        ),
    };
    failure(Kind::NotFound, message)
}
