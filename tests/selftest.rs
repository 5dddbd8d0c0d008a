//! `mkheadnode selftest` on the real `qemu:///system`, where it fails: a broken piece (a test
//! installer without its UEFI disk, a missing firmware file, a base image that boots nothing) fails at the step that
//! needs it with a message saying what to fix, and leaves nothing behind; a SIGINT mid-run
//! removes everything the run made; a VLAN with a headnode that is not the selftest's is
//! refused and that domain left alone; a lab subnet the host routes already is not taken. The
//! passing run is the smoke test (`smoke.rs`).
//!
//! Each test that makes a lab uses a VLAN of its own (4090, 4092, 4093, 4094), so they run side
//! by side; those that make nothing share 4091.

use crate::support::{mkheadnode, run, tool, virsh, wait_until};
use mkheadnode::model::selftest::{Outcome, Verdict};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The base image and the installer beside it, as `make image` builds them.
fn image() -> PathBuf {
    let image = PathBuf::from(
        std::env::var("MKHEADNODE_IMAGE")
            .unwrap_or_else(|_| "/var/lib/mkheadnode/base/debian-12-headnode.qcow2".into()),
    );
    assert!(image.exists(), "no {}: run `make image`", image.display());
    image
}

/// A selftest command of `vlan` on `base` with everything it writes under `dir`.
fn selftest(vlan: u16, dir: &Path, base: &Path, extra: &[&str]) -> Command {
    let mut cmd = mkheadnode();
    let d = |rel: &str| dir.join(rel).display().to_string();
    cmd.args(["selftest", "--json", "--vlan", &vlan.to_string()])
        .args(["--virt-type", "qemu", "--base-image"])
        .arg(base)
        .args(["--state-dir", &d("state"), "--work-dir", &d("work")])
        .args(["--logs", &d("logs")])
        .args(extra);
    cmd
}

