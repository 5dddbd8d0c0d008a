/*!
Base images pushed to a hypervisor (`mkheadnode image push`), as pure names and rules.

A pushed image is a volume of our image pool whose name carries the first 16 hex digits of its
SHA-256 (`debian-12-headnode.qcow2` → `debian-12-headnode.3f2a9c1d0b7e5a44.qcow2`), and it is
complete only once its *record* exists: a second volume, `<volume>.sha256`, in `sha256sum`
format (`<64 hex digits>  <volume>`), written after the volume was read back and its checksum
matched. libvirt cannot rename a volume, so the name is final from the first byte on; the
record, which names the full checksum, is what tells a complete image from an interrupted
upload. A record that does not parse, or whose checksum does not start with the digits of the
volume's name, is no record.

Which image a headnode is made from ([`choose`]): the configured `base_image` names a file on
this machine; on a host, it resolves to the pushed image of the same file name and the same
checksum as that file, else (where this machine has no such file) to the newest pushed image of
that name, else to a file at the configured path on the host itself (one copied there by hand,
which mkheadnode cannot vouch for).
*/

use std::path::PathBuf;

/// How many hex digits of the checksum a volume's name carries.
pub const NAME_DIGITS: usize = 16;

/// What ends the name of a record volume.
pub const RECORD_SUFFIX: &str = ".sha256";

/// An upload resumes at a multiple of this many bytes (the last, perhaps torn, piece that the
/// hypervisor wrote is sent again).
pub const RESUME_GRAIN: u64 = 1 << 20;

/// One image: its file name, checksum and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageId {
    /// The file name it was pushed from (`debian-12-headnode.qcow2`).
    pub name: String,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

impl ImageId {
    /// The name of its volume: the checksum's first digits before the extension.
    pub fn volume(&self) -> String {
        let digits = &self.sha256[..NAME_DIGITS.min(self.sha256.len())];
        match self.name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{digits}.{ext}"),
            _ => format!("{}.{digits}", self.name),
        }
    }

    /// The name of its record volume.
    pub fn record_volume(&self) -> String {
        format!("{}{RECORD_SUFFIX}", self.volume())
    }

    /// The record's text, as `sha256sum` writes it (so `sha256sum -c` checks it on the host).
    pub fn record_text(&self) -> String {
        format!("{}  {}\n", self.sha256, self.volume())
    }

    /// The checksum's first 12 digits, for tables.
    pub fn short(&self) -> &str {
        short(&self.sha256)
    }
}

/// The first 12 digits of a checksum, for tables.
pub fn short(sha256: &str) -> &str {
    &sha256[..12.min(sha256.len())]
}

/// Why `name` cannot be pushed as an image, if it cannot: it must be a plain file name of
/// letters, digits, `.`, `_` and `-`, not start with `.`, and not end like a record.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.starts_with('.') {
        return Some(format!(
            "image name `{name}` is empty or starts with `.`: name the file plainly"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Some(format!(
            "image name `{name}` has characters other than letters, digits, `.`, `_` and `-`: \
             rename the file"
        ));
    }
    if name.ends_with(RECORD_SUFFIX) {
        return Some(format!(
            "image name `{name}` ends in {RECORD_SUFFIX}, which marks the records of pushed \
             images: rename the file"
        ));
    }
    None
}

