/*!
How a config dir's `profiles/` folder names its profiles, and the manifest of a profile made
through libvirt.

A profile is there in one of two forms:

- `<name>/`: the form `profile add` makes on the hypervisor itself, replaced in one
  `renameat2(RENAME_EXCHANGE)` (`host::profile_store`).
- `<name>@<generation>/` with a marker file `<name>@<generation>.ready` beside it: the form
  `profile add` makes through libvirt on another machine. libvirt's storage API can create,
  fill and delete files and folders but cannot rename one, so a new copy is uploaded under a
  new generation (a number larger than any before it) and only counts once its marker is
  there; the marker is written last and lists what the copy holds. Replacing a profile is
  then writing one marker, and the old generations are deleted after.

Which copy counts ([`Holding::current`]) is decided the same way here and in the headnode's
publish script: the newest generation with a marker, else the plain folder. Everything else
([`Holding::leftovers`]) is an upload that did not finish or a copy that was replaced, and is
never published.
*/

use crate::model::profile::{check_name, Contents};
use std::collections::BTreeMap;

/// What separates a profile's name from its generation. Profile names cannot hold it.
pub const GENERATION_SEP: char = '@';
/// The ending of a generation's marker file.
pub const READY_SUFFIX: &str = ".ready";
/// The most digits a generation has (it must fit the publish script's shell arithmetic).
const MAX_GENERATION_DIGITS: usize = 18;
/// The first line of a manifest.
const MANIFEST_HEADER: &str = "mkheadnode-profile 1";
/// The folder of profiles in a config dir.
pub const PROFILES_DIR: &str = "profiles";

/// The folder of generation `generation` of profile `name`.
pub fn generation_dir(name: &str, generation: u64) -> String {
    format!("{name}{GENERATION_SEP}{generation}")
}

/// The marker that makes generation `generation` of profile `name` count.
pub fn ready_marker(name: &str, generation: u64) -> String {
    format!("{}{READY_SUFFIX}", generation_dir(name, generation))
}

/// One entry of a `profiles/` folder, by its name and whether it is a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A profile in the plain form.
    Plain(String),
    /// A generation's folder.
    Generation(String, u64),
    /// A generation's marker.
    Ready(String, u64),
    /// Anything else (a staging folder, a stray file): never a profile.
    Other,
}

/// A generation or size: digits only, no leading zero, at most 18 of them.
fn decimal(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    (digits_only && canonical && text.len() <= MAX_GENERATION_DIGITS)
        .then(|| text.parse().ok())
        .flatten()
}

/// What the entry `file_name` (a folder if `is_dir`) of a `profiles/` folder is. A name that
/// is not a valid profile name (`reserved` are the boot files' names) is never a profile.
pub fn classify(file_name: &str, is_dir: bool, reserved: &[&str]) -> Entry {
    let valid = |name: &str| check_name(name, reserved).is_ok();
    let (stem, ready) = match file_name.strip_suffix(READY_SUFFIX) {
        Some(stem) if !is_dir => (stem, true),
        _ => (file_name, false),
    };
    match stem.split_once(GENERATION_SEP) {
        Some((name, gen)) if valid(name) => match (decimal(gen), ready, is_dir) {
            (Some(g), true, _) => Entry::Ready(name.to_string(), g),
            (Some(g), false, true) => Entry::Generation(name.to_string(), g),
            _ => Entry::Other,
        },
        None if is_dir && valid(file_name) => Entry::Plain(file_name.to_string()),
        _ => Entry::Other,
    }
}

/// Which copy of a profile counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// The plain folder.
    Plain,
    /// A generation with its marker.
    Generation(u64),
}

/// What a `profiles/` folder holds of one profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holding {
    /// Whether the plain folder is there.
    pub plain: bool,
    /// Its generations' folders.
    pub generations: Vec<u64>,
    /// Its markers.
    pub markers: Vec<u64>,
}

impl Holding {
    /// The copy that counts: the newest generation with a marker, else the plain folder.
    pub fn current(&self) -> Option<Copy> {
        self.generations
            .iter()
            .filter(|g| self.markers.contains(g))
            .max()
            .map(|g| Copy::Generation(*g))
            .or(self.plain.then_some(Copy::Plain))
    }

    /// Everything of this profile but the copy that counts, as entry names: the markers
    /// first (so that removing them in order takes a generation out of the reckoning before
    /// its folder goes), then the folders.
    pub fn leftovers(&self, name: &str) -> Vec<String> {
        let current = self.current();
        let keep = |g: &u64| current == Some(Copy::Generation(*g));
        let mut out: Vec<String> = self
            .markers
            .iter()
            .filter(|g| !keep(g))
            .map(|g| ready_marker(name, *g))
            .collect();
        out.extend(
            self.generations
                .iter()
                .filter(|g| !keep(g))
                .map(|g| generation_dir(name, *g)),
        );
        if self.plain && current != Some(Copy::Plain) {
            out.push(name.to_string());
        }
        out
    }

    /// Every entry of this profile, markers first.
    pub fn entries(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .markers
            .iter()
            .map(|g| ready_marker(name, *g))
            .collect();
        out.extend(self.generations.iter().map(|g| generation_dir(name, *g)));
        if self.plain {
            out.push(name.to_string());
        }
        out
    }

