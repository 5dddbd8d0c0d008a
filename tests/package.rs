//! The Debian package (`make deb`, Cargo.toml's `[package.metadata.deb]`).
//!
//! Pure: the example `/etc/mkheadnode/config.toml` it ships changes nothing and shows every key
//! with its default. With the host tests: the package `make deb` made, installed into a fresh
//! Debian 12 root (apt's minimal system, the package's Depends and man-db, from a cached
//! tarball that mmdebstrap makes once), works there with no libvirtd, and goes again without
//! touching what an operator made; and its image recipe works outside the source tree.

use mkheadnode::model::config::Config;
use std::path::Path;

/// The example `/etc/mkheadnode/config.toml` the package ships.
const EXAMPLE_CONFIG: &str = include_str!("../packaging/config.toml");

/// `text` with every commented-out key and table header (`#key = ...`, `#[table]`) uncommented;
/// prose comments (`# ...`) stay.
fn uncommented(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => line,
        })
        .collect();
    lines.join("\n")
}

#[test]
fn example_config_changes_nothing_and_shows_every_key_with_its_default() {
    let origin = Path::new("packaging/config.toml");
    let shipped = Config::from_toml(EXAMPLE_CONFIG, origin).unwrap();
    assert_eq!(
        shipped,
        Config::default(),
        "the file as shipped changes settings"
    );
    let every_key = uncommented(EXAMPLE_CONFIG);
    let uncommented_config = Config::from_toml(&every_key, origin)
        .unwrap_or_else(|e| panic!("uncommented, the loader refuses it: {e:#}\n{every_key}"));
    assert_eq!(
        uncommented_config,
        Config::default(),
        "a default shown is not the default"
    );
    let shown: toml::Value = toml::from_str(&every_key).unwrap();
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    assert_eq!(shown, defaults, "the example does not show every key");
}

/// The package installed into a Debian 12 root, and its image recipe.
#[cfg(feature = "host-tests")]
mod installed {
    use crate::support::{run, tool};
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::SystemTime;

    /// The release the package is for.
    const SUITE: &str = "bookworm";
    /// Where the root's tarball is kept between runs.
    const CACHE: &str = "/var/cache/mkheadnode-tests";
    /// What the root has besides apt's minimal system and the package's Depends.
    const TEST_TOOLS: [&str; 1] = ["man-db"];
    /// What the package's sources are: a package older than any of them is stale.
    const SOURCES: [&str; 15] = [
        "src",
        "xml-templates",
        "cloud-init",
        "packaging",
        "Cargo.toml",
        "Cargo.lock",
        "scripts/build-image.sh",
        "scripts/build-installer.sh",
        "scripts/image-firewall",
        "scripts/image-early/src",
        "scripts/image-early/Cargo.toml",
        "scripts/image-early/Cargo.lock",
        "scripts/image-early/mkheadnode-early.service",
        "scripts/image-early/modules-load.conf",
        "tests/smoke/installer-init",
    ];
    /// The package system's own records (its database, man-db's index, logs) and the copy of
    /// the package: they change with every install and removal, and are not the package's.
    const BOOKKEEPING: [&str; 4] = ["var/lib/dpkg", "var/cache/man", "var/log", "tmp"];

    /// The package `make deb` made, refused if older than its sources; `$MKHEADNODE_DEB`
    /// names another.
    /// The package's files, unpacked into `dir/pkg` (nothing installed).
    fn unpacked_deb(dir: &Path) -> PathBuf {
        let unpacked = dir.join("pkg");
        tool(
            "dpkg-deb",
            &["-x", deb().to_str().unwrap(), unpacked.to_str().unwrap()],
        );
        unpacked
    }

