//! The nightly smoke test (`make smoke`): `mkheadnode selftest`'s passing run, on VLAN 4042.
//! The selftest is the smoke: the same code proves the stack here and on an operator's
//! hypervisor, so the two cannot drift. It makes an isolated lab, boots a real headnode under
//! TCG, network-boots a BIOS node (powered on by the headnode's link tool through a virtual BMC),
//! a UEFI and a Secure Boot node against it (pxelinux; the signed shim and GRUB, a kernel with
//! a broken signature refused only under Secure Boot), checks their callbacks and their fall to
//! the local disk, reboots the headnode, and removes everything (see `ops::selftest`).
//!
//! This test asks for a pass of every step (none skipped: virtualbmc is installed here), shows
//! the timing table, checks that `selftest --last` keeps the result, and that nothing of the
//! lab is left. A failed run's serial logs are kept in target/smoke-artifacts.

use crate::support::{mkheadnode, virsh};
use mkheadnode::model::selftest::{table, Outcome, Verdict};
use mkheadnode::ops::selftest::EARLY_NOTE;
use std::path::{Path, PathBuf};
use std::process::Stdio;

const VLAN: &str = "4042";

#[test]
#[ignore = "boots real VMs for minutes: run it with `make smoke`"]
fn a_headnode_boots_and_installs_a_node_over_pxe() {
    let image = std::env::var("MKHEADNODE_IMAGE")
        .unwrap_or_else(|_| "/var/lib/mkheadnode/base/debian-12-headnode.qcow2".into());
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/smoke-artifacts");
    let state = tempfile::tempdir().unwrap();
    // Progress goes to the terminal as it happens; the result comes as JSON.
    let output = mkheadnode()
        .args(["selftest", "--json", "--vlan", VLAN, "--virt-type", "qemu"])
        .args([
            "--base-image",
            &image,
            "--work-dir",
            "/var/lib/mkheadnode-smoke",
        ])
        .arg("--logs")
        .arg(&artifacts)
        .arg("--state-dir")
        .arg(state.path())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcome: Outcome =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprint!("\n{}", table(&outcome));
    let not_passed: Vec<String> = outcome
        .steps
        .iter()
        .filter(|s| s.verdict != Verdict::Pass)
        .map(|s| format!("{} ({}): {}", s.name, s.verdict.word(), s.detail))
        .collect();
    assert!(
        not_passed.is_empty(),
        "smoke steps not passed:\n{}",
        not_passed.join("\n")
    );
    assert!(outcome.passed && output.status.success());
    // The test image sets the headnode up before cloud-init (scripts/image-early), not through
    // it, from the unit files it carries, with no systemd reload: the slow paths still work, but
    // must not be what the nightly measures unawares.
    let ready = outcome
        .steps
        .iter()
        .find(|s| s.name.starts_with("headnode ready"))
        .expect("no headnode ready row");
    assert_eq!(
        ready.detail, EARLY_NOTE,
        "the image's early set-up did not run, or systemd had to be reloaded"
    );
    // Every milestone of every node has its row.
    for node in ["BIOS node", "UEFI node", "Secure Boot node"] {
        let fall = format!("{node}: power-on -> second boot falls to the local disk");
        assert!(
            outcome.steps.iter().any(|s| s.name == fall),
            "no row {fall}"
        );
    }

    // `selftest --last` shows the run just made.
    let last = mkheadnode()
        .args(["selftest", "--last", "--json", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(last.status.success());
    let kept: Outcome = serde_json::from_slice(&last.stdout).unwrap();
    assert_eq!(kept, outcome);

    // Nothing of the lab remains.
    for (what, args) in [
        ("domain", vec!["dominfo", "headnode-4042"]),
        ("domain", vec!["dominfo", "mkheadnode-selftest-bios-4042"]),
        ("domain", vec!["dominfo", "mkheadnode-selftest-uefi-4042"]),
        ("domain", vec!["dominfo", "mkheadnode-selftest-sb-4042"]),
        ("network", vec!["net-info", "mkheadnode-selftest-v4042"]),
        ("network", vec!["net-info", "mkheadnode-selftest-p4042"]),
        ("pool", vec!["pool-info", "mkheadnode-selftest-4042"]),
    ] {
        assert_ne!(virsh(&args).0, 0, "a {what} of the test remains: {args:?}");
    }
    assert!(!Path::new("/var/lib/mkheadnode-smoke").exists());
}
