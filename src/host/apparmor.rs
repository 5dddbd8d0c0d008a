/*!
AppArmor: make sure libvirt's qemu abstraction lets guests read the headnode config dirs.

libvirt's `virt-aa-helper` already adds a 9p share's source dir to each domain's own profile;
the abstraction rule (the 2013 recipe's fix) also covers hosts where it does not. The file is
patched atomically, exactly once, keeping its mode and owner. Security is never switched off.
*/

use crate::host::atomic_file;
use anyhow::Context;
use std::fs;
use std::path::{Path, PathBuf};

/// What [`ensure_rule`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The abstraction file does not exist: AppArmor (or libvirt's profile) is not in use.
    NotInUse(PathBuf),
    /// The rule was already there; nothing was written.
    AlreadyPresent(PathBuf),
    /// The rule was appended.
    Added(PathBuf),
}

/// The rule that lets qemu read everything under `config_root`.
pub fn rule(config_root: &Path) -> String {
    format!("{}/** r,", config_root.display())
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Whether `text` already grants `rule` on an uncommented line (white space ignored).
pub fn contains_rule(text: &str, rule: &str) -> bool {
    let want = squash(rule);
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .any(|l| squash(l) == want)
}

/// `text` with `rule` appended on a line of its own.
pub fn with_rule(text: &str, rule: &str) -> String {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("  # Added by mkheadnode: headnode guests read their config share.\n");
    out.push_str(&format!("  {rule}\n"));
    out
}

/// Make sure the abstraction at `path` grants read access below `config_root`.
pub fn ensure_rule(path: &Path, config_root: &Path) -> anyhow::Result<Outcome> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Outcome::NotInUse(path.into()))
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading AppArmor abstraction {}", path.display()))
        }
    };
    let rule = rule(config_root);
    if contains_rule(&text, &rule) {
        return Ok(Outcome::AlreadyPresent(path.into()));
    }
    atomic_file::replace(path, with_rule(&text, &rule).as_bytes()).with_context(|| {
        format!(
            "adding `{rule}` to {}: fix the file's permissions or add the line by hand, \
             then reload AppArmor (never disable libvirt's security driver instead)",
            path.display()
        )
    })?;
    Ok(Outcome::Added(path.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ROOT: &str = "/var/lib/headnode-config";

    fn setup(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libvirt-qemu");
        fs::write(&path, content).unwrap();
        (dir, path)
    }

    fn count(text: &str) -> usize {
        text.lines()
            .filter(|l| squash(l) == squash(&rule(Path::new(ROOT))))
            .count()
    }

    #[test]
    fn adds_an_absent_line_once() {
        let (_d, path) = setup("  /usr/share/qemu/** r,\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            ensure_rule(&path, Path::new(ROOT)).unwrap(),
            Outcome::Added(path.clone())
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("  /usr/share/qemu/** r,\n"));
        assert_eq!(count(&text), 1);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            ensure_rule(&path, Path::new(ROOT)).unwrap(),
            Outcome::AlreadyPresent(path.clone())
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn present_line_with_other_spacing_is_recognised() {
        let original = "x r,\n\t/var/lib/headnode-config/**   r ,  # ours\n";
        let (_d, path) = setup(original);
        assert_eq!(
            ensure_rule(&path, Path::new(ROOT)).unwrap(),
            Outcome::AlreadyPresent(path.clone())
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), original);
    }

    #[test]
    fn a_commented_out_rule_does_not_count() {
        let (_d, path) = setup("# /var/lib/headnode-config/** r,\n");
        assert_eq!(
            ensure_rule(&path, Path::new(ROOT)).unwrap(),
            Outcome::Added(path.clone())
        );
        assert_eq!(count(&fs::read_to_string(&path).unwrap()), 1);
    }

    #[test]
    fn missing_trailing_newline() {
        let (_d, path) = setup("  /usr/share/qemu/** r,");
        ensure_rule(&path, Path::new(ROOT)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("  /usr/share/qemu/** r,\n"), "{text:?}");
        assert!(
            text.ends_with("/var/lib/headnode-config/** r,\n"),
            "{text:?}"
        );
    }

    #[test]
    fn read_only_file_is_a_clear_error_and_untouched() {
        let (_d, path) = setup("  /usr/share/qemu/** r,\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        let err = format!("{:#}", ensure_rule(&path, Path::new(ROOT)).unwrap_err());
        assert!(
            err.contains("read-only") && err.contains("libvirt-qemu"),
            "{err}"
        );
        assert!(err.contains("never disable"), "{err}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "  /usr/share/qemu/** r,\n"
        );
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }

    #[test]
    fn absent_file_means_not_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope");
        assert_eq!(
            ensure_rule(&path, Path::new(ROOT)).unwrap(),
            Outcome::NotInUse(path.clone())
        );
        assert!(!path.exists());
    }
}
