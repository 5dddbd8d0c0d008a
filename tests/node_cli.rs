//! The node commands' input checks, through the built binary and with no hypervisor: `profile
//! add` validates a profile before anything else (`--dry-run` stops there), `install` and
//! `nodes` check MACs and names before connecting, and `-v`/`-q` may be repeated.

use crate::support::{mkheadnode, run};
use std::path::Path;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn profile_add_lists_every_problem_of_a_profile_and_copies_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deb");
    write(
        &dir,
        &[
            (
                "pxelinux.cfg",
                "DEFAULT x\nLABEL x\n  KERNEL deb/linux\n  INITRD deb/initrd.gz\n",
            ),
            (
                "grub.cfg",
                "linux (http,10.9.9.9)/deb/linux\ninitrd ${mkheadnode_fetch}/centos/initrd.gz\n",
            ),
            ("linux", "kernel"),
            ("preseed.cfg", "d-i mirror/http/hostname string @MIRROR@\n"),
        ],
    );
    let root = tmp.path().join("cfg");
    let (code, out, err) = run(mkheadnode()
        .args(["profile", "add", "42", "deb"])
        .arg(&dir)
        .arg("--config-root")
        .arg(&root));
    assert_eq!(code, 2, "{out}{err}");
    for want in [
        "is not a valid profile",
        "pxelinux.cfg, line 4: initrd deb/initrd.gz: the profile has no file initrd.gz",
        "grub.cfg, line 1: kernel (http,10.9.9.9)/deb/linux: on another device or server",
        "grub.cfg, line 2: initrd ${mkheadnode_fetch}/centos/initrd.gz: outside the profile",
        "preseed.cfg, line 1: unknown placeholder @MIRROR@",
    ] {
        assert!(err.contains(want), "no `{want}` in:\n{err}");
    }
    assert!(!root.exists(), "a config dir was made");
    // Named like a boot directory, or no boot config at all.
    let (code, _, err) = run(mkheadnode()
        .args(["--dry-run", "profile", "add", "42", "efi"])
        .arg(&dir));
    assert_eq!(code, 2);
    assert!(err.contains("boot file or directory"), "{err}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = run(mkheadnode()
        .args(["--dry-run", "profile", "add", "42", "empty"])
        .arg(&empty));
    assert_eq!(code, 2);
    assert!(err.contains("no boot config"), "{err}");
    let (code, _, err) = run(mkheadnode()
        .args(["--dry-run", "profile", "add", "42", "x"])
        .arg(tmp.path().join("absent")));
    assert_eq!(code, 3, "{err}");
}

#[test]
fn a_valid_profile_passes_the_dry_run_and_goes_to_a_remote_uri() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deb");
    write(
        &dir,
        &[
            ("pxelinux.cfg", "KERNEL deb/linux\nAPPEND initrd=deb/initrd.gz url=http://@HEADNODE@/deb/preseed.cfg\n"),
            ("grub.cfg", "linux ${mkheadnode_fetch}/deb/linux\ninitrd ${mkheadnode_fetch}/deb/initrd.gz\n"),
            ("linux", "kernel"),
            ("initrd.gz", "initrd"),
            ("preseed.cfg", "d-i x string @HEADNODE@\n"),
        ],
    );
    let (code, out, err) = run(mkheadnode()
        .args(["--dry-run", "-vv", "profile", "add", "7,9", "deb"])
        .arg(&dir));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "would copy profile deb (BIOS and UEFI; 5 files, 196 B) into VLAN 7's config dir and publish it",
            "would copy profile deb (BIOS and UEFI; 5 files, 196 B) into VLAN 9's config dir and publish it",
        ]
    );
    let (code, _, err) = run(mkheadnode()
        .args([
            "-q",
            "-q",
            "--connect",
            "qemu+ssh://root@hv1.invalid/system",
            "profile",
            "add",
            "7",
            "deb",
        ])
        .arg(&dir));
    // Over another machine it works through libvirt: it gets as far as connecting.
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("hv1.invalid"), "{err}");
}

#[test]
fn install_and_nodes_check_their_input_before_connecting() {
    // `.invalid` never resolves: each of these must fail before any attempt to connect.
    let uri = "qemu+ssh://root@hv1.invalid/system";
    for (args, want) in [
        (
            vec!["install", "42", "-p", "deb", "aa:bb:cc:dd:ee"],
            "`aa:bb:cc:dd:ee` is not a MAC",
        ),
        (
            vec!["install", "42", "-p", "x;reboot", "--all"],
            "not a profile name",
        ),
        (
            vec!["install", "42", "-p", "grub", "--all"],
            "boot file or directory",
        ),
        (vec!["install", "0", "-p", "deb", "--all"], "`0`"),
        (vec!["nodes", "42", "--events", "zz"], "`zz` is not a MAC"),
        (
            vec!["profile", "remove", "42", "../etc"],
            "not a profile name",
        ),
    ] {
        let (code, _, err) = run(mkheadnode().args(["--connect", uri]).args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Neither --all nor a MAC, or both: clap's usage error.
    for args in [
        vec!["install", "42", "-p", "deb"],
        vec!["install", "42", "-p", "deb", "--all", "aa:bb:cc:dd:ee:ff"],
    ] {
        let (code, _, err) = run(mkheadnode().args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn help_names_the_node_commands() {
    let (code, out, _) = run(mkheadnode().arg("--help"));
    assert_eq!(code, 0);
    for sub in ["profile", "install", "nodes"] {
        assert!(out.contains(sub), "help lacks {sub}:\n{out}");
    }
}
