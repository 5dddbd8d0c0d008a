//! What the web server's user (www-data) may do in the headnode: remove one MAC's install links,
//! through mkheadnode-disarm run with sudo, and write nothing under the TFTP root. Run for real
//! on this machine as www-data, in a temp TFTP root laid out by the set-up script's own
//! `install -d` lines, with the rendered sudoers rule installed as a drop-in.

use crate::support::{guest_file, guest_program, run};
use mkheadnode::render::seed;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The user nginx's CGI runs as in the guest (Debian's fcgiwrap.service).
pub const WEB_USER: &str = "www-data";

/// `program` run as the web server's user.
pub fn as_web_user(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        WEB_USER,
        "--regid",
        WEB_USER,
        "--init-groups",
        program,
    ]);
    cmd
}

/// A temp dir that the web user can enter, holding a TFTP root made as the set-up script makes
/// it, the CGI and mkheadnode-disarm (pointed at this root), and a sudoers drop-in with the
/// guest's rule for this helper; the drop-in is removed on drop.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    sudoers: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sandbox = Sandbox {
            sudoers: Self::sudoers_name(),
            dir,
        };
        let root = sandbox.root();
        // The set-up script's own directories, modes and owners.
        let setup = guest_file("setup_script").replace("\\\n", " ");
        let lines: Vec<&str> = setup
            .lines()
            .filter(|l| l.starts_with("install -d "))
            .collect();
        let made = lines.join("\n");
        for dir in [seed::PXELINUX_CFG, seed::UEFI_DIR, seed::EFI_DIR] {
            assert!(
                made.contains(&format!("/{dir} ")) || made.ends_with(&format!("/{dir}")),
                "{made}"
            );
        }
        let script = lines
            .join("\n")
            .replace(seed::TFTP_ROOT, root.to_str().unwrap());
        let (code, out, err) = run(Command::new("sh").arg("-ec").arg(&script));
        assert_eq!(code, 0, "{script}\n{out}{err}");
        std::fs::write(root.join("pxelinux.cfg/default"), "DEFAULT disk\n").unwrap();
        let cgi = seed::boot_default_cgi()
            .unwrap()
            .replace(seed::DISARM_HELPER, sandbox.helper().to_str().unwrap());
        let helper = seed::disarm_tool()
            .unwrap()
            .replace(seed::TFTP_ROOT, root.to_str().unwrap())
            .replace(seed::CGI_PATH, sandbox.cgi().to_str().unwrap());
        for (path, text) in [(sandbox.cgi(), cgi), (sandbox.helper(), helper)] {
            guest_program(
                sandbox.dir.path(),
                path.file_name().unwrap().to_str().unwrap(),
                &text,
            );
        }
        sandbox.install_sudoers();
        sandbox
    }

    /// `/etc/sudoers.d/mkheadnode-test-<pid>-<n>`, after removing those of test runs that are
    /// gone (sudo reads every file there without a dot in its name).
    fn sudoers_name() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        for entry in std::fs::read_dir("/etc/sudoers.d").unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("mkheadnode-test-")
                .and_then(|rest| rest.split('-').next());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_file(&path);
            }
        }
        let n = N.fetch_add(1, Ordering::Relaxed);
        PathBuf::from(format!(
            "/etc/sudoers.d/mkheadnode-test-{}-{n}",
            std::process::id()
        ))
    }

    /// The guest's sudoers rule, for this sandbox's helper, checked by visudo and installed.
    fn install_sudoers(&self) {
        let rule = seed::sudoers_disarm()
            .unwrap()
            .replace(seed::DISARM_HELPER, self.helper().to_str().unwrap());
        let staged = self.path("sudoers");
        std::fs::write(&staged, &rule).unwrap();
        let (code, out, err) = run(Command::new("visudo").arg("-c").arg("-f").arg(&staged));
        assert_eq!(code, 0, "visudo refuses the rule:\n{rule}\n{out}{err}");
        // Made under a name with a dot (which sudo skips), then renamed into place.
        let tmp = self.sudoers.with_extension("new");
        std::fs::write(&tmp, &rule).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440)).unwrap();
        std::fs::rename(&tmp, &self.sudoers).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn root(&self) -> PathBuf {
        self.path("tftpboot")
    }

    pub fn cgi(&self) -> PathBuf {
        self.path("boot-default")
    }

    pub fn helper(&self) -> PathBuf {
        self.path("mkheadnode-disarm")
    }

    /// The install link of `mac_dashed` for a loader's directory (`pxelinux.cfg` or `uefi`).
    pub fn link(&self, sub: &str, mac_dashed: &str) -> PathBuf {
        self.root().join(sub).join(format!("01-{mac_dashed}"))
    }

    /// Arm `mac_dashed` for both loaders, as the link tool would (as root).
    pub fn arm(&self, mac_dashed: &str) {
        for (sub, target) in [
            ("pxelinux.cfg", "../centos/pxelinux.cfg"),
            ("uefi", "../efi/profiles/centos"),
        ] {
            let link = self.link(sub, mac_dashed);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, link).unwrap();
        }
    }

    pub fn armed(&self, sub: &str, mac_dashed: &str) -> bool {
        self.link(sub, mac_dashed).is_symlink()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
    }
}