/// The run's outcome from its JSON.
fn outcome(stdout: &str) -> Outcome {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The verdict of the step whose name starts with `name`.
fn verdict(outcome: &Outcome, name: &str) -> (Verdict, String) {
    let step = outcome
        .steps
        .iter()
        .find(|s| s.name.starts_with(name))
        .unwrap_or_else(|| panic!("no step {name}: {outcome:?}"));
    (step.verdict, step.detail.clone())
}

/// Every libvirt object and file a selftest of `vlan` under `dir` makes: none may be left.
fn assert_nothing_left(vlan: u16, dir: &Path) {
    let domains = ["bios", "uefi", "sb"]
        .map(|k| format!("mkheadnode-selftest-{k}-{vlan}"))
        .into_iter()
        .chain([format!("headnode-{vlan}")]);
    for dom in domains {
        assert_ne!(virsh(&["dominfo", &dom]).0, 0, "domain {dom} was left");
    }
    for net in [
        format!("mkheadnode-selftest-v{vlan}"),
        format!("mkheadnode-selftest-p{vlan}"),
    ] {
        assert_ne!(virsh(&["net-info", &net]).0, 0, "network {net} was left");
    }
    let pool = format!("mkheadnode-selftest-{vlan}");
    assert_ne!(virsh(&["pool-info", &pool]).0, 0, "pool {pool} was left");
    let work = dir.join("work");
    assert!(!work.exists(), "{} was left", work.display());
    let (_, links, _) = run(Command::new("ip").args(["-o", "link"]));
    assert!(
        !links.contains(&format!("mkhst{vlan}")),
        "bridge left: {links}"
    );
}

/// Copies of the files `names` of `from` in a new directory `to`.
fn copies(from: &Path, to: &Path, names: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for f in names {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

/// A run of `vlan` under `dir` with `extra` flags that must fail at its prerequisites, before
/// it makes anything (none of the lab's names exist after it, nor its work dir): why it
/// failed, and its standard error.
fn fails_first(vlan: u16, dir: &Path, extra: &[&str]) -> (String, String) {
    let (code, out, err) = run(&mut selftest(vlan, dir, &image(), extra));
    assert_eq!(code, 1, "{err}");
    let result = outcome(&out);
    assert!(!result.passed);
    let (v, why) = verdict(&result, "prerequisites");
    assert_eq!(v, Verdict::Fail);
    assert_eq!(verdict(&result, "isolated networks").0, Verdict::NotRun);
    assert_nothing_left(vlan, dir);
    (why, err)
}

#[test]
fn an_installer_without_its_uefi_disk_fails_first_says_what_to_build_and_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let installer = dir.path().join("installer");
    let real = image().parent().unwrap().join("installer");
    copies(&real, &installer, &["vmlinuz", "vmlinuz-bad", "initrd.gz"]);
    let (why, err) = fails_first(
        4091,
        dir.path(),
        &["--installer", installer.to_str().unwrap()],
    );
    assert!(why.contains("lacks esp.raw"), "{why}");
    assert!(why.contains("build-installer.sh"), "{why}");
    assert!(err.contains("selftest failed at `prerequisites"), "{err}");

    // `--last` shows that result, and exits as it did.
    let state = dir.path().join("state");
    let (code, out, err) = run(mkheadnode()
        .args(["selftest", "--last", "--state-dir"])
        .arg(&state));
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("verdict: FAILED at `prerequisites"), "{out}");
    assert!(out.contains("lacks esp.raw"), "{out}");
}

#[test]
fn a_missing_firmware_file_fails_first_and_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let ovmf = dir.path().join("ovmf");
    let some = [
        "OVMF_CODE_4M.fd",
        "OVMF_VARS_4M.fd",
        "OVMF_CODE_4M.secboot.fd",
    ];
    copies(Path::new("/usr/share/OVMF"), &ovmf, &some);
    let (why, _) = fails_first(4091, dir.path(), &["--ovmf-dir", ovmf.to_str().unwrap()]);
    let missing = ovmf.join("OVMF_VARS_4M.ms.fd");
    let want = format!("the UEFI firmware {} is missing", missing.display());
    assert!(why.contains(&want), "{why}");
    assert!(why.contains("apt install ovmf"), "{why}");
}

#[test]
fn a_base_image_that_boots_nothing_fails_at_headnode_ready_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let blank = blank_image(dir.path());
    let real = image().parent().unwrap().join("installer");
    // The lab's own public /24 for VLAN 4093 (172.31.253.0/24) is taken on this host: the run
    // must take another (libvirt refuses a network whose subnet is routed already).
    let occupier = "mkhstocc4093";
    run(Command::new("ip").args(["link", "del", occupier]));
    tool("ip", &["link", "add", occupier, "type", "bridge"]);
    tool("ip", &["addr", "add", "172.31.253.1/24", "dev", occupier]);
    tool("ip", &["link", "set", occupier, "up"]);
    let (code, out, err) = run(&mut selftest(
        4093,
        dir.path(),
        &blank,
        &["--installer", real.to_str().unwrap(), "--timeout", "60"],
    ));
    run(Command::new("ip").args(["link", "del", occupier]));
    assert_eq!(code, 1, "{err}");
    let result = outcome(&out);
    for step in [
        "prerequisites",
        "isolated networks",
        "test nodes",
        "headnode created",
    ] {
        assert_eq!(
            verdict(&result, step).0,
            Verdict::Pass,
            "{step}: {result:?}"
        );
    }
    let (v, why) = verdict(&result, "headnode ready");
    assert_eq!(v, Verdict::Fail);
    assert!(why.contains("never started a kernel"), "{why}");
    assert!(why.contains("build-image.sh"), "{why}");
    assert_eq!(verdict(&result, "clean up").0, Verdict::Pass, "{result:?}");
    // The failed run's serial logs are kept where it says.
    let logs = result.logs.clone().expect("the logs are kept");
    assert_eq!(logs, dir.path().join("logs"));
    assert!(logs.join("headnode-4093-serial.log").exists());
    assert!(
        err.contains(&format!("serial logs in {}", logs.display())),
        "{err}"
    );
    assert_nothing_left(4093, dir.path());
}