    /// A generation larger than any this profile has or had, and not below `now` (a clock
    /// reading, so that generations also grow across removals).
    pub fn next_generation(&self, now: u64) -> u64 {
        let newest = self.generations.iter().chain(&self.markers).max();
        newest.map_or(now, |g| now.max(g.saturating_add(1)))
    }

    /// The folder that holds the copy that counts, relative to `profiles/`.
    pub fn current_dir(&self, name: &str) -> Option<String> {
        self.current().map(|copy| match copy {
            Copy::Plain => name.to_string(),
            Copy::Generation(g) => generation_dir(name, g),
        })
    }
}

/// Sort the entries of a `profiles/` folder (name and whether a folder) by profile.
pub fn holdings<'a>(
    entries: impl IntoIterator<Item = (&'a str, bool)>,
    reserved: &[&str],
) -> BTreeMap<String, Holding> {
    let mut out: BTreeMap<String, Holding> = BTreeMap::new();
    for (file_name, is_dir) in entries {
        match classify(file_name, is_dir, reserved) {
            Entry::Plain(name) => out.entry(name).or_default().plain = true,
            Entry::Generation(name, g) => out.entry(name).or_default().generations.push(g),
            Entry::Ready(name, g) => out.entry(name).or_default().markers.push(g),
            Entry::Other => {}
        }
    }
    for holding in out.values_mut() {
        holding.generations.sort_unstable();
        holding.markers.sort_unstable();
    }
    out
}

/// The manifest of a profile's copy: its folders and its files with their sizes, one per
/// line, after a header. (The text of its configs is not in it.)
pub fn render_manifest(contents: &Contents) -> String {
    let mut out = format!("{MANIFEST_HEADER}\n");
    for dir in &contents.dirs {
        out.push_str(&format!("dir {dir}\n"));
    }
    for (file, size) in &contents.files {
        out.push_str(&format!("file {size} {file}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESERVED: &[&str] = &["pxelinux.cfg", "efi"];

    fn holding_of(entries: &[(&str, bool)]) -> BTreeMap<String, Holding> {
        holdings(entries.iter().copied(), RESERVED)
    }

    #[test]
    fn entries_are_classified_strictly() {
        let cases: &[(&str, bool, Entry)] = &[
            ("debian", true, Entry::Plain("debian".into())),
            ("debian", false, Entry::Other),
            ("debian@12", true, Entry::Generation("debian".into(), 12)),
            ("debian@12.ready", false, Entry::Ready("debian".into(), 12)),
            ("debian@12.ready", true, Entry::Other),
            ("debian@0", true, Entry::Generation("debian".into(), 0)),
            ("debian@012", true, Entry::Other),
            ("debian@", true, Entry::Other),
            ("debian@1x", true, Entry::Other),
            ("debian@-1", true, Entry::Other),
            ("debian@1@2", true, Entry::Other),
            (
                "debian@999999999999999999",
                true,
                Entry::Generation("debian".into(), 999_999_999_999_999_999),
            ),
            ("debian@1000000000000000000", true, Entry::Other),
            (".debian.staging", true, Entry::Other),
            ("efi@3", true, Entry::Other),
            ("efi", true, Entry::Other),
            ("a b@3", true, Entry::Other),
            ("@3", true, Entry::Other),
        ];
        for (name, is_dir, want) in cases {
            assert_eq!(&classify(name, *is_dir, RESERVED), want, "{name} {is_dir}");
        }
    }

    #[test]
    fn the_newest_generation_with_a_marker_counts_else_the_plain_folder() {
        let h = holding_of(&[
            ("p", true),
            ("p@5", true),
            ("p@5.ready", false),
            ("p@9", true),
            ("p@7.ready", false),
            ("q", true),
            ("r@3", true),
        ]);
        assert_eq!(h["p"].current(), Some(Copy::Generation(5)));
        assert_eq!(h["p"].current_dir("p").as_deref(), Some("p@5"));
        assert_eq!(
            h["p"].leftovers("p"),
            ["p@7.ready", "p@9", "p"].map(String::from)
        );
        assert_eq!(h["q"].current(), Some(Copy::Plain));
        assert!(h["q"].leftovers("q").is_empty());
        assert_eq!(h["r"].current(), None);
        assert_eq!(h["r"].leftovers("r"), ["r@3"]);
        assert_eq!(
            h["p"].entries("p"),
            ["p@5.ready", "p@7.ready", "p@5", "p@9", "p"].map(String::from)
        );
    }

    #[test]
    fn a_new_generation_is_above_every_old_one_and_the_clock() {
        let h = holding_of(&[("p@40", true), ("p@50.ready", false)]);
        assert_eq!(h["p"].next_generation(10), 51);
        assert_eq!(h["p"].next_generation(51), 51);
        assert_eq!(h["p"].next_generation(99), 99);
        assert_eq!(Holding::default().next_generation(7), 7);
    }

    #[test]
    fn a_manifest_lists_folders_then_files() {
        let mut c = Contents::default();
        c.dirs.insert("images".into());
        c.dirs.insert("images/x86".into());
        c.files.insert("pxelinux.cfg".into(), 12);
        c.files.insert("images/x86/vmlinuz".into(), 7_000_000);
        let text = render_manifest(&c);
        assert!(
            text.starts_with("mkheadnode-profile 1\ndir images\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "dir images/x86\nfile 7000000 images/x86/vmlinuz\nfile 12 pxelinux.cfg\n"
            ),
            "{text}"
        );
    }
}
