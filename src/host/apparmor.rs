/*!
AppArmor: make sure libvirt's qemu abstraction lets guests read the headnode config dirs.

libvirt's `virt-aa-helper` already adds a 9p share's source dir to each domain's own profile;
the abstraction rule (the 2013 recipe's fix) also covers hosts where it does not. The file is
patched atomically, exactly once, keeping its mode and owner. Security is never switched off.

Only a plain absolute path goes into the rule (see [`apparmor_path_problem`]). The edit is
made under a lock (`apparmor.lock` in the lock dir), so that concurrent runs, and the threads
of one bulk run, take turns and none loses another's line; a change made meanwhile by an editor
that does not take the lock is noticed before the file is replaced, and the edit is made again
on the new text. Our comment line is added once, however many rules follow it.
*/

use crate::error::{failure, Kind};
use crate::host::atomic_file;
use crate::host::hostprep::lock_file;
use crate::model::text::apparmor_path_problem;
use anyhow::Context;
use std::fs;
use std::path::{Path, PathBuf};

/// The comment line that marks the rules mkheadnode added.
pub const COMMENT: &str = "  # Added by mkheadnode: headnode guests read their config share.";

/// How often the edit is made again when another editor changed the file meanwhile.
const EDIT_ATTEMPTS: usize = 5;

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

/// What a create says about AppArmor on another machine, whose libvirt uses the security drivers
/// `models`. The abstraction file there is out of libvirt's reach, and not needed: with the
/// `apparmor` driver, libvirt's virt-aa-helper writes each domain a profile of its own that
/// grants a `<filesystem type='mount'>` share's source dir recursively, read-only when the share
/// is `<readonly/>` (ours is). What the abstraction rule adds beyond that is only reach: it lets
/// every qemu guest of the host read every config dir (bmc.conf's credentials included), and
/// covers a domain whose profile virt-aa-helper does not write (a static `<seclabel>`, a libvirt
/// too old to know shares). A headnode needs neither.
pub fn remote_note(models: &[String]) -> String {
    if models.iter().any(|m| m == "apparmor") {
        "AppArmor: libvirt there confines guests with per-domain profiles, which grant the \
         headnode read access to its own config dir (virt-aa-helper); the abstraction file \
         there is not reachable through libvirt and not edited"
            .into()
    } else {
        format!(
            "AppArmor: not used by libvirt there (security drivers: {}); nothing to add",
            drivers(models)
        )
    }
}

/// libvirt's security drivers as a list for people (`none reported` if there are none).
pub fn drivers(models: &[String]) -> String {
    if models.is_empty() {
        "none reported".to_string()
    } else {
        models.join(", ")
    }
}

/// Whether `text` already grants `rule` on an uncommented line (white space ignored).
pub fn contains_rule(text: &str, rule: &str) -> bool {
    let want = squash(rule);
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .any(|l| squash(l) == want)
}

/// `text` with `rule` appended on a line of its own, after our comment line unless the text
/// has it already.
pub fn with_rule(text: &str, rule: &str) -> String {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !text.lines().any(|l| l.trim() == COMMENT.trim()) {
        out.push_str(COMMENT);
        out.push('\n');
    }
    out.push_str(&format!("  {rule}\n"));
    out
}

/// The abstraction's text, or `None` if there is no such file.
fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("reading AppArmor abstraction {}", path.display()))
        }
    }
}

