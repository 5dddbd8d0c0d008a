/*!
Install profiles as the host checks them before `profile add` copies one into a config dir: the
name, the boot configs, the kernels and initrds those configs load, and the placeholders in
every `*.cfg`.

A profile is served from the headnode's TFTP root as `<name>/`, so its configs name their
files relative to that root: `<name>/vmlinuz` (pxelinux), `${mkheadnode_fetch}/<name>/vmlinuz`
(GRUB). Each such reference must stay inside the profile and name a file that is there;
[`validate`] lists every one that does not, with the file, line and path. Pure: the caller reads
the directory into [`Contents`].
*/

use std::collections::{BTreeMap, BTreeSet};

/// The placeholder the headnode fills in with its VLAN-side address when it publishes a profile;
/// no other is known.
pub const HEADNODE_PLACEHOLDER: &str = "@HEADNODE@";
/// A profile's BIOS boot config (pxelinux), which an armed node's `pxelinux.cfg/01-<mac>` link
/// points at.
pub const BIOS_CONFIG: &str = "pxelinux.cfg";
/// A profile's UEFI boot config (GRUB), read through the node's `uefi/01-<mac>` link.
pub const UEFI_CONFIG: &str = "grub.cfg";
/// The largest `*.cfg` the validator reads: configs, kickstarts and preseeds are small.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// What a profile directory holds, as read by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// Every regular file, by its `/`-separated path relative to the profile, with its size.
    pub files: BTreeMap<String, u64>,
    /// Every directory below the profile, by relative path.
    pub dirs: BTreeSet<String>,
    /// The text of every `*.cfg` file, by relative path.
    pub configs: BTreeMap<String, String>,
}

impl Contents {
    /// The number of bytes in the profile's files.
    pub fn bytes(&self) -> u64 {
        self.files.values().sum()
    }
}

/// What a valid profile offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The loaders it boots: `BIOS` (it has a pxelinux.cfg) and/or `UEFI` (a grub.cfg).
    pub loaders: Vec<&'static str>,
    /// How many kernel and initrd references its boot configs make (all checked).
    pub references: usize,
}

/// Whether `name` may name a profile: letters, digits, `.`, `_`, `-`, not starting with `.`,
/// and none of `reserved` (the boot files and directories of the TFTP root). The error says
/// what is wrong.
pub fn check_name(name: &str, reserved: &[&str]) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(allowed) {
        return Err(format!(
            "`{}` is not a profile name: use letters, digits, '.', '_' and '-', not starting \
             with '.'",
            name.escape_debug()
        ));
    }
    if reserved.contains(&name) {
        return Err(format!(
            "`{name}` is the name of a boot file or directory of the headnode; profiles may not \
             take one of: {}",
            reserved.join(", ")
        ));
    }
    Ok(())
}

/// What a reference loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loads {
    /// A kernel (pxelinux `KERNEL`/`LINUX`, GRUB `linux`/`linuxefi`).
    Kernel,
    /// An initrd (pxelinux `INITRD`, `initrd=` in `APPEND`, GRUB `initrd`/`initrdefi`).
    Initrd,
}

impl Loads {
    fn word(self) -> &'static str {
        match self {
            Loads::Kernel => "kernel",
            Loads::Initrd => "initrd",
        }
    }
}

/// A file a boot config loads, as written there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The line it is on, from 1.
    pub line: usize,
    /// Kernel or initrd.
    pub loads: Loads,
    /// The path as written.
    pub path: String,
}