/// Whether `text` is 64 lowercase hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The file name and checksum digits a volume's name carries, if it is the name of an image
/// volume (not a record, and with [`NAME_DIGITS`] hex digits as its last or last-but-one part).
pub fn split_volume(volume: &str) -> Option<(String, String)> {
    if volume.ends_with(RECORD_SUFFIX) {
        return None;
    }
    let parts: Vec<&str> = volume.split('.').collect();
    let hex = |p: &str| {
        p.len() == NAME_DIGITS
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let n = parts.len();
    if n >= 3 && hex(parts[n - 2]) {
        let name = format!("{}.{}", parts[..n - 2].join("."), parts[n - 1]);
        return Some((name, parts[n - 2].to_string()));
    }
    if n >= 2 && hex(parts[n - 1]) {
        return Some((parts[..n - 1].join("."), parts[n - 1].to_string()));
    }
    None
}

/// The image that `record` (the text of `volume`'s record) vouches for, if it is a record of
/// that volume: one line `<sha256>  <volume>` whose checksum starts with the volume's digits.
pub fn parse_record(volume: &str, record: &str) -> Option<ImageId> {
    let (name, digits) = split_volume(volume)?;
    let line = record.strip_suffix('\n')?;
    let (sha256, named) = line.split_once("  ")?;
    let id = ImageId {
        name,
        sha256: sha256.to_string(),
    };
    (is_sha256(sha256) && sha256.starts_with(&digits) && named == volume && id.volume() == volume)
        .then_some(id)
}

/// Where an upload into a volume that already holds `have` bytes of an image of `size` bytes
/// goes on: at the last whole [`RESUME_GRAIN`] it holds, or from the start if it holds more
/// than the image (it is then not this image's partial upload).
pub fn resume_offset(have: u64, size: u64) -> u64 {
    if have > size {
        0
    } else {
        have - have % RESUME_GRAIN
    }
}

/// A complete pushed image on a host, as its pool lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Which image.
    pub id: ImageId,
    /// Its volume's path on the host.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When its record was written (seconds since the epoch, as the host's clock says).
    pub recorded_at: u64,
}

/// The base image a headnode is made from on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseChoice {
    /// This pushed image.
    Pushed(Pushed),
    /// The file at the configured path there (this machine's file, where the host is this
    /// machine; a copy made by hand on another host).
    AtPath,
    /// None: why, and what to do (the caller adds the command).
    Missing(String),
}