const MAC: &str = "aa-bb-cc-dd-ee-51";
const OTHER: &str = "aa-bb-cc-dd-ee-52";

#[test]
fn the_web_user_can_write_nothing_under_the_tftp_root() {
    let sb = Sandbox::new();
    let root = sb.root();
    // A published profile, from a share whose files anyone may write.
    let share = sb.path("share/centos");
    std::fs::create_dir_all(&share).unwrap();
    for (name, text) in [("pxelinux.cfg", "KERNEL x\n"), ("grub.cfg", "linux x\n")] {
        std::fs::write(share.join(name), text).unwrap();
        std::fs::set_permissions(share.join(name), std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o777)).unwrap();
    let publish = sb.path("publish");
    std::fs::write(&publish, guest_file("publish_profiles")).unwrap();
    // Even with a umask that keeps every write bit.
    let (code, out, err) = run(Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec sh \"$0\"")
        .arg(&publish)
        .env("MKHEADNODE_PROFILES", sb.path("share"))
        .env("MKHEADNODE_TFTP_ROOT", &root));
    assert_eq!(code, 0, "{out}{err}");
    sb.arm(MAC);

    let (code, out, err) = run(as_web_user("find").arg(&root).arg("-writable"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "the web user can write these");
    let (cfg_dir, uefi_dir) = (root.join("pxelinux.cfg"), root.join("uefi"));
    let (cfg, uefi) = (cfg_dir.display(), uefi_dir.display());
    for (what, script) in [
        (
            "replace pxelinux's default",
            format!("echo 'DEFAULT evil' > {cfg}/default"),
        ),
        ("remove pxelinux's default", format!("rm -f {cfg}/default")),
        ("add a file beside it", format!("echo x > {cfg}/new")),
        (
            "arm a node for BIOS",
            format!("ln -s ../centos/pxelinux.cfg {cfg}/01-{OTHER}"),
        ),
        (
            "arm a node for UEFI",
            format!("ln -s ../efi/profiles/centos {uefi}/01-{OTHER}"),
        ),
        (
            "re-point an armed node",
            format!("ln -sfn ../x {cfg}/01-{MAC}"),
        ),
        (
            "disarm without the helper",
            format!("rm -f {cfg}/01-{MAC} {uefi}/01-{MAC}"),
        ),
    ] {
        let (code, _, err) = run(as_web_user("sh").arg("-c").arg(&script));
        assert_ne!(code, 0, "the web user could {what}");
        assert!(err.contains("Permission denied"), "{what}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(cfg_dir.join("default")).unwrap(),
        "DEFAULT disk\n"
    );
    assert!(!sb.armed("pxelinux.cfg", OTHER) && !sb.armed("uefi", OTHER));
    assert!(sb.armed("pxelinux.cfg", MAC) && sb.armed("uefi", MAC));
}

#[test]
fn the_web_user_may_run_the_helper_with_one_mac_and_nothing_else() {
    let sb = Sandbox::new();
    sb.arm(MAC);
    let helper = sb.helper();
    let helper = helper.to_str().unwrap();
    // Anything but one MAC in aa-bb-cc-dd-ee-ff form, or another program, is refused by sudo.
    let refused: [&[&str]; 8] = [
        &[helper, "default"],
        &[helper, "../pxelinux.cfg/default"],
        &[helper, "AA-BB-CC-DD-EE-51"],
        &[helper, "aa:bb:cc:dd:ee:51"],
        &[helper, MAC, OTHER],
        &[helper],
        &["/bin/sh", "-c", "id"],
        &["/bin/rm", "-f", "/etc/passwd"],
    ];
    for args in refused {
        let (code, _, err) = run(as_web_user("sudo").arg("-n").args(args));
        assert_ne!(code, 0, "sudo let the web user run {args:?}");
        assert!(err.contains("password is required"), "{args:?}: {err}");
    }
    assert!(sb.armed("pxelinux.cfg", MAC) && sb.armed("uefi", MAC));
    // Without sudo the helper cannot remove anything.
    let (code, _, _) = run(as_web_user(helper).arg(MAC));
    assert_eq!(code, 1);
    assert!(sb.armed("pxelinux.cfg", MAC) && sb.armed("uefi", MAC));
    // Through sudo, with the MAC: both links go, nothing else.
    sb.arm(OTHER);
    let (code, out, err) = run(as_web_user("sudo").args(["-n", helper, MAC]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!("removed pxelinux.cfg/01-{MAC}, uefi/01-{MAC}")
    );
    assert!(!sb.armed("pxelinux.cfg", MAC) && !sb.armed("uefi", MAC));
    assert!(sb.armed("pxelinux.cfg", OTHER) && sb.armed("uefi", OTHER));
    let (code, out, _) = run(as_web_user("sudo").args(["-n", helper, MAC]));
    assert_eq!((code, out.trim()), (3, "no link"));
}

#[test]
fn the_helper_checks_its_argument_and_removes_only_links_in_the_link_dirs() {
    let sb = Sandbox::new();
    let helper = sb.helper();
    sb.arm(MAC);
    // Its own check, whatever sudo allows: run as root with anything but one MAC, it does
    // nothing.
    for args in [
        &["default"][..],
        &["../pxelinux.cfg/default"],
        &["aa-bb-cc-dd-ee-51/../../pxelinux.cfg/default"],
        &["aa:bb:cc:dd:ee:51"],
        &["AA-BB-CC-DD-EE-51"],
        &["aa-bb-cc-dd-ee-51\n"],
        &[MAC, MAC],
        &[],
    ] {
        let (code, _, err) = run(Command::new(&helper).args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    assert!(sb.armed("pxelinux.cfg", MAC) && sb.armed("uefi", MAC));
    // A regular file under a link's name is left alone, and said so.
    std::fs::remove_file(sb.link("uefi", MAC)).unwrap();
    std::fs::write(sb.link("uefi", MAC), "not a link").unwrap();
    let (code, out, _) = run(Command::new(&helper).arg(MAC));
    assert_eq!(code, 4, "{out}");
    assert!(sb.link("uefi", MAC).is_file());
    assert!(!sb.armed("pxelinux.cfg", MAC), "{out}");
    // A link directory replaced by a link to elsewhere is not followed.
    let elsewhere = sb.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink("x", elsewhere.join(format!("01-{MAC}"))).unwrap();
    let cfg = sb.root().join("pxelinux.cfg");
    std::fs::remove_dir_all(&cfg).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &cfg).unwrap();
    let (code, _, err) = run(Command::new(&helper).arg(MAC));
    assert_eq!(code, 1, "{err}");
    assert!(elsewhere.join(format!("01-{MAC}")).is_symlink());
}
