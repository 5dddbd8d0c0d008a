//! The guest side of `profile`, run for real on this machine as the headnode runs it: the
//! publish script dropping profiles that left the share, and only those. The script is rendered
//! from `render::seed`, exactly as the seed carries it.

use crate::support::run;
use mkheadnode::model::config::Config;
use mkheadnode::model::plan::{Plan, VirtType};
use mkheadnode::model::vlan::Vlan;
use mkheadnode::render::seed;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn guest_file(name: &str) -> String {
    let plan = Plan::new(&Config::default(), Vlan::new(42).unwrap(), VirtType::Qemu);
    seed::guest_files(&plan)
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no guest file {name}"))
        .1
}

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The publish script between a share and a TFTP root, both in `dir`.
fn publish(dir: &Path) -> String {
    let script = dir.join("publish");
    if !script.exists() {
        executable(&script, &guest_file("publish_profiles"));
    }
    let (code, out, err) = run(Command::new(&script)
        .env("MKHEADNODE_PROFILES", dir.join("share"))
        .env("MKHEADNODE_TFTP_ROOT", dir.join("tftp")));
    assert_eq!(code, 0, "publish:\n{out}\n{err}");
    out
}

#[test]
fn publishing_drops_profiles_that_left_the_share_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (share, root) = (tmp.path().join("share"), tmp.path().join("tftp"));
    for (profile, file) in [
        ("a", "grub.cfg"),
        ("b", "pxelinux.cfg"),
        ("c", "pxelinux.cfg"),
    ] {
        std::fs::create_dir_all(share.join(profile)).unwrap();
        std::fs::write(share.join(profile).join(file), "x").unwrap();
    }
    std::fs::create_dir_all(root.join("efi/profiles")).unwrap();
    // Not published by the script: never removed.
    std::fs::create_dir_all(root.join("mine")).unwrap();
    let out = publish(tmp.path());
    assert_eq!(out.matches("published profile").count(), 3, "{out}");
    assert!(root.join("efi/profiles/a/grub.cfg").exists());

    // a and b leave the share; c's copy there turns invalid (it is kept as it was published).
    std::fs::remove_dir_all(share.join("a")).unwrap();
    std::fs::remove_dir_all(share.join("b")).unwrap();
    std::fs::remove_file(share.join("c/pxelinux.cfg")).unwrap();
    let out = publish(tmp.path());
    assert!(
        out.contains("removed profile a (no longer on the share)"),
        "{out}"
    );
    assert!(
        out.contains("removed profile b (no longer on the share)"),
        "{out}"
    );
    assert!(out.contains("skipping profile 'c'"), "{out}");
    for gone in ["a", "b", "efi/profiles/a"] {
        assert!(!root.join(gone).exists(), "{gone} is still there");
    }
    assert!(root.join("c/pxelinux.cfg").exists() && root.join("mine").exists());

    // A tampered manifest cannot make it remove anything else.
    std::fs::write(
        root.join(".mkheadnode-published"),
        "c\n../share\npxelinux.cfg\nmine/..\n\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
    publish(tmp.path());
    assert!(share.exists() && root.join("pxelinux.cfg").exists() && root.join("mine").exists());
    // c leaves the share for good: removed, and the manifest is empty.
    std::fs::remove_dir_all(share.join("c")).unwrap();
    let out = publish(tmp.path());
    assert!(out.contains("removed profile c"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join(".mkheadnode-published")).unwrap(),
        ""
    );
}