/// A blank qcow2 in `dir` (which qemu may read): a base image that boots nothing.
fn blank_image(dir: &Path) -> PathBuf {
    let blank = dir.join("blank.qcow2");
    tool(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", blank.to_str().unwrap(), "1G"],
    );
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    blank
}

#[test]
fn a_kept_lab_stays_and_the_next_run_removes_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let blank = blank_image(dir.path());
    let installer = image().parent().unwrap().join("installer");
    let flags = [
        "--installer",
        installer.to_str().unwrap(),
        "--timeout",
        "10",
    ];
    let kept = [&flags[..], &["--keep"]].concat();
    let (code, out, err) = run(&mut selftest(4092, dir.path(), &blank, &kept));
    assert_eq!(code, 1, "{err}");
    let (v, why) = verdict(&outcome(&out), "clean up");
    assert_eq!(v, Verdict::Skip);
    assert!(
        why.contains("the next `mkheadnode selftest --vlan 4092` removes it"),
        "{why}"
    );
    for (what, args) in [
        ("domain", ["dominfo", "headnode-4092"]),
        ("domain", ["dominfo", "mkheadnode-selftest-sb-4092"]),
        ("network", ["net-info", "mkheadnode-selftest-v4092"]),
    ] {
        assert_eq!(virsh(&args).0, 0, "the kept {what} is gone: {args:?}");
    }
    let (code, out, err) = run(&mut selftest(4092, dir.path(), &blank, &flags));
    assert_eq!(code, 1, "{err}");
    let result = outcome(&out);
    assert_eq!(verdict(&result, "leftovers").0, Verdict::Pass, "{result:?}");
    assert!(err.contains("removed an earlier run's domain"), "{err}");
    assert_eq!(
        verdict(&result, "headnode created").0,
        Verdict::Pass,
        "{result:?}"
    );
    assert_eq!(verdict(&result, "clean up").0, Verdict::Pass, "{result:?}");
    assert_nothing_left(4092, dir.path());
}

#[test]
fn an_interrupted_selftest_removes_everything_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let child = selftest(4094, dir.path(), &image(), &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the headnode exists (the lab's networks and nodes are made by then).
    let made = wait_until(Duration::from_secs(300), || {
        virsh(&["domstate", "headnode-4094"]).0 == 0
    });
    let pid = child.id().to_string();
    tool("kill", &["-INT", &pid]);
    let output = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(made, "no headnode within 300 s:\n{err}");
    assert_eq!(output.status.code(), Some(1), "{err}");
    let result = outcome(&out);
    let failed = result.first_failure().expect("a failed step");
    assert!(failed.detail.contains("SIGINT"), "{result:?}");
    assert_eq!(verdict(&result, "clean up").0, Verdict::Pass, "{result:?}");
    assert_nothing_left(4094, dir.path());
}

#[test]
fn a_vlan_with_a_headnode_not_of_the_selftest_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("dom.xml");
    std::fs::write(
        &xml,
        "<domain type='qemu'><name>headnode-4090</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64'>hvm</type></os></domain>",
    )
    .unwrap();
    let (code, _, err) = virsh(&["define", xml.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&mut selftest(4090, dir.path(), &image(), &[]));
    let still = virsh(&["dominfo", "headnode-4090"]).0;
    virsh(&["undefine", "headnode-4090"]);
    assert_eq!(code, 1, "{err}");
    let (v, why) = verdict(&outcome(&out), "prerequisites");
    assert_eq!(v, Verdict::Fail);
    assert!(
        why.contains("headnode-4090 exists and is not a selftest's"),
        "{why}"
    );
    assert!(why.contains("--vlan"), "{why}");
    assert_eq!(still, 0, "the operator's domain was removed");
    assert_ne!(virsh(&["net-info", "mkheadnode-selftest-v4090"]).0, 0);
}