/// The kernels and initrds a pxelinux config loads: `KERNEL`, `LINUX`, `INITRD a,b` and
/// `initrd=a,b` in `APPEND` (keywords in any case, as pxelinux reads them).
pub fn pxelinux_references(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let mut words = raw.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        let mut push = |loads, list: &str| {
            for path in list.split(',').filter(|p| !p.is_empty()) {
                out.push(Reference {
                    line,
                    loads,
                    path: path.to_string(),
                });
            }
        };
        match keyword.to_ascii_lowercase().as_str() {
            "kernel" | "linux" => {
                if let Some(path) = words.next() {
                    push(Loads::Kernel, path);
                }
            }
            "initrd" => push(Loads::Initrd, words.next().unwrap_or("")),
            "append" => {
                for list in words.filter_map(|w| w.strip_prefix("initrd=")) {
                    push(Loads::Initrd, list);
                }
            }
            _ => {}
        }
    }
    out
}

/// The words of one line of a GRUB script, with its quotes removed; `;` ends a command and is
/// a word of its own; a `#` that starts a word starts a comment.
fn grub_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            ';' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                words.push(";".to_string());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Words that may stand before a command in GRUB's script language.
const GRUB_PREFIXES: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "}",
];

/// The kernels and initrds a GRUB config loads: `linux`/`linuxefi` (the first word that is not
/// an option) and `initrd`/`initrdefi` (every such word), wherever the command stands, such as
/// in `if linux ...; then`.
pub fn grub_references(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let words = grub_words(raw);
        for command in words.split(|w| w == ";") {
            let mut rest = command
                .iter()
                .skip_while(|w| GRUB_PREFIXES.contains(&w.as_str()));
            let loads = match rest.next().map(String::as_str) {
                Some("linux" | "linuxefi" | "linux16") => Loads::Kernel,
                Some("initrd" | "initrdefi" | "initrd16") => Loads::Initrd,
                _ => continue,
            };
            let paths = rest.filter(|w| !w.starts_with("--"));
            let take = if loads == Loads::Kernel {
                1
            } else {
                usize::MAX
            };
            for path in paths.take(take) {
                out.push(Reference {
                    line: index + 1,
                    loads,
                    path: path.clone(),
                });
            }
        }
    }
    out
}

/// Where a reference leads once the headnode serves the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file of the profile, by its path relative to the profile.
    InProfile(String),
    /// One of the headnode's own boot files at the TFTP root (`memdisk`, `menu.c32`, ...).
    Served(String),
}

/// Which boot config a path is written in: the forms it may take differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// pxelinux: relative to the TFTP root, `/...`, `::...`, `http://@HEADNODE@/...`.
    Pxelinux,
    /// GRUB: `${mkheadnode_fetch}/...`, `(http,@HEADNODE@)/...`, `(tftp,@HEADNODE@)/...`,
    /// `/...`.
    Grub,
}

/// The path below the TFTP root that `path`, as written in a config of `syntax`, names.
fn served_path(path: &str, syntax: Syntax) -> Result<String, String> {
    let headnode_url = format!("http://{HEADNODE_PLACEHOLDER}/");
    match syntax {
        Syntax::Pxelinux => {
            if let Some(rest) = path.strip_prefix(&headnode_url) {
                return Ok(rest.to_string());
            }
            if path.contains("://") {
                return Err("fetched from another server, not from the profile".into());
            }
            Ok(path.strip_prefix("::").unwrap_or(path).to_string())
        }
        Syntax::Grub => {
            for prefix in ["${mkheadnode_fetch}/", "$mkheadnode_fetch/"] {
                if let Some(rest) = path.strip_prefix(prefix) {
                    return Ok(rest.to_string());
                }
            }
            for proto in ["http", "tftp"] {
                let device = format!("({proto},{HEADNODE_PLACEHOLDER})/");
                if let Some(rest) = path.strip_prefix(&device) {
                    return Ok(rest.to_string());
                }
            }
            if path.starts_with('(') {
                return Err("on another device or server, not in the profile".into());
            }
            if path.starts_with('$') {
                return Err("a path through a variable that cannot be checked: use \
                     ${mkheadnode_fetch}/<name>/..., (http,@HEADNODE@)/<name>/... or /<name>/..."
                    .into());
            }
            match path.strip_prefix('/') {
                Some(rest) => Ok(rest.to_string()),
                None => Err("relative: GRUB needs ${mkheadnode_fetch}/<name>/... or \
                             /<name>/..."
                    .into()),
            }
        }
    }
}