    fn deb() -> PathBuf {
        if let Some(path) = std::env::var_os("MKHEADNODE_DEB") {
            return PathBuf::from(path);
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let deb = repo.join(format!(
            "target/debian/mkheadnode_{}_amd64.deb",
            env!("CARGO_PKG_VERSION")
        ));
        let made = std::fs::metadata(&deb)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{}: {e}: run `make deb` first", deb.display()));
        for source in SOURCES {
            let (newest, path) = newest_file(&repo.join(source));
            assert!(
                newest <= made,
                "{} is older than {}: run `make deb` (`make unit` does)",
                deb.display(),
                path.display()
            );
        }
        deb
    }

    /// The most recently modified file at or under `path`, and when.
    fn newest_file(path: &Path) -> (SystemTime, PathBuf) {
        let meta = std::fs::metadata(path).unwrap();
        if !meta.is_dir() {
            return (meta.modified().unwrap(), path.to_path_buf());
        }
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| newest_file(&e.unwrap().path()))
            .max()
            .unwrap_or((SystemTime::UNIX_EPOCH, path.to_path_buf()))
    }

    /// The package names of the .deb's Depends (the first of any alternatives).
    fn depends(deb: &Path) -> Vec<String> {
        let field = tool("dpkg-deb", &["-f", deb.to_str().unwrap(), "Depends"]);
        field
            .split(',')
            .map(|dep| {
                let first = dep.split('|').next().unwrap();
                let name = first.split(['(', ':']).next().unwrap();
                name.trim().to_string()
            })
            .filter(|name| !name.is_empty())
            .collect()
    }

    /// The tarball of a Debian 12 root with apt's minimal system and `packages`, made by
    /// mmdebstrap if there is none yet (about a minute, from `$MIRROR` or Debian's archive).
    /// Its name lists the packages, so a change of Depends makes a new one.
    fn root_tarball(packages: &[String]) -> PathBuf {
        let cache = Path::new(CACHE);
        let name = format!("debian-{SUITE}-apt+{}.tar", packages.join("+"));
        let tarball = cache.join(&name);
        if tarball.exists() {
            return tarball;
        }
        std::fs::create_dir_all(cache).unwrap();
        let partial = cache.join(format!("partial-{}.tar", std::process::id()));
        let mirror =
            std::env::var("MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
        eprintln!("making {} (mmdebstrap, once)", tarball.display());
        let (code, out, err) = run(Command::new("mmdebstrap")
            .args(["--quiet", "--variant=apt", "--mode=root"])
            .arg(format!("--include={}", packages.join(",")))
            .args([SUITE, partial.to_str().unwrap(), &mirror]));
        if code != 0 {
            let _ = std::fs::remove_file(&partial);
            panic!("mmdebstrap failed:\n{out}\n{err}");
        }
        // Roots for other package lists are stale now.
        for entry in std::fs::read_dir(cache).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if file.starts_with(&format!("debian-{SUITE}-apt+")) && file != name {
                let _ = std::fs::remove_file(&path);
            }
        }
        std::fs::rename(&partial, &tarball).unwrap();
        tarball
    }

    /// A throw-away Debian 12 root, unpacked from [`root_tarball`]. Nothing is mounted in it,
    /// so dropping it removes it.
    struct Root {
        dir: tempfile::TempDir,
    }

    impl Root {
        fn new(packages: &[String]) -> Root {
            let tarball = root_tarball(packages);
            let dir = tempfile::Builder::new()
                .prefix("mkheadnode-package-")
                .tempdir_in("/var/tmp")
                .unwrap();
            let root = dir.path().to_str().unwrap();
            tool("tar", &["-C", root, "-xf", tarball.to_str().unwrap()]);
            Root { dir }
        }

