//! The command line without a hypervisor: input validation, exit codes, help, dry runs.

use crate::support::{mkheadnode, run};

#[test]
fn bad_vlans_are_usage_errors_that_name_the_input() {
    for bad in ["0", "4095", "abc", "1;rm -rf /", "01x", "5-3"] {
        let (code, out, err) = run(mkheadnode().args(["--dry-run", "--virt-type", "qemu", bad]));
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        assert!(out.is_empty(), "{bad}: printed {out}");
    }
}

#[test]
fn no_vlan_is_a_usage_error() {
    let (code, _, err) = run(&mut mkheadnode());
    assert_eq!(code, 2);
    assert!(err.contains("mkheadnode 42"), "{err}");
}

#[test]
fn work_on_another_machine_touches_no_file_here() {
    // `.invalid` never resolves: each command goes to libvirt (no refusal any more), fails to
    // connect, and has made no file here for a hypervisor elsewhere (no config dir, no lock).
    let root = tempfile::tempdir().unwrap();
    let uri = "qemu+ssh://root@hv1.invalid/system";
    for (args, want) in [
        (vec!["42"], 4),
        (vec!["rebuild", "42"], 4),
        (vec!["teardown", "42", "--purge"], 4),
        (vec!["check", "42"], 1),
    ] {
        let (code, out, err) = run(mkheadnode()
            .args(["--connect", uri, "--config-root"])
            .arg(root.path().join("cfg"))
            .arg("--lock-dir")
            .arg(root.path().join("lock"))
            .args(&args));
        assert_eq!(code, want, "{args:?}: {out}{err}");
        assert!(
            format!("{out}{err}").contains("cannot connect to libvirt at qemu+ssh"),
            "{args:?}: {out}{err}"
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "{args:?} made a file here"
        );
    }
}

#[test]
fn help_documents_exit_codes() {
    let (code, out, _) = run(mkheadnode().arg("--help"));
    assert_eq!(code, 0);
    assert!(
        out.contains("5 --wait timed out") && out.contains("6 refused"),
        "{out}"
    );
    for sub in ["teardown", "rebuild", "list", "status", "check"] {
        assert!(out.contains(sub), "help lacks {sub}");
    }
}

#[test]
fn config_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("c.toml");
    std::fs::write(&bad, "memroy_mib = 2048\n").unwrap();
    let (code, _, err) = run(mkheadnode().args(["--dry-run", "42", "--config"]).arg(&bad));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("memroy_mib") && err.contains("c.toml"),
        "{err}"
    );
    let (code, _, err) =
        run(mkheadnode().args(["--dry-run", "42", "--config", "/nonexistent/c.toml"]));
    assert_eq!(code, 3, "{err}");
}

#[test]
fn bad_machines_file_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("machines.txt");
    std::fs::write(
        &m,
        "aa:bb:cc:dd:ee:01 10.0.0.1\naa:bb:cc:dd:ee:02 10.0.0.999\n",
    )
    .unwrap();
    let (code, _, err) = run(mkheadnode()
        .args(["--dry-run", "--virt-type", "qemu", "42", "--machines"])
        .arg(&m));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 2") && err.contains("10.0.0.999"),
        "{err}"
    );
}

#[test]
fn dry_run_prints_xml_and_seed_for_each_vlan() {
    let (code, out, err) = run(mkheadnode().args(["--dry-run", "--virt-type", "qemu", "7,9"]));
    assert_eq!(code, 0, "{err}");
    for v in ["7", "9"] {
        assert!(out.contains(&format!("<name>headnode-{v}</name>")), "{out}");
        assert!(
            out.contains(&format!("# headnode-{v}: seed file user-data")),
            "{out}"
        );
        assert!(
            out.contains(&format!("# headnode-{v}: seed file network-config")),
            "{out}"
        );
    }
    assert!(err.contains("qemu (TCG), as configured"), "{err}");
}

#[test]
fn control_characters_in_seed_values_are_refused_naming_the_key() {
    // One such character makes cloud-init reject the whole user-data: refused before anything.
    let (code, out, err) = run(mkheadnode().args([
        "--dry-run",
        "--virt-type",
        "qemu",
        "42",
        "--ssh-key",
        "ssh-ed25519 AAAA\u{1b}[31m op@desk",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ssh_authorized_keys[0]") && err.contains("U+001B"),
        "{err}"
    );
    assert!(out.is_empty(), "printed {out}");
    let (code, _, err) = run(mkheadnode().args([
        "--dry-run",
        "--virt-type",
        "qemu",
        "42",
        "--vlan-bridge",
        "br\u{85}{vlan}",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("vlan_attachment.name"), "{err}");
}

#[test]
fn image_push_names_a_file_it_cannot_push_before_it_does_anything() {
    // The file is refused before the push takes its lock (or looks at any pool).
    let root = tempfile::tempdir().unwrap();
    let bad = root.path().join("bad name.qcow2");
    std::fs::write(&bad, b"x").unwrap();
    std::fs::create_dir(root.path().join("dir.qcow2")).unwrap();
    for (file, want, says) in [
        (root.path().join("absent.qcow2"), 3, "cannot read the image"),
        (bad, 2, "has characters other than letters"),
        (
            root.path().join("x.sha256"),
            2,
            "marks the records of pushed images",
        ),
        (root.path().join("dir.qcow2"), 2, "is not a file"),
    ] {
        let (code, _, err) = run(mkheadnode()
            .args([
                "image",
                "push",
                "--connect",
                "test:///default",
                "--lock-dir",
            ])
            .arg(root.path().join("lock"))
            .arg(&file));
        assert_eq!(code, want, "{}: {err}", file.display());
        assert!(err.contains(says), "{}: {err}", file.display());
        assert!(
            err.contains(file.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
}

#[test]
fn selftest_refuses_another_machine_before_connecting() {
    // `.invalid` never resolves: the refusal must come before any attempt to connect.
    let (code, _, err) = run(mkheadnode().args([
        "--connect",
        "qemu+ssh://root@hv1.invalid/system",
        "selftest",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("selftest runs on the hypervisor itself") && err.contains("hv1.invalid"),
        "{err}"
    );
}