/// Resolve a path as written in a boot config of profile `name`: a file of the profile, or one
/// of the headnode's own boot files (`reserved`, at the TFTP root). The error says why not.
pub fn resolve(
    name: &str,
    path: &str,
    syntax: Syntax,
    reserved: &[&str],
) -> Result<Target, String> {
    let below_root = served_path(path, syntax)?;
    let mut parts: Vec<&str> = Vec::new();
    for part in below_root.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("leaves the TFTP root".into());
                }
            }
            part => parts.push(part),
        }
    }
    match parts.as_slice() {
        [only] if reserved.contains(only) => Ok(Target::Served((*only).to_string())),
        [first, rest @ ..] if *first == name && !rest.is_empty() => {
            Ok(Target::InProfile(rest.join("/")))
        }
        _ => Err(format!(
            "outside the profile: its files are served as {name}/<file> ({name}/vmlinuz, \
             say), and this is /{}",
            parts.join("/")
        )),
    }
}

/// Every `@NAME@` placeholder (capitals, digits, `_`) in `text` other than
/// [`HEADNODE_PLACEHOLDER`], with its line.
pub fn unknown_placeholders(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'@' {
                i += 1;
                continue;
            }
            let body = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'_')
                .count();
            let end = i + 1 + body;
            if body > 0 && bytes.get(end) == Some(&b'@') {
                let found = &line[i..=end];
                if found != HEADNODE_PLACEHOLDER {
                    out.push((index + 1, found.to_string()));
                }
                i = end + 1;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// Check the references of one boot config; each problem is a line of the error.
fn check_config(
    name: &str,
    file: &str,
    text: &str,
    syntax: Syntax,
    contents: &Contents,
    reserved: &[&str],
) -> (usize, Vec<String>) {
    let refs = match syntax {
        Syntax::Pxelinux => pxelinux_references(text),
        Syntax::Grub => grub_references(text),
    };
    let mut problems = Vec::new();
    for r in &refs {
        let why = match resolve(name, &r.path, syntax, reserved) {
            Ok(Target::Served(_)) => continue,
            Ok(Target::InProfile(rel)) if contents.files.contains_key(&rel) => continue,
            Ok(Target::InProfile(rel)) if contents.dirs.contains(&rel) => {
                format!("{rel} is a directory, not a file")
            }
            Ok(Target::InProfile(rel)) => format!("the profile has no file {rel}"),
            Err(why) => why,
        };
        problems.push(format!(
            "{file}, line {}: {} {}: {why}",
            r.line,
            r.loads.word(),
            r.path.escape_debug()
        ));
    }
    (refs.len(), problems)
}

/// Validate a profile called `name` with these contents: a boot config for at least one loader,
/// every kernel and initrd they load present in it, and no placeholder but `@HEADNODE@` in any
/// `*.cfg`. The error lists every problem, one a line.
pub fn validate(
    name: &str,
    contents: &Contents,
    reserved: &[&str],
) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    if let Err(why) = check_name(name, reserved) {
        problems.push(why);
    }
    let mut loaders = Vec::new();
    let mut references = 0;
    for (file, loader, syntax) in [
        (BIOS_CONFIG, "BIOS", Syntax::Pxelinux),
        (UEFI_CONFIG, "UEFI", Syntax::Grub),
    ] {
        if contents.dirs.contains(file) {
            problems.push(format!(
                "{file} is a directory: a profile's {file} is one config file, which an armed \
                 node's link points at"
            ));
        }
        let Some(text) = contents.configs.get(file) else {
            continue;
        };
        loaders.push(loader);
        let (count, found) = check_config(name, file, text, syntax, contents, reserved);
        references += count;
        problems.extend(found);
    }
    if loaders.is_empty() {
        problems.push(format!(
            "no boot config: a profile needs {BIOS_CONFIG} (BIOS, pxelinux) or {UEFI_CONFIG} \
             (UEFI, GRUB) at its top, or both"
        ));
    }
    for (file, text) in &contents.configs {
        for (line, placeholder) in unknown_placeholders(text) {
            problems.push(format!(
                "{file}, line {line}: unknown placeholder {placeholder} (only \
                 {HEADNODE_PLACEHOLDER} is filled in, with the headnode's address)"
            ));
        }
    }
    if problems.is_empty() {
        Ok(Summary {
            loaders,
            references,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESERVED: &[&str] = &[
        "pxelinux.0",
        "pxelinux.cfg",
        "efi",
        "uefi",
        "grub",
        "memdisk",
    ];

    fn contents(files: &[(&str, &str)]) -> Contents {
        let mut c = Contents::default();
        for (path, text) in files {
            c.files.insert((*path).to_string(), text.len() as u64);
            if path.ends_with(".cfg") {
                c.configs.insert((*path).to_string(), (*text).to_string());
            }
            let mut dir = String::new();
            for part in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                dir = if dir.is_empty() {
                    (*part).to_string()
                } else {
                    format!("{dir}/{part}")
                };
                c.dirs.insert(dir.clone());
            }
        }
        c
    }

    #[test]
    fn names() {
        for good in ["debian", "centos-9", "rhel_9.4", "A1"] {
            assert_eq!(check_name(good, RESERVED), Ok(()), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "..", "x;rm", "é", "a\n"] {
            assert!(check_name(bad, RESERVED).is_err(), "{bad:?}");
        }
        let err = check_name("efi", RESERVED).unwrap_err();
        assert!(err.contains("boot file or directory"), "{err}");
    }

    #[test]
    fn pxelinux_references_in_every_form() {
        let text = "DEFAULT install\n# KERNEL commented/out\nLABEL install\n  kernel deb/linux\n\
                    \tINITRD deb/a.gz,deb/b.gz\n  APPEND auto=true initrd=deb/c.gz,deb/d.gz quiet\n\
                    LABEL other\n  LINUX http://@HEADNODE@/deb/linux2\n";
        let refs = pxelinux_references(text);
        let got: Vec<(usize, Loads, &str)> = refs
            .iter()
            .map(|r| (r.line, r.loads, r.path.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, Loads::Kernel, "deb/linux"),
                (5, Loads::Initrd, "deb/a.gz"),
                (5, Loads::Initrd, "deb/b.gz"),
                (6, Loads::Initrd, "deb/c.gz"),
                (6, Loads::Initrd, "deb/d.gz"),
                (8, Loads::Kernel, "http://@HEADNODE@/deb/linux2"),
            ]
        );
    }

    #[test]
    fn grub_references_wherever_the_command_stands() {
        let text = "set timeout=0\nmenuentry 'Install' {\n    linux ${mkheadnode_fetch}/s/vmlinuz a=b\n\
                    \tinitrd (http,@HEADNODE@)/s/one.gz \"/s/two gz\"\n}\n\
                    if linux $mkheadnode_fetch/s/bad x; then echo yes; else echo no; fi\n\
                    # linux /s/comment\necho '# linux /s/quoted'\nlinuxefi --no-verify /s/k2 # tail\n";
        let got: Vec<(usize, Loads, String)> = grub_references(text)
            .into_iter()
            .map(|r| (r.line, r.loads, r.path))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    3,
                    Loads::Kernel,
                    "${mkheadnode_fetch}/s/vmlinuz".to_string()
                ),
                (4, Loads::Initrd, "(http,@HEADNODE@)/s/one.gz".to_string()),
                (4, Loads::Initrd, "/s/two gz".to_string()),
                (6, Loads::Kernel, "$mkheadnode_fetch/s/bad".to_string()),
                (9, Loads::Kernel, "/s/k2".to_string()),
            ]
        );
    }

    #[test]
    fn paths_resolve_inside_the_profile_or_are_refused() {
        let ok = |path, syntax| resolve("deb", path, syntax, RESERVED);
        for (path, syntax) in [
            ("deb/linux", Syntax::Pxelinux),
            ("/deb/linux", Syntax::Pxelinux),
            ("::deb/linux", Syntax::Pxelinux),
            ("http://@HEADNODE@/deb/linux", Syntax::Pxelinux),
            ("deb/./x/../linux", Syntax::Pxelinux),
            ("${mkheadnode_fetch}/deb/linux", Syntax::Grub),
            ("(http,@HEADNODE@)/deb/linux", Syntax::Grub),
            ("(tftp,@HEADNODE@)/deb/linux", Syntax::Grub),
            ("/deb/linux", Syntax::Grub),
        ] {
            assert_eq!(
                ok(path, syntax),
                Ok(Target::InProfile("linux".into())),
                "{path}"
            );
        }
        assert_eq!(
            ok("memdisk", Syntax::Pxelinux),
            Ok(Target::Served("memdisk".into()))
        );
        for (path, syntax, why) in [
            ("linux", Syntax::Pxelinux, "outside the profile"),
            ("centos/vmlinuz", Syntax::Pxelinux, "/centos/vmlinuz"),
            ("deb/../centos/x", Syntax::Pxelinux, "outside the profile"),
            (
                "deb/../../etc/passwd",
                Syntax::Pxelinux,
                "leaves the TFTP root",
            ),
            ("deb", Syntax::Pxelinux, "outside the profile"),
            (
                "http://mirror.example/deb/linux",
                Syntax::Pxelinux,
                "another server",
            ),
            ("(http,10.1.1.1)/deb/linux", Syntax::Grub, "another device"),
            ("$prefix/deb/linux", Syntax::Grub, "variable"),
            ("deb/linux", Syntax::Grub, "relative"),
        ] {
            let err = ok(path, syntax).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
    }

    #[test]
    fn placeholders_other_than_headnode_are_named() {
        let text =
            "a @HEADNODE@ b\nurl=http://@MIRROR@/x mail a@b.c\n@ @@ @lower@ @A_1@@HEADNODE@\n";
        assert_eq!(
            unknown_placeholders(text),
            vec![(2, "@MIRROR@".to_string()), (3, "@A_1@".to_string())]
        );
    }

    #[test]
    fn a_placeholder_ends_at_its_closing_at_sign() {
        // The `@` that closes `@HEADNODE@` cannot open another placeholder: publishing replaces
        // `@HEADNODE@` and leaves `MIRROR@` plain text.
        assert_eq!(unknown_placeholders("x@HEADNODE@MIRROR@y"), vec![]);
        assert_eq!(
            unknown_placeholders("@A@B@ @C@"),
            vec![(1, "@A@".to_string()), (1, "@C@".to_string())]
        );
    }

    #[test]
    fn a_hash_inside_a_grub_word_is_part_of_it_and_one_after_a_space_a_comment() {
        let got: Vec<String> = grub_references("initrd /s/i#1 '/s/q 1'a#b # /s/no /s/not\n")
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert_eq!(got, vec!["/s/i#1".to_string(), "/s/q 1a#b".to_string()]);
    }

    #[test]
    fn sizes_add_up_and_configs_are_read_up_to_four_mib() {
        let c = contents(&[("linux", "kernel"), ("sub/initrd.gz", "12")]);
        assert_eq!(c.bytes(), 8);
        assert_eq!(Contents::default().bytes(), 0);
        assert_eq!(MAX_CONFIG_BYTES, 4 * 1024 * 1024);
    }

    #[test]
    fn a_valid_profile_for_both_loaders() {
        let c = contents(&[
            ("pxelinux.cfg", "KERNEL deb/linux\nINITRD deb/initrd.gz\nAPPEND url=http://@HEADNODE@/deb/preseed.cfg\n"),
            ("grub.cfg", "linux ${mkheadnode_fetch}/deb/linux\ninitrd ${mkheadnode_fetch}/deb/initrd.gz\n"),
            ("linux", "k"),
            ("initrd.gz", "i"),
            ("preseed.cfg", "d-i x string @HEADNODE@\n"),
        ]);
        let summary = validate("deb", &c, RESERVED).unwrap();
        assert_eq!(summary.loaders, vec!["BIOS", "UEFI"]);
        assert_eq!(summary.references, 4);
    }

    #[test]
    fn every_problem_is_listed_with_file_and_line() {
        let c = contents(&[
            (
                "pxelinux.cfg",
                "KERNEL deb/linux\nINITRD deb/missing.gz\nAPPEND initrd=other/x.gz\n",
            ),
            ("grub.cfg", "linux ${mkheadnode_fetch}/deb/sub\n"),
            ("sub/file", "x"),
            ("linux", "k"),
            ("ks.cfg", "url @MIRROR@\n"),
        ]);
        let problems = validate("deb", &c, RESERVED).unwrap_err();
        let all = problems.join("\n");
        for want in [
            "pxelinux.cfg, line 2: initrd deb/missing.gz: the profile has no file missing.gz",
            "pxelinux.cfg, line 3: initrd other/x.gz: outside the profile",
            "grub.cfg, line 1: kernel ${mkheadnode_fetch}/deb/sub: sub is a directory",
            "ks.cfg, line 1: unknown placeholder @MIRROR@",
        ] {
            assert!(all.contains(want), "no `{want}` in:\n{all}");
        }
        assert_eq!(problems.len(), 4, "{all}");
    }

    #[test]
    fn the_example_profiles_pass_once_their_kernels_are_added() {
        let examples = [
            (
                "debian",
                include_str!("../../cloud-init/profiles/debian/pxelinux.cfg"),
                include_str!("../../cloud-init/profiles/debian/grub.cfg"),
                (
                    "preseed.cfg",
                    include_str!("../../cloud-init/profiles/debian/preseed.cfg"),
                ),
                ["linux", "initrd.gz"],
            ),
            (
                "centos",
                include_str!("../../cloud-init/profiles/centos/pxelinux.cfg"),
                include_str!("../../cloud-init/profiles/centos/grub.cfg"),
                (
                    "ks.cfg",
                    include_str!("../../cloud-init/profiles/centos/ks.cfg"),
                ),
                ["vmlinuz", "initrd.img"],
            ),
        ];
        for (name, pxe, grub, answers, kernels) in examples {
            let mut c = contents(&[("pxelinux.cfg", pxe), ("grub.cfg", grub), answers]);
            let problems = validate(name, &c, RESERVED).unwrap_err();
            assert_eq!(problems.len(), 4, "{name}: {problems:?}");
            assert!(
                problems
                    .iter()
                    .all(|p| p.contains("the profile has no file")),
                "{problems:?}"
            );
            for k in kernels {
                c.files.insert(k.to_string(), 1);
            }
            let summary = validate(name, &c, RESERVED).unwrap();
            assert_eq!(
                (summary.loaders, summary.references),
                (vec!["BIOS", "UEFI"], 4)
            );
        }
    }

    #[test]
    fn a_profile_needs_a_boot_config_and_a_good_name() {
        let problems = validate(".x", &contents(&[("readme", "")]), RESERVED).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("not a profile name")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("no boot config")),
            "{problems:?}"
        );
        let mut c = contents(&[("grub.cfg", "")]);
        c.dirs.insert("pxelinux.cfg".into());
        let problems = validate("x", &c, RESERVED).unwrap_err();
        assert!(
            problems[0].contains("pxelinux.cfg is a directory"),
            "{problems:?}"
        );
    }
}