/// Make sure the abstraction at `path` grants read access below `config_root`, editing it
/// under the lock `lock_dir/apparmor.lock`. `config_root` must be a plain path (a `Usage` error
/// says why not).
pub fn ensure_rule(path: &Path, config_root: &Path, lock_dir: &Path) -> anyhow::Result<Outcome> {
    if let Some(problem) = apparmor_path_problem(config_root) {
        return Err(failure(
            Kind::Usage,
            format!("config_root = {config_root:?} {problem}: it cannot go into an AppArmor rule"),
        ));
    }
    let rule = rule(config_root);
    let _lock = lock_file(&lock_dir.join("apparmor.lock"))?;
    for _ in 0..EDIT_ATTEMPTS {
        let Some(text) = read(path)? else {
            return Ok(Outcome::NotInUse(path.into()));
        };
        if contains_rule(&text, &rule) {
            return Ok(Outcome::AlreadyPresent(path.into()));
        }
        let new = with_rule(&text, &rule);
        // An editor that does not take our lock may have written meanwhile: start again on
        // its text rather than replace it.
        if read(path)?.as_deref() != Some(text.as_str()) {
            continue;
        }
        atomic_file::replace(path, new.as_bytes()).with_context(|| {
            format!(
                "adding `{rule}` to {}: fix the file's permissions or add the line by hand, \
                 then reload AppArmor (never disable libvirt's security driver instead)",
                path.display()
            )
        })?;
        return Ok(Outcome::Added(path.into()));
    }
    Err(anyhow::anyhow!(
        "{} kept changing while mkheadnode tried to add `{rule}`: wait until whoever edits it \
         is done, then run mkheadnode again",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;
    use std::os::unix::fs::PermissionsExt;

    const ROOT: &str = "/var/lib/headnode-config";

    fn setup(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libvirt-qemu");
        fs::write(&path, content).unwrap();
        (dir, path)
    }

    /// A lock dir beside the test's abstraction file.
    fn lock_dir(path: &Path) -> PathBuf {
        path.parent().unwrap().join("lock")
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
            ensure_rule(&path, Path::new(ROOT), &lock_dir(&path)).unwrap(),
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
            ensure_rule(&path, Path::new(ROOT), &lock_dir(&path)).unwrap(),
            Outcome::AlreadyPresent(path.clone())
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn present_line_with_other_spacing_is_recognised() {
        let original = "x r,\n\t/var/lib/headnode-config/**   r ,  # ours\n";
        let (_d, path) = setup(original);
        assert_eq!(
            ensure_rule(&path, Path::new(ROOT), &lock_dir(&path)).unwrap(),
            Outcome::AlreadyPresent(path.clone())
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), original);
    }

    #[test]
    fn a_commented_out_rule_does_not_count() {
        let (_d, path) = setup("# /var/lib/headnode-config/** r,\n");
        assert_eq!(
            ensure_rule(&path, Path::new(ROOT), &lock_dir(&path)).unwrap(),
            Outcome::Added(path.clone())
        );
        assert_eq!(count(&fs::read_to_string(&path).unwrap()), 1);
    }

    #[test]
    fn missing_trailing_newline() {
        let (_d, path) = setup("  /usr/share/qemu/** r,");
        ensure_rule(&path, Path::new(ROOT), &lock_dir(&path)).unwrap();
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
        let err = format!(
            "{:#}",
            ensure_rule(&path, Path::new(ROOT), &lock_dir(&path)).unwrap_err()
        );
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
            fs::read_dir(path.parent().unwrap())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name() != "lock")
                .count(),
            1,
            "temp file left behind"
        );
    }

    #[test]
    fn our_comment_line_is_added_once() {
        let (_d, path) = setup("  /usr/share/qemu/** r,\n");
        for root in [ROOT, "/srv/other-config", ROOT] {
            ensure_rule(&path, Path::new(root), &lock_dir(&path)).unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(COMMENT).count(), 1, "{text}");
        assert_eq!(count(&text), 1, "{text}");
        assert!(text.contains("  /srv/other-config/** r,\n"), "{text}");
    }

    #[test]
    fn concurrent_editors_lose_nothing() {
        // Threads of one bulk run, or several runs with different config roots, all adding to
        // the one abstraction: every rule must be there once, and the comment once.
        let (_d, path) = setup("  /usr/share/qemu/** r,\n");
        let roots: Vec<String> = (0..24).map(|i| format!("/srv/cfg{i}")).collect();
        std::thread::scope(|scope| {
            for chunk in roots.chunks(3) {
                let path = &path;
                scope.spawn(move || {
                    for root in chunk {
                        ensure_rule(path, Path::new(root), &lock_dir(path)).unwrap();
                    }
                });
            }
        });
        let text = fs::read_to_string(&path).unwrap();
        for root in &roots {
            assert!(
                text.contains(&format!("  {root}/** r,\n")),
                "{root} lost:\n{text}"
            );
        }
        assert_eq!(text.matches(COMMENT).count(), 1, "{text}");
        assert!(text.starts_with("  /usr/share/qemu/** r,\n"));
    }

    #[test]
    fn paths_that_would_change_the_rule_are_refused() {
        let (_d, path) = setup("  /usr/share/qemu/** r,\n");
        for bad in [
            "/srv/a b", "/srv/a,b", "/srv/x#y", "/srv/*", "relative", "/",
        ] {
            let err = ensure_rule(&path, Path::new(bad), &lock_dir(&path)).unwrap_err();
            assert_eq!(kind_of(&err), Kind::Usage, "{bad}: {err:#}");
            assert!(format!("{err:#}").contains("config_root"), "{err:#}");
        }
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "  /usr/share/qemu/** r,\n"
        );
    }

    #[test]
    fn a_link_at_the_lock_path_is_refused() {
        let (d, path) = setup("  /usr/share/qemu/** r,\n");
        let target = d.path().join("target");
        fs::create_dir(lock_dir(&path)).unwrap();
        std::os::unix::fs::symlink(&target, lock_dir(&path).join("apparmor.lock")).unwrap();
        let err = ensure_rule(&path, Path::new(ROOT), &lock_dir(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert!(!target.exists());
    }

    #[test]
    fn a_linked_abstraction_is_refused_not_replaced() {
        let (d, real) = setup("  /usr/share/qemu/** r,\n");
        let link = d.path().join("linked");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = ensure_rule(&link, Path::new(ROOT), &lock_dir(&real)).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn absent_file_means_not_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope");
        assert_eq!(
            ensure_rule(&path, Path::new(ROOT), &lock_dir(&path)).unwrap(),
            Outcome::NotInUse(path.clone())
        );
        assert!(!path.exists());
    }
}