/// Which base image a host makes headnodes from: see the module docs. `wanted` is the file
/// name of the configured `base_image`, `local` the checksum of that file on this machine (if
/// it is here), `pushed` the host's complete pushed images, `at_path` whether the host has a
/// file at the configured path.
pub fn choose(wanted: &str, local: Option<&str>, pushed: &[Pushed], at_path: bool) -> BaseChoice {
    let named: Vec<&Pushed> = pushed.iter().filter(|p| p.id.name == wanted).collect();
    if let Some(local) = local {
        if let Some(p) = named.iter().find(|p| p.id.sha256 == local) {
            return BaseChoice::Pushed((*p).clone());
        }
    } else if let Some(p) = named.iter().max_by_key(|p| p.recorded_at) {
        return BaseChoice::Pushed((*p).clone());
    }
    if at_path {
        return BaseChoice::AtPath;
    }
    if named.is_empty() {
        return BaseChoice::Missing(format!("no image {wanted} has been pushed there"));
    }
    let theirs: Vec<&str> = named.iter().map(|p| p.id.short()).collect();
    BaseChoice::Missing(format!(
        "the image {wanted} pushed there ({}) is not this machine's ({})",
        theirs.join(", "),
        local.map_or("none", short)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "3f2a9c1d0b7e5a44aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "9b1c00000000000bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn id(name: &str, sha256: &str) -> ImageId {
        ImageId {
            name: name.into(),
            sha256: sha256.into(),
        }
    }

    fn pushed(name: &str, sha256: &str, at: u64) -> Pushed {
        Pushed {
            path: PathBuf::from(format!("/p/{}", id(name, sha256).volume())),
            id: id(name, sha256),
            size: 10,
            recorded_at: at,
        }
    }

    #[test]
    fn a_volume_name_carries_the_checksum_and_gives_it_back() {
        let image = id("debian-12-headnode.qcow2", SHA_A);
        assert_eq!(image.volume(), "debian-12-headnode.3f2a9c1d0b7e5a44.qcow2");
        assert_eq!(
            image.record_volume(),
            "debian-12-headnode.3f2a9c1d0b7e5a44.qcow2.sha256"
        );
        assert_eq!(
            split_volume(&image.volume()),
            Some(("debian-12-headnode.qcow2".into(), "3f2a9c1d0b7e5a44".into()))
        );
        let bare = id("image", SHA_A);
        assert_eq!(bare.volume(), "image.3f2a9c1d0b7e5a44");
        assert_eq!(
            split_volume("image.3f2a9c1d0b7e5a44"),
            Some(("image".into(), "3f2a9c1d0b7e5a44".into()))
        );
        assert_eq!(id(".hidden", SHA_A).volume(), ".hidden.3f2a9c1d0b7e5a44");
        for other in [
            "headnode-42.qcow2",
            "x.3f2a9c1d0b7e5a4.qcow2",
            "x.3F2A9C1D0B7E5A44.qcow2",
            "debian-12-headnode.3f2a9c1d0b7e5a44.qcow2.sha256",
        ] {
            assert_eq!(split_volume(other), None, "{other}");
        }
    }

    #[test]
    fn only_a_whole_matching_record_vouches_for_a_volume() {
        let image = id("base.qcow2", SHA_A);
        let volume = image.volume();
        assert_eq!(image.record_text(), format!("{SHA_A}  {volume}\n"));
        assert_eq!(
            parse_record(&volume, &image.record_text()),
            Some(image.clone())
        );
        let text = image.record_text();
        for torn in [
            &text[..text.len() - 1],
            &text[..40],
            "",
            &text.replace(SHA_A, SHA_B),
            &text.replace("  ", " "),
            &text.replace(&volume, "other.3f2a9c1d0b7e5a44.qcow2"),
            &format!("{text}{text}"),
        ] {
            assert_eq!(parse_record(&volume, torn), None, "{torn:?}");
        }
        assert_eq!(parse_record("headnode-1.qcow2", &text), None);
    }

    #[test]
    fn names_that_cannot_be_pushed() {
        assert_eq!(name_problem("debian-12_headnode.v2.qcow2"), None);
        for bad in ["", ".x", "a b", "a/b", "x.sha256", "é.qcow2"] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        assert!(is_sha256(SHA_A) && !is_sha256(&SHA_A[1..]) && !is_sha256(&SHA_A.to_uppercase()));
    }

    #[test]
    fn an_upload_resumes_at_a_whole_grain_it_holds() {
        let mib = RESUME_GRAIN;
        assert_eq!(resume_offset(0, 10 * mib), 0);
        assert_eq!(resume_offset(mib - 1, 10 * mib), 0);
        assert_eq!(resume_offset(3 * mib + 5, 10 * mib), 3 * mib);
        assert_eq!(resume_offset(10 * mib, 10 * mib), 10 * mib);
        assert_eq!(resume_offset(10 * mib + 1, 10 * mib), 0);
    }

    #[test]
    fn the_pushed_image_of_this_machines_checksum_wins() {
        let old = pushed("base.qcow2", SHA_A, 100);
        let new = pushed("base.qcow2", SHA_B, 200);
        let other = pushed("other.qcow2", SHA_B, 300);
        let all = [old.clone(), new.clone(), other];
        assert_eq!(
            choose("base.qcow2", Some(SHA_A), &all, true),
            BaseChoice::Pushed(old.clone())
        );
        // Without the file here, the newest of its name.
        assert_eq!(
            choose("base.qcow2", None, &all, true),
            BaseChoice::Pushed(new)
        );
        // A copy at the configured path when nothing pushed matches.
        assert_eq!(
            choose("other.qcow2", Some(SHA_A), &all, true),
            BaseChoice::AtPath
        );
        let BaseChoice::Missing(why) =
            choose("base.qcow2", Some(&SHA_A.replace('3', "4")), &all, false)
        else {
            panic!("a push of another checksum is not this machine's image")
        };
        assert!(
            why.contains("(3f2a9c1d0b7e, 9b1c00000000) is not this machine's (4f2a9c1d0b7e)"),
            "{why}"
        );
        let BaseChoice::Missing(why) = choose("none.qcow2", None, &[old], false) else {
            panic!("nothing of that name")
        };
        assert!(
            why.contains("no image none.qcow2 has been pushed there"),
            "{why}"
        );
    }
}