        /// `rel` (a path without its leading `/`) inside the root.
        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        /// A shell script run in the root (chroot, a clean environment): (code, stdout, stderr).
        fn sh(&self, script: &str) -> (i32, String, String) {
            run(Command::new("chroot").arg(self.dir.path()).args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "HOME=/root",
                "/bin/sh",
                "-ec",
                script,
            ]))
        }

        /// [`Root::sh`] that must succeed; returns stdout.
        fn ok(&self, script: &str) -> String {
            let (code, out, err) = self.sh(script);
            assert_eq!(code, 0, "`{script}` failed in the root:\n{out}\n{err}");
            out
        }

        /// Every path in the root but the [`BOOKKEEPING`].
        fn files(&self) -> BTreeSet<String> {
            let mut files = BTreeSet::new();
            let mut todo = vec![self.dir.path().to_path_buf()];
            while let Some(dir) = todo.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    let rel = path.strip_prefix(self.dir.path()).unwrap();
                    if BOOKKEEPING.iter().any(|b| rel.starts_with(b)) {
                        continue;
                    }
                    if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                        todo.push(path.clone());
                    }
                    files.insert(rel.to_string_lossy().into_owned());
                }
            }
            files
        }

        fn read(&self, rel: &str) -> String {
            std::fs::read_to_string(self.path(rel)).unwrap()
        }
    }

    /// dpkg runs no script of ours on install, removal or purge: nothing there can touch a
    /// headnode, a config dir or libvirt.
    fn assert_no_maintainer_scripts(deb: &Path) {
        let deb = deb.to_str().unwrap();
        let control = tool(
            "sh",
            &["-c", &format!("dpkg-deb --ctrl-tarfile {deb} | tar -t")],
        );
        for script in [
            "preinst", "postinst", "prerm", "postrm", "config", "triggers",
        ] {
            assert!(
                !control
                    .lines()
                    .any(|l| l.trim_start_matches("./") == script),
                "the package has a {script}:\n{control}"
            );
        }
    }

    /// What an operator does first, in the root where the package is installed: the command,
    /// its man pages, a completion, and a dry run with no libvirtd (which reads the shipped
    /// config file: the loader accepts it).
    fn check_installed(root: &Root) {
        let version = root.ok("mkheadnode --version");
        assert_eq!(
            version.trim(),
            format!("mkheadnode {}", env!("CARGO_PKG_VERSION"))
        );

        let pages = root.ok("man -w mkheadnode; man -w mkheadnode-teardown");
        assert_eq!(
            pages,
            "/usr/share/man/man1/mkheadnode.1.gz\n/usr/share/man/man1/mkheadnode-teardown.1.gz\n"
        );
        let page = root.ok("MANWIDTH=100 man -P cat mkheadnode-teardown");
        assert!(
            page.contains("--purge") && page.contains("--connect"),
            "{page}"
        );

        let completion = root.ok(
            "bash -c '. /usr/share/bash-completion/completions/mkheadnode; complete -p mkheadnode
                COMP_WORDS=(mkheadnode tea); COMP_CWORD=1; _mkheadnode mkheadnode tea mkheadnode
                echo \"offered: ${COMPREPLY[*]}\"'",
        );
        assert!(
            completion.contains("-F _mkheadnode mkheadnode"),
            "{completion}"
        );
        assert!(completion.contains("offered: teardown\n"), "{completion}");
        for (file, needle) in [
            (
                "usr/share/zsh/vendor-completions/_mkheadnode",
                "#compdef mkheadnode\n",
            ),
            (
                "usr/share/fish/vendor_completions.d/mkheadnode.fish",
                "complete -c mkheadnode ",
            ),
        ] {
            assert!(root.read(file).contains(needle), "{file} lacks {needle:?}");
        }

        let (code, out, err) = root.sh("mkheadnode --dry-run 42 --virt-type qemu");
        assert_eq!(code, 0, "dry run failed:\n{err}");
        assert!(out.contains("<name>headnode-42</name>"), "{out}");
        assert!(
            err.contains("virt type: qemu (TCG), as configured"),
            "{err}"
        );
        // Without a libvirtd, what needs one says so (exit status 4, libvirt failure).
        let (code, _, err) = root.sh("mkheadnode list");
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("cannot connect to libvirt"), "{err}");
    }

    /// The nightly's units as installed: off (nothing enables the timer), valid to systemd
    /// (`systemd-analyze verify`, in a root with systemd's own units, the packaged units and
    /// the packaged command), and the command they run answers. A broken copy of the timer is
    /// refused by the same check, so the check is no formality.
    fn check_selftest_units(root: &Root) {
        const UNITS: &str = "usr/lib/systemd/system";
        let timer = format!("{UNITS}/mkheadnode-selftest.timer");
        let service = format!("{UNITS}/mkheadnode-selftest.service");
        assert!(root
            .read(&service)
            .contains("ExecStart=/usr/bin/mkheadnode selftest\n"));
        let enabled = root.path("etc/systemd/system/timers.target.wants/mkheadnode-selftest.timer");
        assert!(
            std::fs::symlink_metadata(&enabled).is_err(),
            "the package enables the timer"
        );
        let (code, _, err) = root.sh("mkheadnode selftest --last");
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("no selftest has run yet"), "{err}");
        root.ok("man -w mkheadnode-selftest");

        let vroot = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(vroot.path().join("usr/lib/systemd")).unwrap();
        std::fs::create_dir_all(vroot.path().join("usr/bin")).unwrap();
        tool(
            "cp",
            &[
                "-a",
                "/usr/lib/systemd/system",
                vroot.path().join("usr/lib/systemd/").to_str().unwrap(),
            ],
        );
        for rel in [timer.as_str(), service.as_str(), "usr/bin/mkheadnode"] {
            std::fs::copy(root.path(rel), vroot.path().join(rel)).unwrap();
        }
        let verify = |units: &[&str]| {
            run(Command::new("systemd-analyze")
                .args(["verify", "--man=no", "--root"])
                .arg(vroot.path())
                .args(units.iter().map(|u| format!("/{u}"))))
        };
        let (code, out, err) = verify(&[&timer, &service]);
        assert_eq!(code, 0, "systemd-analyze verify:\n{out}\n{err}");
        let broken = root.read(&timer).replace("03:30:00", "27:30:00");
        std::fs::write(vroot.path().join(&timer), broken).unwrap();
        let (code, _, err) = verify(&[&timer]);
        assert_ne!(code, 0, "a broken timer passed: {err}");
    }

    #[test]
    fn the_package_installs_works_and_leaves_what_an_operator_made() {
        let deb = deb();
        assert_no_maintainer_scripts(&deb);
        let mut packages = depends(&deb);
        packages.extend(TEST_TOOLS.map(String::from));
        packages.sort();
        packages.dedup();
        let root = Root::new(&packages);
        let before = root.files();

        std::fs::copy(&deb, root.path("tmp/mkheadnode.deb")).unwrap();
        root.ok("dpkg -i /tmp/mkheadnode.deb");
        check_installed(&root);
        check_selftest_units(&root);

        // What using it leaves: a VLAN's config dir, a changed config file.
        let machines = "52:54:00:12:34:56 10.0.0.7\n";
        std::fs::create_dir_all(root.path("var/lib/headnode-config/42")).unwrap();
        std::fs::write(
            root.path("var/lib/headnode-config/42/machines.txt"),
            machines,
        )
        .unwrap();
        let config = format!(
            "{}memory_mib = 2048\n",
            root.read("etc/mkheadnode/config.toml")
        );
        std::fs::write(root.path("etc/mkheadnode/config.toml"), &config).unwrap();

        root.ok("dpkg -r mkheadnode");
        assert!(!root.path("usr/bin/mkheadnode").exists());
        assert!(!root.path("usr/share/mkheadnode").exists());
        let status = root.ok("dpkg-query -W -f '${Status}' mkheadnode");
        assert_eq!(status, "deinstall ok config-files");
        assert_eq!(
            root.read("var/lib/headnode-config/42/machines.txt"),
            machines
        );
        assert_eq!(root.read("etc/mkheadnode/config.toml"), config);

        root.ok("dpkg -P mkheadnode");
        assert!(
            !root.path("etc/mkheadnode").exists(),
            "purge left /etc/mkheadnode"
        );
        assert_eq!(
            root.read("var/lib/headnode-config/42/machines.txt"),
            machines
        );
        let after = root.files();
        let removed: Vec<&String> = before.difference(&after).collect();
        assert!(removed.is_empty(), "install and purge removed {removed:?}");
        let left: Vec<&String> = after.difference(&before).collect();
        assert_eq!(
            left,
            [
                "var/lib/headnode-config",
                "var/lib/headnode-config/42",
                "var/lib/headnode-config/42/machines.txt"
            ],
            "purge left more than the operator's config dir"
        );
    }

    /// Every file the packaged `build-image.sh` takes from beside itself (`$HERE/...`: the
    /// image's firewall and its early set-up's unit) is in the package, where it looks, and so
    /// is the early set-up itself, where it looks by default: a static program.
    #[test]
    fn the_packaged_image_recipe_has_every_file_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let unpacked = unpacked_deb(dir.path());
        let share = unpacked.join("usr/share/mkheadnode");
        let script = std::fs::read_to_string(share.join("build-image.sh")).unwrap();
        let mut read: Vec<String> = Vec::new();
        for piece in script.split("$HERE").skip(1) {
            let piece = piece.trim_start_matches('"');
            let path: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            if path.len() > 1 && !read.contains(&path) {
                read.push(path);
            }
        }
        assert!(read.len() >= 5, "found only {read:?} in build-image.sh");
        for path in &read {
            let file = share.join(path.trim_start_matches('/'));
            assert!(file.is_file(), "the package lacks {}", file.display());
        }
        let default = "EARLY_BIN=${EARLY_BIN:-/usr/lib/mkheadnode/mkheadnode-early}";
        assert!(script.contains(default), "build-image.sh lacks {default}");
        let early = unpacked.join("usr/lib/mkheadnode/mkheadnode-early");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&early.metadata().unwrap().permissions());
        assert_eq!(mode & 0o111, 0o111, "{} is not executable", early.display());
        // Static: no program header asks for a dynamic loader (PT_INTERP), so it runs whatever
        // C library the image has.
        let elf = std::fs::read(&early).unwrap();
        assert!(
            elf.starts_with(b"\x7fELF\x02\x01"),
            "{} is no 64-bit little-endian program",
            early.display()
        );
        let le = |at: usize, n: usize| {
            elf[at..at + n]
                .iter()
                .rev()
                .fold(0usize, |v, b| v << 8 | usize::from(*b))
        };
        let (offset, size, count) = (le(0x20, 8), le(0x36, 2), le(0x38, 2));
        let types: Vec<usize> = (0..count).map(|i| le(offset + i * size, 4)).collect();
        assert!(types.contains(&1), "no loadable segment in {types:?}");
        assert!(
            !types.contains(&3),
            "{} names a dynamic loader",
            early.display()
        );
    }

    /// The packaged `build-installer.sh` finds the installer's `/init` beside itself, outside
    /// the source tree (on stand-in kernel and EFI files: what it does with them is the same).
    #[test]
    fn the_packaged_installer_recipe_works_outside_the_source_tree() {
        let dir = tempfile::tempdir().unwrap();
        let unpacked = unpacked_deb(dir.path());
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("installer")).unwrap();
        for file in ["vmlinuz", "shimx64.efi", "grubx64.efi"] {
            std::fs::write(out.join("installer").join(file), vec![0u8; 4096]).unwrap();
        }
        let script = unpacked.join("usr/share/mkheadnode/build-installer.sh");
        let (code, stdout, err) = run(Command::new(&script)
            .env("OUT_DIR", &out)
            .current_dir(dir.path()));
        assert_eq!(code, 0, "{}:\n{stdout}\n{err}", script.display());
        let initrd = out.join("installer/initrd.gz");
        let init = tool(
            "sh",
            &[
                "-c",
                &format!(
                    "zcat {} | cpio --quiet -i --to-stdout init",
                    initrd.display()
                ),
            ],
        );
        let source = include_str!("smoke/installer-init");
        assert_eq!(init, source, "the initrd's /init is not the installer's");
        for made in ["vmlinuz-bad", "esp.raw"] {
            assert!(out.join("installer").join(made).exists(), "no {made}");
        }
    }
}
